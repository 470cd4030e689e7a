// Package solanatest is an in-process Solana JSON-RPC and PubSub server for
// tests. It speaks the documented wire shapes (see shared fixtures): it
// echoes request ids byte for byte (solana-go's WebSocket ids exceed
// 2^53), confirms a subscription before it sends any notification on it,
// and serves rentEpoch as u64::MAX. Its state is scriptable: health, slot,
// balances, accounts, transactions, an unresponsive mode and dropping
// every WebSocket connection. It executes one kind of transaction, the
// upgradeable loader's Upgrade, alone or after a durable nonce's
// AdvanceNonceAccount (see upgrade.go).
package solanatest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	solana "github.com/gagliardetto/solana-go"
	"github.com/gorilla/websocket"
)

// Health is what getHealth answers.
type Health int

// Health states.
const (
	// HealthOK answers "ok".
	HealthOK Health = iota
	// HealthBehind answers error -32005 "Node is behind by N slots".
	HealthBehind
	// HealthUnknown answers error -32005 "Node is unhealthy", numSlotsBehind null.
	HealthUnknown
)

// RentEpochMax is the rentEpoch every account is served with (u64::MAX).
const RentEpochMax uint64 = 18446744073709551615

// LoaderID is the owner of ProgramData accounts.
const LoaderID = "BPFLoaderUpgradeab1e11111111111111111111111"

// SystemProgramID owns nonce accounts.
const SystemProgramID = "11111111111111111111111111111111"

// Tx is one transaction mentioning an address.
type Tx struct {
	Signature string
	Slot      uint64
	// Err is the TransactionError (nil for success), e.g.
	// map[string]any{"InstructionError": []any{1, map[string]any{"Custom": 6001}}}.
	Err  any
	Logs []string
	// BlockTime is the Unix time getSignaturesForAddress reports; zero
	// means a fixed time long past.
	BlockTime int64
}

// Account is one stored account.
type Account struct {
	Data     []byte
	Owner    string
	Lamports uint64
}

// Server is the fake node. Create it with NewServer, stop it with Close.
type Server struct {
	srv      *httptest.Server
	upgrader websocket.Upgrader

	mu           sync.Mutex
	health       Health
	behind       uint64
	slot         uint64
	balances     map[string]uint64
	accounts     map[string]Account
	txs          map[string][]Tx // per address, oldest first
	unresponsive chan struct{}   // non-nil while not answering
	calls        map[string]int
	conns        map[*wsConn]struct{}
	nextSub      uint64
	rejected     map[string]bool // subscription methods answered with an error
	genesis      string
	blockhashes  map[solana.Hash]uint64 // handed out by getLatestBlockhash → last valid slot
	landed       map[string]uint64      // signature → slot of the accepted transactions
	sent         []*solana.Transaction
}

