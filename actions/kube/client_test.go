package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod.example:6443", insecure-skip-tls-verify: true}
- name: staging
  cluster: {server: "https://staging.example:6443", insecure-skip-tls-verify: true}
users:
- name: bot
  user: {token: t0k3n}
contexts:
- name: prod
  context: {cluster: prod, user: bot}
- name: staging
  context: {cluster: staging, user: bot}
current-context: prod
`

func TestRESTConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, from, err := RESTConfig(Config{Kubeconfig: path})
	if err != nil || rc.Host != "https://prod.example:6443" || rc.BearerToken != "t0k3n" || from != "kubeconfig "+path ||
		rc.UserAgent != UserAgent || rc.Timeout != DefaultTimeout {
		t.Fatalf("current context: %+v %q %v", rc, from, err)
	}
	rc, from, err = RESTConfig(Config{Kubeconfig: path, Context: "staging", Timeout: 3 * time.Second})
	if err != nil || rc.Host != "https://staging.example:6443" || !strings.HasSuffix(from, "context staging") || rc.Timeout != 3*time.Second {
		t.Fatalf("context staging: %+v %q %v", rc, from, err)
	}
	if c, _, err := Client(Config{Kubeconfig: path}); err != nil || c == nil {
		t.Fatalf("client: %v", err)
	}
	if _, _, err := RESTConfig(Config{Kubeconfig: path, Context: "nope"}); err == nil {
		t.Error("unknown context: no error")
	}
	if _, _, err := RESTConfig(Config{Kubeconfig: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "kubernetes.kubeconfig") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNoClusterIsDryRun(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	c, from, err := Client(Config{})
	if c != nil || from != "" || err != nil {
		t.Fatalf("no kubeconfig, not in a pod: %v %q %v, want nothing", c, from, err)
	}
}
