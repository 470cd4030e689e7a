package bus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/incidentbot/incidentbot/bus"
)

// freePort picks a loopback port nothing listens on yet.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNATS starts a JetStream server on port with a password.
func startNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(),
		Username: "bot", Password: "s3cret-pass", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOpenWaitsForNATS: an external NATS that is down when the bot starts
// is waited for, and the log and OnWait say so; once it is up, Open
// provisions the streams and returns a ready bus.
func TestOpenWaitsForNATS(t *testing.T) {
	port := freePort(t)
	cfg := bus.DefaultConfig()
	cfg.URL = "nats://bot:s3cret-pass@127.0.0.1:" + strconv.Itoa(port)
	var logs syncBuffer
	var mu sync.Mutex
	var waits []bus.Wait
	type result struct {
		b   *bus.Bus
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		b, err := bus.Open(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), bus.OnWait(func(w bus.Wait) {
			mu.Lock()
			waits = append(waits, w)
			mu.Unlock()
		}))
		done <- result{b, err}
	}()
	time.Sleep(2 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("Open returned before NATS was up: %v", r.err)
	default:
	}
	startNATS(t, port)
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not return within 30s of NATS starting")
	}
	if r.err != nil {
		t.Fatalf("Open: %v", r.err)
	}
	defer r.b.Close()
	if err := r.b.Ready(ctx); err != nil {
		t.Errorf("Ready after Open: %v", err)
	}
	if _, err := r.b.Publish(ctx, event("after-wait")); err != nil {
		t.Errorf("publish after the wait: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) == 0 || !strings.HasPrefix(waits[0].What, "NATS at nats://") || waits[0].Err == nil {
		t.Errorf("OnWait got %v, want waits for NATS with their error", waits)
	}
	if !strings.Contains(logs.String(), "waiting for NATS at") {
		t.Errorf("the log does not say what it waits for:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "waiting for NATS"); n > 2 {
		t.Errorf("%d wait lines in about 2s: the wait log is not rate-limited:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "s3cret-pass") || strings.Contains(waits[0].String(), "s3cret-pass") {
		t.Errorf("the NATS password is printed:\n%s", logs.String())
	}
}

// TestOpenGivesUpWhenItsContextEnds: a context that ends first returns an
// error saying what was awaited, for how long, and the last attempt's
// error.
func TestOpenGivesUpWhenItsContextEnds(t *testing.T) {
	cfg := bus.DefaultConfig()
	cfg.URL = "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := bus.Open(ctx, cfg, quietLogger())
	if err == nil {
		t.Fatal("Open succeeded with no NATS")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Open took %s after its context ended", took)
	}
	for _, want := range []string{"gave up waiting for NATS at nats://127.0.0.1:", "attempts", "context deadline exceeded", "last error: connect to nats"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not match context.DeadlineExceeded", err)
	}
}

// TestOpenFailsAtOnceOnRefusedCredentials: a wrong password will not
// get better by waiting.
func TestOpenFailsAtOnceOnRefusedCredentials(t *testing.T) {
	port := freePort(t)
	startNATS(t, port)
	cfg := bus.DefaultConfig()
	cfg.URL = "nats://bot:wrong@127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := bus.Open(ctx, cfg, quietLogger())
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") || time.Since(start) > 10*time.Second {
		t.Errorf("Open with a wrong password: %v after %s, want an authorization error at once", err, time.Since(start))
	}
}