// NewServer starts a server. HTTP JSON-RPC and WebSocket PubSub share one
// port: URL and WSURL.
func NewServer() *Server {
	s := &Server{
		slot:     356102417,
		balances: map[string]uint64{},
		accounts: map[string]Account{},
		txs:      map[string][]Tx{},
		calls:    map[string]int{},
		conns:    map[*wsConn]struct{}{},
		rejected: map[string]bool{},
		nextSub:  4110,
		genesis:  defaultGenesisHash,

		blockhashes: map[solana.Hash]uint64{},
		landed:      map[string]uint64{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the HTTP JSON-RPC URL.
func (s *Server) URL() string { return s.srv.URL }

// WSURL is the PubSub WebSocket URL.
func (s *Server) WSURL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

// Close stops answering, drops connections and shuts the server down.
func (s *Server) Close() {
	s.SetUnresponsive(false)
	s.DropConnections()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetHealth sets what getHealth answers; behind is the slot count of
// HealthBehind.
func (s *Server) SetHealth(h Health, behind uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health, s.behind = h, behind
}

// SetSlot sets what getSlot answers and notifies slot subscribers.
func (s *Server) SetSlot(slot uint64) {
	s.mu.Lock()
	s.slot = slot
	s.mu.Unlock()
	s.notify("slotSubscribe", "", "slotNotification", map[string]uint64{"parent": slot - 1, "root": slot - 32, "slot": slot})
}

// Slot is the current slot.
func (s *Server) Slot() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slot
}

// SetBalance sets an address's balance in lamports.
func (s *Server) SetBalance(address string, lamports uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.balances[address] = lamports
}

// SetAccount stores an account and notifies its account subscribers. As
// on a real chain the write lands in a new slot: the slot advances by one,
// so a read answered before the write carries an older context slot than
// the notification (clients order views by it).
func (s *Server) SetAccount(address string, a Account) {
	s.mu.Lock()
	s.accounts[address] = a
	s.slot++
	slot := s.slot
	s.mu.Unlock()
	s.notify("accountSubscribe", address, "accountNotification", contextValue(slot, accountJSON(a, nil)))
}

// StoreAccount stores an account without notifying subscribers, as if
// the notification was lost; only getAccountInfo sees the change. The
// slot advances by one, as for SetAccount.
func (s *Server) StoreAccount(address string, a Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[address] = a
	s.slot++
}

// AddTx records a transaction mentioning address (seen by
// getSignaturesForAddress) and, when notify is true, sends a
// logsNotification to the logs subscribers of address. notify=false
// models a transaction that happened while the client was disconnected.
func (s *Server) AddTx(address string, tx Tx, notify bool) {
	s.mu.Lock()
	s.txs[address] = append(s.txs[address], tx)
	s.mu.Unlock()
	if notify {
		s.NotifyTx(address, tx)
	}
}

// NotifyTx sends the logsNotification of tx to the logs subscribers of
// address, late: tx was added with notify=false.
func (s *Server) NotifyTx(address string, tx Tx) {
	slot := tx.Slot
	if slot == 0 {
		s.mu.Lock()
		slot = s.slot
		s.mu.Unlock()
	}
	s.notify("logsSubscribe", address, "logsNotification", contextValue(slot, map[string]any{
		"signature": tx.Signature, "err": tx.Err, "logs": tx.Logs,
	}))
}

// RejectSubscriptions makes subscribe requests of method ("logsSubscribe",
// ...) answer a JSON-RPC error, as a provider that disables the method does.
func (s *Server) RejectSubscriptions(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected[method] = true
}

// SetUnresponsive makes every HTTP request hang (until the client gives
// up) while on is true.
func (s *Server) SetUnresponsive(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case on && s.unresponsive == nil:
		s.unresponsive = make(chan struct{})
	case !on && s.unresponsive != nil:
		close(s.unresponsive)
		s.unresponsive = nil
	}
}

// DropConnections closes every WebSocket connection abruptly.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := s.conns
	s.conns = map[*wsConn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		c.conn.Close()
	}
}

// Subscriptions counts the confirmed, live subscriptions of a method
// ("logsSubscribe", "accountSubscribe", "slotSubscribe").
func (s *Server) Subscriptions(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.mu.Lock()
		for _, sub := range c.subs {
			if sub.method == method {
				n++
			}
		}
		c.mu.Unlock()
	}
	return n
}

