package testenv

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a running real redis-server.
type Redis struct {
	// URL is redis://127.0.0.1:<port>/0.
	URL    string
	Client *redis.Client
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

// StartRedis starts Debian's redis-server on a free loopback port with
// no persistence, and a client for it; both end with the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := LookBinary(t, "redis-server", "redis-server")
	port := strconv.Itoa(FreePort(t))
	r := &Redis{URL: "redis://127.0.0.1:" + port + "/0", log: &bytes.Buffer{}}
	r.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "yes")
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	opt, _ := redis.ParseURL(r.URL)
	r.Client = redis.NewClient(opt)
	t.Cleanup(func() {
		_ = r.Client.Close()
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server log:\n%s", r.log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := r.Client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server not ready after 10s: %v\n%s", err, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
