package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/bus"
)

// TestOpenLocksDataDir: a second embedded bus on the same data directory
// is refused, naming the directory and the holder's pid, until the first
// one closes.
func TestOpenLocksDataDir(t *testing.T) {
	dir := t.TempDir()
	first := openBus(t, dir)
	cfg := bus.DefaultConfig()
	cfg.DataDir = dir
	second, err := bus.Open(context.Background(), cfg, quietLogger())
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("second Open on the same data directory succeeded; two bots would both page")
	}
	if !errors.Is(err, bus.ErrDataDirLocked) {
		t.Errorf("err = %v, want ErrDataDirLocked", err)
	}
	abs, _ := filepath.Abs(dir)
	for _, want := range []string{abs, "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not name %q", err, want)
		}
	}
	first.Close()
	again := openBus(t, dir)
	again.Close()
	// The lock file stays (emptied); deleting it would race a new holder.
	if _, err := os.Stat(filepath.Join(dir, "incidentbot.lock")); err != nil {
		t.Fatalf("lock file: %v", err)
	}
}