// Calls counts the requests received for a method (HTTP and WebSocket).
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// request is a JSON-RPC request; the id stays raw so it is echoed exactly.
type request struct {
	JSONRPC string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.serveWS(w, r)
		return
	}
	s.mu.Lock()
	hang := s.unresponsive
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, map[string]any{"jsonrpc": "2.0", "id": nil, "error": rpcError{Code: -32700, Message: "Parse error"}})
		return
	}
	var result any
	var rerr *rpcError
	if req.Method == "sendTransaction" {
		result, rerr = s.sendTransaction(req)
	} else {
		result, rerr = s.call(req)
	}
	resp := map[string]any{"jsonrpc": "2.0", "id": req.ID}
	if rerr != nil {
		resp["error"] = rerr
	} else {
		resp["result"] = result
	}
	writeJSON(w, resp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// options is the union of the config objects the served methods take.
type options struct {
	Commitment string `json:"commitment"`
	Encoding   string `json:"encoding"`
	DataSlice  *struct {
		Offset int `json:"offset"`
		Length int `json:"length"`
	} `json:"dataSlice"`
	Limit  int    `json:"limit"`
	Before string `json:"before"`
	Until  string `json:"until"`
}

func (s *Server) call(req request) (any, *rpcError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[req.Method]++
	var addr string
	var opts options
	if len(req.Params) > 0 {
		_ = json.Unmarshal(req.Params[0], &addr)
		_ = json.Unmarshal(req.Params[len(req.Params)-1], &opts)
	}
	switch req.Method {
	case "getHealth":
		switch s.health {
		case HealthBehind:
			return nil, &rpcError{Code: -32005, Message: fmt.Sprintf("Node is behind by %d slots", s.behind), Data: map[string]any{"numSlotsBehind": s.behind}}
		case HealthUnknown:
			return nil, &rpcError{Code: -32005, Message: "Node is unhealthy", Data: map[string]any{"numSlotsBehind": nil}}
		}
		return "ok", nil
	case "getSlot":
		return s.slot, nil
	case "getVersion":
		return map[string]any{"solana-core": "2.2.20", "feature-set": uint32(3294202862)}, nil
	case "getBalance":
		return contextValue(s.slot, s.balances[addr]), nil
	case "getAccountInfo":
		a, ok := s.accounts[addr]
		if !ok {
			return contextValue(s.slot, nil), nil
		}
		return contextValue(s.slot, accountJSON(a, opts.DataSlice)), nil
	case "getSignaturesForAddress":
		return s.signatures(addr, opts), nil
	case "getGenesisHash":
		return s.genesis, nil
	case "getLatestBlockhash":
		return s.latestBlockhash(), nil
	case "getSignatureStatuses":
		return s.signatureStatuses(req.Params)
	}
	return nil, &rpcError{Code: -32601, Message: "Method not found"}
}

// signatures answers getSignaturesForAddress: newest first, starting
// below before, stopping at until (exclusive), at most limit.
func (s *Server) signatures(addr string, o options) []map[string]any {
	limit := o.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	txs := s.txs[addr]
	out := []map[string]any{}
	started := o.Before == ""
	for i := len(txs) - 1; i >= 0 && len(out) < limit; i-- {
		tx := txs[i]
		if !started {
			started = tx.Signature == o.Before
			continue
		}
		if o.Until != "" && tx.Signature == o.Until {
			break
		}
		slot := tx.Slot
		if slot == 0 {
			slot = s.slot
		}
		blockTime := tx.BlockTime
		if blockTime == 0 {
			blockTime = 1755093012
		}
		out = append(out, map[string]any{
			"signature": tx.Signature, "slot": slot, "err": tx.Err, "memo": nil,
			"blockTime": blockTime, "confirmationStatus": "confirmed",
		})
	}
	return out
}

func contextValue(slot uint64, v any) map[string]any {
	return map[string]any{"context": map[string]any{"apiVersion": "2.2.20", "slot": slot}, "value": v}
}

// accountJSON renders an account like getAccountInfo with base64
// encoding; space stays the full length even with a data slice.
func accountJSON(a Account, slice *struct {
	Offset int `json:"offset"`
	Length int `json:"length"`
}) map[string]any {
	data := a.Data
	if slice != nil {
		lo := min(slice.Offset, len(data))
		hi := min(lo+slice.Length, len(data))
		data = data[lo:hi]
	}
	owner := a.Owner
	if owner == "" {
		owner = LoaderID
	}
	return map[string]any{
		"data":       []string{base64.StdEncoding.EncodeToString(data), "base64"},
		"executable": false,
		"lamports":   a.Lamports,
		"owner":      owner,
		"rentEpoch":  RentEpochMax,
		"space":      len(a.Data),
	}
}
