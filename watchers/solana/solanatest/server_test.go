package solanatest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
	"github.com/gorilla/websocket"
)

const pda = "86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T"

func TestHTTPShapes(t *testing.T) {
	s := NewServer()
	defer s.Close()
	c := rpc.New(s.URL())
	ctx := context.Background()

	for _, tt := range []struct {
		name    string
		health  Health
		wantMsg string
	}{
		{"ok", HealthOK, ""},
		{"behind", HealthBehind, "Node is behind by 187 slots"},
		{"unknown", HealthUnknown, "Node is unhealthy"},
	} {
		t.Run("getHealth "+tt.name, func(t *testing.T) {
			s.SetHealth(tt.health, 187)
			got, err := c.GetHealth(ctx)
			if tt.wantMsg == "" {
				if err != nil || got != "ok" {
					t.Fatalf("GetHealth = %q, %v", got, err)
				}
				return
			}
			var re *jsonrpc.RPCError
			if !errors.As(err, &re) || re.Code != -32005 || re.Message != tt.wantMsg {
				t.Fatalf("GetHealth err = %v, want -32005 %q", err, tt.wantMsg)
			}
		})
	}

	data := make([]byte, 100)
	data[0] = 3
	s.StoreAccount(pda, Account{Data: data, Lamports: 7})
	off, n := uint64(0), uint64(45)
	acc, err := c.GetAccountInfoWithOpts(ctx, solanago.MustPublicKeyFromBase58(pda), &rpc.GetAccountInfoOpts{
		Encoding: solanago.EncodingBase64, DataSlice: &rpc.DataSlice{Offset: &off, Length: &n},
	})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Value.RentEpoch.String() != "18446744073709551615" || acc.Value.Space != 100 || len(acc.Value.Data.GetBinary()) != 45 {
		t.Errorf("account rentEpoch %s space %d data %d", acc.Value.RentEpoch, acc.Value.Space, len(acc.Value.Data.GetBinary()))
	}
	if _, err := c.GetAccountInfo(ctx, solanago.SystemProgramID); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("missing account: err = %v, want rpc.ErrNotFound", err)
	}

	s.SetSlot(42)
	if slot, err := c.GetSlot(ctx, rpc.CommitmentConfirmed); err != nil || slot != 42 {
		t.Errorf("GetSlot = %d, %v", slot, err)
	}
	s.SetBalance(pda, 1834500000)
	if b, err := c.GetBalance(ctx, solanago.MustPublicKeyFromBase58(pda), rpc.CommitmentConfirmed); err != nil || b.Value != 1834500000 {
		t.Errorf("GetBalance = %v, %v", b, err)
	}
	if v, err := c.GetVersion(ctx); err != nil || v.SolanaCore != "2.2.20" {
		t.Errorf("GetVersion = %v, %v", v, err)
	}

	var sigs []solanago.Signature
	for i := range 5 {
		var sg solanago.Signature
		sg[0] = byte(i + 1)
		sigs = append(sigs, sg)
		s.AddTx(pda, Tx{Signature: sg.String(), Err: map[string]any{"InstructionError": []any{1, map[string]any{"Custom": 6001}}}}, false)
	}
	limit := 2
	out, err := c.GetSignaturesForAddressWithOpts(ctx, solanago.MustPublicKeyFromBase58(pda), &rpc.GetSignaturesForAddressOpts{Limit: &limit, Before: sigs[4], Until: sigs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Signature != sigs[3] || out[1].Signature != sigs[2] || out[0].Err == nil {
		t.Errorf("signatures = %+v", out)
	}
}

func TestUnresponsive(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.SetUnresponsive(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := rpc.New(s.URL()).GetHealth(ctx); err == nil {
		t.Fatal("GetHealth answered while unresponsive")
	}
	s.SetUnresponsive(false)
	if _, err := rpc.New(s.URL()).GetHealth(context.Background()); err != nil {
		t.Fatalf("GetHealth after recovery: %v", err)
	}
}

func TestPubSub(t *testing.T) {
	s := NewServer()
	defer s.Close()
	conn, _, err := websocket.DefaultDialer.Dial(s.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() map[string]json.RawMessage {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m map[string]json.RawMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// u64 max does not survive float64: the id must come back byte for byte.
	const bigID = "18446744073709551615"
	send := func(method, params string) {
		t.Helper()
		msg := `{"jsonrpc":"2.0","id":` + bigID + `,"method":"` + method + `","params":` + params + `}`
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}

	send("logsSubscribe", `[{"mentions":["`+pda+`","11111111111111111111111111111111"]},{}]`)
	m := read()
	if string(m["id"]) != bigID || !strings.Contains(string(m["error"]), "Only 1 address supported") {
		t.Errorf("multiple mentions answer = %s %s", m["id"], m["error"])
	}

	send("logsSubscribe", `[{"mentions":["`+pda+`"]},{"commitment":"confirmed"}]`)
	m = read()
	if string(m["id"]) != bigID || m["result"] == nil {
		t.Fatalf("subscribe answer = %v", m)
	}
	subID := string(m["result"])
	if s.Subscriptions("logsSubscribe") != 1 {
		t.Fatalf("subscription not registered after confirmation")
	}
	s.AddTx(pda, Tx{Signature: "sig", Err: nil, Logs: []string{"Program log: hi"}}, true)
	m = read()
	if string(m["method"]) != `"logsNotification"` || !strings.Contains(string(m["params"]), `"subscription":`+subID) {
		t.Errorf("notification = %s %s", m["method"], m["params"])
	}

	send("logsUnsubscribe", `[`+subID+`]`)
	if m = read(); string(m["result"]) != "true" {
		t.Errorf("unsubscribe = %v", m)
	}

	send("accountSubscribe", `["`+pda+`",{"encoding":"base64"}]`)
	read()
	s.SetAccount(pda, Account{Data: []byte{3, 0, 0, 0}})
	m = read()
	if string(m["method"]) != `"accountNotification"` || !strings.Contains(string(m["params"]), `"rentEpoch":18446744073709551615`) {
		t.Errorf("account notification = %s", m["params"])
	}

	s.DropConnections()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.ReadMessage(); err == nil {
		t.Errorf("connection still open after DropConnections")
	}
}
