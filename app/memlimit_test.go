package app

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	v2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2, "memory.max"), []byte("536870912\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unlimited := t.TempDir()
	if err := os.WriteFile(filepath.Join(unlimited, "memory.max"), []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		key       int64
		environ   []string
		root      string
		wantLimit int64
		wantFrom  string
	}{
		{"key wins", 64 << 20, []string{"GOMEMLIMIT=1GiB"}, v2, 64 << 20, "memory_limit"},
		{"off", -1, nil, v2, 0, "none"},
		{"GOMEMLIMIT before the cgroup", 0, []string{"GOMEMLIMIT=1GiB"}, v2, 0, "GOMEMLIMIT"},
		{"90% of the cgroup v2 limit", 0, nil, v2, 512 << 20 / 10 * 9, "cgroup"},
		{"cgroup without a limit", 0, nil, unlimited, 0, "none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			limit, from := MemoryLimit(c.key, c.environ, c.root)
			if limit != c.wantLimit || from != c.wantFrom {
				t.Errorf("MemoryLimit = %d from %s, want %d from %s", limit, from, c.wantLimit, c.wantFrom)
			}
		})
	}
}
