package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

// syncBuffer collects log output written from several goroutines.
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

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// get returns the status and body of a request to the server.
func get(t *testing.T, method, url string, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// externalBusConfig is serve's configuration against NATS at port.
func externalBusConfig(t *testing.T, port int) (config.Config, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Bus.URL = "nats://127.0.0.1:" + strconv.Itoa(port)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg, ln
}

// TestServeStartsBeforeNATS: started against a NATS that is not up yet,
// serve listens at once: /healthz answers, /readyz is false and says what
// it waits for, and webhooks get 503 with Retry-After (which Alertmanager
// retries). Once NATS is up the bot provisions, becomes ready and takes
// webhooks.
func TestServeStartsBeforeNATS(t *testing.T) {
	port := freePort(t)
	cfg, ln := externalBusConfig(t, port)
	base := "http://" + ln.Addr().String()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		s   *app.Server
		err error
	}
	built := make(chan result, 1)
	go func() {
		s, err := app.NewServer(ctx, cfg, log, app.Options{Listener: ln, Stdout: io.Discard})
		built <- result{s, err}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "waiting for NATS") {
		if time.Now().After(deadline) {
			t.Fatalf("no wait logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _ := get(t, "GET", base+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz while waiting = %d, want 200", code)
	}
	if code, body, _ := get(t, "GET", base+"/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for NATS at nats://127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("/readyz while waiting = %d %q, want 503 saying it waits for NATS", code, body)
	}
	if code, _, h := get(t, "POST", base+"/webhook/alertmanager", "{}"); code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("webhook while waiting = %d (Retry-After %q), want 503 with Retry-After", code, h.Get("Retry-After"))
	}

	time.Sleep(2 * time.Second) // NATS comes up a few seconds later
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	var r result
	select {
	case r = <-built:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not finish starting within 60s of NATS starting:\n%s", logs.String())
	}
	if r.err != nil {
		t.Fatalf("NewServer: %v", r.err)
	}
	done := make(chan error, 1)
	go func() { done <- r.s.Run(ctx) }()
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, body, _ := get(t, "GET", base+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q 10s after start, want 200", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	payload, err := os.ReadFile("../handlers/alertmanager/testdata/webhook.firing.single.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, "POST", base+"/webhook/alertmanager", string(payload)); code != http.StatusOK {
		t.Errorf("webhook once ready = %d %s, want 200", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestServeGivesUpWhenItsContextEnds: a start that its context ends
// while NATS is still down returns an error saying what it waited for,
// and leaves nothing listening.
func TestServeGivesUpWhenItsContextEnds(t *testing.T) {
	cfg, ln := externalBusConfig(t, freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := app.NewServer(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{Listener: ln, Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "gave up waiting for NATS at nats://127.0.0.1:") || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("NewServer = %v, want it to say it gave up waiting for NATS", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after a failed start")
	}
}
