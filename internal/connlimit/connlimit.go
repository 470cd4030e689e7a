// Package connlimit bounds the connections an HTTP server holds open, so
// that idle or silent clients cannot take every file descriptor and
// starve real requests. It is a listener that knows, through the server's
// ConnState hook, which of its connections are idle.
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener accepts at most max connections at once. When a new connection
// arrives and max are open, it closes the one that has waited longest
// without a request in hand to make room: a keep-alive connection idle
// since its last answer, or one that has sent no whole request since it
// was accepted. A flood of idle or silent connections so pushes out its
// own oldest members, not the request in flight. Only when every
// connection is in the middle of a request does it wait for one to end. Set ConnState as the
// http.Server's ConnState hook; without it every connection counts as
// busy.
type Listener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*conn]struct{}
	// changed is closed (and replaced) whenever a connection closes or
	// goes idle: an Accept waiting for room looks again.
	changed chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	evicted   atomic.Uint64
	now       func() time.Time
}

// New returns ln limited to n connections at once (at least 1).
func New(ln net.Listener, n int) *Listener {
	return &Listener{Listener: ln, max: max(1, n), conns: map[*conn]struct{}{},
		changed: make(chan struct{}), done: make(chan struct{}), now: time.Now}
}

// conn is an accepted connection and what the server last said of it.
type conn struct {
	net.Conn
	l     *Listener
	once  sync.Once
	state http.ConnState // guarded by l.mu
	since time.Time      // when it entered state
}

// Close closes the connection and frees its place.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// Accept waits for a connection and makes room for it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			tc := &conn{Conn: c, l: l, state: http.StateNew, since: l.now()}
			l.conns[tc] = struct{}{}
			l.mu.Unlock()
			return tc, nil
		}
		victim, wait := l.idlest(), l.changed
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Add(1)
			_ = victim.Close()
			continue
		}
		select {
		case <-wait:
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// idlest is the connection waiting longest without a request in hand: a
// keep-alive connection idle since its last answer, or one that has sent
// no whole request since it was accepted. nil when every one is
// mid-request. l.mu is held.
func (l *Listener) idlest() *conn {
	var best *conn
	for c := range l.conns {
		if c.state != http.StateIdle && c.state != http.StateNew {
			continue
		}
		if best == nil || c.since.Before(best.since) {
			best = c
		}
	}
	return best
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; ok {
		delete(l.conns, c)
		l.signal()
	}
}

// signal wakes an Accept waiting for room. l.mu is held.
func (l *Listener) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// ConnState is the http.Server ConnState hook that tells the listener
// which connections are idle.
func (l *Listener) ConnState(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*conn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	if c.state != s {
		c.state, c.since = s, l.now()
		if s == http.StateIdle {
			l.signal()
		}
	}
	l.mu.Unlock()
}

// Close stops accepting; connections already accepted stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open is the number of connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Evicted is the number of idle connections closed to make room so far.
func (l *Listener) Evicted() uint64 { return l.evicted.Load() }
