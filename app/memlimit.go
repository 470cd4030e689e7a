package app

import (
	"bufio"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryLimit is the soft memory limit serve sets for the Go runtime from
// the memory_limit key, and where it came from: the key, GOMEMLIMIT, the
// container's cgroup, or none (limit 0).
//
// The limit matters because the embedded NATS store keeps its message
// blocks in pooled 4–8 MiB buffers: without a limit the collector lets the
// heap grow to twice what it keeps live before it reclaims them, and the
// scavenger returns freed pages slowly. Near a limit it collects and
// returns them sooner.
func MemoryLimit(key int64, environ []string, cgroupRoot string) (limit int64, from string) {
	switch {
	case key > 0:
		return key, "memory_limit"
	case key < 0:
		return 0, "none"
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOMEMLIMIT="); ok && v != "" {
			return 0, "GOMEMLIMIT" // the runtime read it at start
		}
	}
	if c := cgroupLimit(cgroupRoot); c > 0 {
		return c / 10 * 9, "cgroup"
	}
	return 0, "none"
}

// SetMemoryLimit applies MemoryLimit to the runtime and logs it.
func SetMemoryLimit(key int64, environ []string, log *slog.Logger) {
	limit, from := MemoryLimit(key, environ, "/sys/fs/cgroup")
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if from != "none" {
		log.Info("Go memory limit", "bytes", debug.SetMemoryLimit(-1), "from", from)
	}
}

// cgroupLimit is the memory limit of this process's cgroup under root
// (cgroup v2 memory.max, else v1 memory.limit_in_bytes), or 0 when there
// is none or it cannot be read.
func cgroupLimit(root string) int64 {
	if v, ok := readLimit(root + "/memory.max"); ok {
		return v
	}
	if path := v1MemoryPath(); path != "" {
		if v, ok := readLimit(root + "/memory" + path + "/memory.limit_in_bytes"); ok {
			return v
		}
	}
	v, _ := readLimit(root + "/memory/memory.limit_in_bytes")
	return v
}

func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= math.MaxInt64/2 { // v1 says "no limit" with a huge number
		return 0, err == nil
	}
	return v, true
}

// v1MemoryPath is this process's memory cgroup path under cgroup v1.
func v1MemoryPath() string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			return parts[2]
		}
	}
	return ""
}
