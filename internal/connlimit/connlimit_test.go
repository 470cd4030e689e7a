package connlimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// slowEntered counts requests inside /slow: a test waits for them, since a
// connection counts as busy only once its request is being served.
var slowEntered atomic.Int32

// serve runs an HTTP server on a limited listener; /slow holds its
// request until release is closed.
func serve(t *testing.T, n int, release chan struct{}) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, n)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		slowEntered.Add(1)
		<-release
		io.WriteString(w, "done")
	})
	srv := &http.Server{Handler: mux, ConnState: l.ConnState}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// dial opens a connection; with a request it sends one and reads the
// answer, leaving the connection idle (keep-alive).
func dial(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if path != "" {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if path != "/slow" {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	return c
}

// closed reports whether the server closed c.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !strings.Contains(err.Error(), "timeout")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdleConnectionsMakeRoomOldestFirst(t *testing.T) {
	l, addr := serve(t, 4, nil)
	// Oldest first: two keep-alive connections, then two silent ones.
	var idle []net.Conn
	idle = append(idle, dial(t, addr, "/"), dial(t, addr, "/"))
	time.Sleep(20 * time.Millisecond)
	idle = append(idle, dial(t, addr, ""), dial(t, addr, ""))
	waitFor(t, "4 open", func() bool { return l.Open() == 4 })
	// Three more clients, each keeping its connection: each is served at
	// once, the connection waiting longest making room.
	for i := range 3 {
		dial(t, addr, "/")
		if l.Open() > 4 {
			t.Errorf("request %d: %d open, limit 4", i, l.Open())
		}
	}
	for i, c := range idle {
		if want := i < 3; closed(c) != want {
			t.Errorf("idle connection %d closed = %v, want %v (oldest first)", i, !want, want)
		}
	}
	if l.Evicted() != 3 {
		t.Errorf("Evicted() = %d, want 3", l.Evicted())
	}
}

func TestBusyConnectionsAreNeverClosed(t *testing.T) {
	release := make(chan struct{})
	l, addr := serve(t, 2, release)
	slowEntered.Store(0)
	busy := []net.Conn{dial(t, addr, "/slow"), dial(t, addr, "/slow")}
	waitFor(t, "2 open", func() bool { return l.Open() == 2 })
	waitFor(t, "both requests being served", func() bool { return slowEntered.Load() == 2 })
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a third request was served while both connections were mid-request: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	for _, c := range busy {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a busy connection was cut: %v", err)
		}
		resp.Body.Close()
	}
	if err := <-got; err != nil {
		t.Errorf("the waiting request once a connection was free: %v", err)
	}
}
