package slacktestutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// AppsConnectionsOpen is the Web API method that hands a Socket Mode
// client its websocket URL.
const AppsConnectionsOpen = "apps.connections.open"

// SocketAck is what an app answered over Socket Mode to one envelope: its
// id and the response payload (null for a plain acknowledgement).
type SocketAck struct {
	EnvelopeID string          `json:"envelope_id"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

// sockets is the Socket Mode side of the server: apps.connections.open
// answers with the server's own /ws, where each connection gets a hello,
// WebSocket pings, the envelopes the test sends, and whose answers are
// recorded.
type sockets struct {
	mu       sync.Mutex
	appToken string
	conns    []*socketConn
	next     int
	seq      int
	acks     []SocketAck
	ping     time.Duration
}

type socketConn struct {
	c   *websocket.Conn
	wmu sync.Mutex
}

// RequireAppToken makes apps.connections.open answer invalid_auth unless
// it is called with token (an xapp-… app-level token).
func (s *Server) RequireAppToken(token string) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	s.sock.appToken = token
}

// SocketConnections counts the Socket Mode connections open now.
func (s *Server) SocketConnections() int {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return len(s.sock.conns)
}

// SendSocket sends one envelope of type typ ("slash_commands",
// "interactive", "events_api") with payload to one of the open Socket Mode
// connections, in turn, as Slack delivers each event to one connection of
// an app. It returns the envelope id to wait for the answer with.
func (s *Server) SendSocket(typ string, payload any) (string, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	s.sock.mu.Lock()
	if len(s.sock.conns) == 0 {
		s.sock.mu.Unlock()
		return "", errors.New("no socket mode connection")
	}
	s.sock.seq++
	id := fmt.Sprintf("env-%04d-%d", s.sock.seq, time.Now().UnixNano()%1e6)
	conn := s.sock.conns[s.sock.next%len(s.sock.conns)]
	s.sock.next++
	s.sock.mu.Unlock()
	frame, _ := json.Marshal(map[string]any{
		"envelope_id": id, "type": typ, "payload": json.RawMessage(raw),
		"accepts_response_payload": typ != "events_api", "retry_attempt": 0, "retry_reason": "",
	})
	conn.wmu.Lock()
	defer conn.wmu.Unlock()
	if err := conn.c.WriteMessage(websocket.TextMessage, frame); err != nil {
		return "", fmt.Errorf("write envelope: %w", err)
	}
	return id, nil
}

// SocketAck returns the answer to envelope id, once it came.
func (s *Server) SocketAck(id string) (SocketAck, bool) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	i := slices.IndexFunc(s.sock.acks, func(a SocketAck) bool { return a.EnvelopeID == id })
	if i < 0 {
		return SocketAck{}, false
	}
	return s.sock.acks[i], true
}

// SocketAcks returns every answer received, in order.
func (s *Server) SocketAcks() []SocketAck {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return slices.Clone(s.sock.acks)
}

// appsConnectionsOpen answers apps.connections.open with this server's
// /ws, after checking the app token.
func (s *Server) appsConnectionsOpen(w http.ResponseWriter, r *http.Request) {
	s.sock.mu.Lock()
	want := s.sock.appToken
	s.sock.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if (want != "" && tok != want) || !strings.HasPrefix(tok, "xapp-") {
		_ = json.NewEncoder(w).Encode(okFalse("invalid_auth"))
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": "ws://" + r.Host + "/ws"})
}

// socket serves one Socket Mode connection.
func (s *Server) socket(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn := &socketConn{c: c}
	s.sock.mu.Lock()
	s.sock.conns = append(s.sock.conns, conn)
	n, ping := len(s.sock.conns), s.sock.ping
	s.sock.mu.Unlock()
	defer func() {
		s.sock.mu.Lock()
		s.sock.conns = slices.DeleteFunc(s.sock.conns, func(x *socketConn) bool { return x == conn })
		s.sock.mu.Unlock()
		_ = c.Close()
	}()
	hello, _ := json.Marshal(map[string]any{"type": "hello", "num_connections": n,
		"connection_info": map[string]any{"app_id": appID}, "debug_info": map[string]any{"host": "slacktestutil"}})
	conn.wmu.Lock()
	err = c.WriteMessage(websocket.TextMessage, hello)
	conn.wmu.Unlock()
	if err != nil {
		return
	}
	if ping <= 0 {
		ping = 2 * time.Second
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		// Slack pings; a client that hears none for a while reconnects.
		t := time.NewTicker(ping)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
			}
		}
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		var ack SocketAck
		if json.Unmarshal(msg, &ack) == nil && ack.EnvelopeID != "" {
			s.sock.mu.Lock()
			s.sock.acks = append(s.sock.acks, ack)
			s.sock.mu.Unlock()
		}
	}
}

// closeSockets ends every Socket Mode connection (at Close).
func (s *Server) closeSockets() {
	s.sock.mu.Lock()
	conns := slices.Clone(s.sock.conns)
	s.sock.mu.Unlock()
	for _, c := range conns {
		_ = c.c.Close()
	}
}
