package solanatest

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

// wsConn is one PubSub connection and its subscriptions.
type wsConn struct {
	conn *websocket.Conn
	wmu  sync.Mutex // one writer at a time

	mu   sync.Mutex
	subs map[uint64]subscription
}

type subscription struct {
	method  string
	address string // mentions / account; "" for slot
}

func (c *wsConn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.WriteJSON(v)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{conn: conn, subs: map[uint64]subscription{}}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		conn.Close()
	}()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var req request
		if err := json.Unmarshal(msg, &req); err != nil {
			_ = c.write(map[string]any{"jsonrpc": "2.0", "id": nil, "error": rpcError{Code: -32700, Message: "Parse error"}})
			continue
		}
		s.handleWS(c, req)
	}
}

var unsubscribeOf = map[string]string{
	"logsUnsubscribe": "logsSubscribe", "accountUnsubscribe": "accountSubscribe", "slotUnsubscribe": "slotSubscribe",
}

func (s *Server) handleWS(c *wsConn, req request) {
	s.mu.Lock()
	s.calls[req.Method]++
	s.mu.Unlock()
	reply := func(result any, rerr *rpcError) {
		resp := map[string]any{"jsonrpc": "2.0", "id": req.ID}
		if rerr != nil {
			resp["error"] = rerr
		} else {
			resp["result"] = result
		}
		_ = c.write(resp)
	}
	s.mu.Lock()
	rejected := s.rejected[req.Method]
	s.mu.Unlock()
	if rejected {
		reply(nil, &rpcError{Code: -32601, Message: "Method not found"})
		return
	}
	sub := subscription{method: req.Method}
	switch req.Method {
	case "slotSubscribe":
	case "accountSubscribe":
		if len(req.Params) < 1 || json.Unmarshal(req.Params[0], &sub.address) != nil {
			reply(nil, &rpcError{Code: -32602, Message: "Invalid params"})
			return
		}
	case "logsSubscribe":
		var filter struct {
			Mentions []string `json:"mentions"`
		}
		var all string
		switch {
		case len(req.Params) < 1:
			reply(nil, &rpcError{Code: -32602, Message: "Invalid params"})
			return
		case json.Unmarshal(req.Params[0], &all) == nil:
			sub.address = "" // "all": every transaction
		case json.Unmarshal(req.Params[0], &filter) == nil && len(filter.Mentions) == 1:
			sub.address = filter.Mentions[0]
		default:
			reply(nil, &rpcError{Code: -32602, Message: "Invalid Request: Only 1 address supported"})
			return
		}
	default:
		kind, ok := unsubscribeOf[req.Method]
		if !ok {
			reply(nil, &rpcError{Code: -32601, Message: "Method not found"})
			return
		}
		var ids []uint64
		_ = json.Unmarshal(rawArray(req.Params), &ids)
		found := false
		c.mu.Lock()
		for _, id := range ids {
			if c.subs[id].method == kind {
				delete(c.subs, id)
				found = true
			}
		}
		c.mu.Unlock()
		if !found {
			reply(nil, &rpcError{Code: -32602, Message: "Invalid subscription id."})
			return
		}
		reply(true, nil)
		return
	}
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	s.mu.Unlock()
	// Register and confirm under the write lock: a notification for the new
	// subscription waits for that lock, so it cannot precede the confirmation
	// the client needs to route it, and the subscription is live (counted by
	// Subscriptions) before the client can read its id.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.subs[id] = sub
	c.mu.Unlock()
	_ = c.conn.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": id})
}

func rawArray(params []json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(params)
	return b
}

// notify sends a notification to every subscription of method on address
// ("" matches every logs subscription to "all" too).
func (s *Server) notify(method, address, notification string, result any) {
	s.mu.Lock()
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		var ids []uint64
		for id, sub := range c.subs {
			if sub.method == method && (sub.address == address || (method == "logsSubscribe" && sub.address == "")) {
				ids = append(ids, id)
			}
		}
		c.mu.Unlock()
		for _, id := range ids {
			_ = c.write(map[string]any{
				"jsonrpc": "2.0", "method": notification,
				"params": map[string]any{"result": result, "subscription": id},
			})
		}
	}
}
