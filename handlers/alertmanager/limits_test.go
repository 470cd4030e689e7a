package alertmanager_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/secret"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// receiverServer serves a receiver that wants the bearer token, logging
// to logs.
func receiverServer(t *testing.T, logs io.Writer) *httptest.Server {
	t.Helper()
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = t.TempDir()
	b, err := bus.Open(context.Background(), bcfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := alertmanager.DefaultConfig()
	cfg.BearerToken = secret.Secret(token)
	rc, err := alertmanager.New(cfg, alertmanager.Deps{Publisher: b, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv
}

// TestUnauthenticatedRefusedBeforeItsBody: a request without credentials
// gets its 401 at once, however slowly its body comes (the server would
// otherwise drain the body before answering).
func TestUnauthenticatedRefusedBeforeItsBody(t *testing.T) {
	srv := receiverServer(t, io.Discard)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST "+alertmanager.Path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	start := time.Now()
	c.SetReadDeadline(start.Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the body trickles: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || time.Since(start) > time.Second {
		t.Errorf("answer %d after %s, want 401 at once", resp.StatusCode, time.Since(start))
	}
}

// TestUnauthorizedFloodLogsBounded: a flood of bad credentials writes a
// bounded number of log lines, which count what they leave out.
func TestUnauthorizedFloodLogsBounded(t *testing.T) {
	var logs lockedBuffer
	srv := receiverServer(t, &logs)
	for range 300 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+alertmanager.Path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad token answered %d", resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+alertmanager.Path, strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := strings.Count(logs.String(), "rejected: bad or missing credentials"); n < 1 || n > 2 {
		t.Errorf("%d log lines for 301 rejected requests, want 1 or 2 (at most one per %s):\n%s", n, "10s", logs.String())
	}
}
