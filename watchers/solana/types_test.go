package solana

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEventTypesListsWhatIsPublished keeps EventTypes in step with the
// type names the watchers' code publishes.
func TestEventTypesListsWhatIsPublished(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`"(solana\.[a-z_]+\.[a-z_]+)"`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "types.go" || f == "config.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
			if !slices.Contains(EventTypes, m[1]) {
				t.Errorf("%s publishes %q, not in EventTypes", f, m[1])
			}
		}
	}
	for _, typ := range EventTypes {
		if !seen[typ] {
			t.Errorf("EventTypes lists %q, which no watcher publishes", typ)
		}
	}
}
