package pagerduty_test

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/handlers/pagerduty"
	"github.com/incidentbot/incidentbot/secret"
)

// trickle sends a request's head and the first byte of a body of n bytes,
// then waits for the answer; it returns the status and how long it took.
func trickle(t *testing.T, url, headers string, n int) (int, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST "+pagerduty.Path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+headers+
		"Content-Length: "+strconv.Itoa(n)+"\r\n\r\n{")
	start := time.Now()
	c.SetReadDeadline(start.Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the body trickles: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestSlowBodiesAreBounded: the body must be read to verify its
// signature, so its reading has a deadline; a request without a signature
// is refused before its body.
func TestSlowBodiesAreBounded(t *testing.T) {
	var logs bytes.Buffer
	rc, err := pagerduty.New(pagerduty.Config{Secrets: []secret.Secret{current}, BodyTimeout: 300 * time.Millisecond},
		pagerduty.Deps{Commands: &sender{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if code, took := trickle(t, srv.URL, "", 50000); code != http.StatusUnauthorized || took > 250*time.Millisecond {
		t.Errorf("unsigned slow body: %d after %s, want 401 at once", code, took)
	}
	if code, took := trickle(t, srv.URL, "X-PagerDuty-Signature: v1=00\r\n", 50000); code != http.StatusRequestTimeout || took > 1500*time.Millisecond {
		t.Errorf("signed slow body: %d after %s, want 408 at the 300ms body deadline", code, took)
	}
	for range 100 {
		post(t, srv.URL, []byte(`{}`), "v1=00", "")
	}
	if n := strings.Count(logs.String(), "pagerduty webhook rejected"); n > 1 {
		t.Errorf("%d log lines for 101 rejected webhooks, want 1:\n%s", n, logs.String())
	}
}
