package testenv

import (
	"os"
	"regexp"
	"testing"
)

// TestKubeVersionMatchesTools keeps KubeVersion (where the tests look for
// the binary) equal to what tools/kube builds.
func TestKubeVersionMatchesTools(t *testing.T) {
	b, err := os.ReadFile("../../tools/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^require k8s\.io/kubernetes (v\S+)$`).FindSubmatch(b)
	if m == nil || string(m[1]) != KubeVersion {
		t.Fatalf("tools/kube/go.mod requires k8s.io/kubernetes %q, testenv.KubeVersion is %s", m, KubeVersion)
	}
}
