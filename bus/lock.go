package bus

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrDataDirLocked is returned by Open when another process runs an
// embedded bus on the same data directory. Two bots on one store would
// each take every event, open every incident and page twice.
var ErrDataDirLocked = errors.New("data directory in use by another incidentbot")

// lockFileName is the lock file inside the data directory; it holds the
// pid of the process that holds the lock.
const lockFileName = "incidentbot.lock"

// dirLock is an exclusive lock on a data directory, held from before the
// embedded server starts until after it has shut down. The operating
// system drops it when the process dies, kill -9 included, so a stale lock
// file never blocks a restart.
type dirLock struct {
	f *os.File
}

// lockDataDir takes the lock on dir, creating dir if needed, and writes
// this process's pid into the lock file.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w: %s is locked by %s (lock file %s); stop that process or give this one its own --data-dir",
				ErrDataDirLocked, abs, holder, lockFileName)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// readHolder names the process recorded in the lock file.
func readHolder(f *os.File) string {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 64))
	if pid := strings.TrimSpace(string(b)); pid != "" {
		return "pid " + pid
	}
	return "another process (pid not recorded)"
}

// release empties the lock file and drops the lock; it is safe on nil.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unlock(l.f)
	_ = l.f.Close()
	l.f = nil
}
