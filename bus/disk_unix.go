//go:build linux || darwin || freebsd

package bus

import "golang.org/x/sys/unix"

// freeBytes is the space an unprivileged writer has on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return 0, err
	}
	return uint64(s.Bavail) * uint64(s.Bsize), nil //nolint:unconvert // field types differ by OS
}
