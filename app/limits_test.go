package app_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

// serveEmbedded runs serve on the embedded bus with http adjusted by edit
// until the test ends; it returns the base URL.
func serveEmbedded(t *testing.T, edit func(*config.HTTPConfig)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Bus.DataDir = t.TempDir()
	edit(&cfg.HTTP)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := app.NewServer(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{Listener: ln, Stdout: io.Discard})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestSlowBodyIsCutOffAtTheReadTimeout: a webhook whose body comes a byte
// at a time is answered 408 at http.read_timeout, not held forever.
func TestSlowBodyIsCutOffAtTheReadTimeout(t *testing.T) {
	base := serveEmbedded(t, func(h *config.HTTPConfig) { h.ReadTimeout = time.Second })
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 100ms, for 50s unless cut off
		for range 500 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(start.Add(4 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	switch {
	case err != nil && took < 4*time.Second:
		// The connection closed: an answer too.
	case err != nil:
		t.Fatalf("no answer %s into a body sent a byte at a time (read_timeout 1s): %v", took, err)
	default:
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("answer %d, want 408", resp.StatusCode)
		}
	}
	if took > 3*time.Second {
		t.Errorf("answered after %s, want about the 1s read timeout", took)
	}
}

// TestIdleConnectionsDoNotStarveWebhooks: with http.max_connections
// taken by idle keep-alive connections and silent ones, a real webhook is
// served at once (the idle ones make room, longest idle first) and the
// server never holds more than the limit.
func TestIdleConnectionsDoNotStarveWebhooks(t *testing.T) {
	const limit = 8
	base := serveEmbedded(t, func(h *config.HTTPConfig) {
		h.MaxConnections = limit
		h.ReadHeaderTimeout, h.IdleTimeout = time.Minute, time.Minute // nothing is reaped by time here
	})
	addr := strings.TrimPrefix(base, "http://")
	var idle []net.Conn
	for i := range 3 * limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 { // a keep-alive connection, idle after one request
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
			}
		}
		idle = append(idle, c)
	}
	payload, err := os.ReadFile("../handlers/alertmanager/testdata/webhook.firing.single.json")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Post(base+"/webhook/alertmanager", "application/json", strings.NewReader(string(payload)))
	if err != nil {
		t.Fatalf("webhook behind %d idle connections: %v", 3*limit, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || time.Since(start) > 2*time.Second {
		t.Errorf("webhook answered %d after %s, want 200 at once", resp.StatusCode, time.Since(start))
	}
	open := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "timeout") {
			open++
		}
	}
	if open > limit {
		t.Errorf("%d of %d idle connections still open, limit %d", open, len(idle), limit)
	}
	resp, err = client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^incidentbot_http_connections (\d+)`).FindSubmatch(metrics)
	if m == nil {
		t.Fatalf("no incidentbot_http_connections in /metrics")
	}
	if n, _ := strconv.Atoi(string(m[1])); n > limit {
		t.Errorf("incidentbot_http_connections = %d, limit %d", n, limit)
	}
}
