// Package watchtest runs the Solana watchers against solanatest's fake
// nodes through every transition they report, and hands back the events
// they published, so that tests further down the pipeline (runbooks, the
// engine) consume real watcher output rather than hand-written labels.
package watchtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/watchers/solana"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// Names of what the scenarios watch.
const (
	// Primary and Backup are the RPC endpoints, by role.
	Primary = "primary"
	Backup  = "backup-1"
	// Escrow is a program configured with a rollback buffer; Payments
	// one without.
	Escrow   = "escrow"
	Payments = "payments"
	// FeePayer is the watched wallet.
	FeePayer = "fee-payer"
	// MinLamports is FeePayer's minimum balance.
	MinLamports = 1_000_000
)

// Keys of what the scenarios watch, derived so they are valid and distinct.
var (
	EscrowID     = keyOf("escrow program")
	EscrowBuffer = keyOf("escrow rollback buffer")
	PaymentsID   = keyOf("payments program")
	Multisig     = keyOf("team multisig")
	Rogue        = keyOf("unknown authority")
	FeePayerAddr = keyOf("fee payer")
)

func keyOf(seed string) string {
	h := sha256.Sum256([]byte(seed))
	return solanago.PublicKeyFromBytes(h[:]).String()
}

// Captured is one event the watchers published.
type Captured struct {
	// Scenario says what happened on chain or to the node, e.g.
	// "escrow upgraded".
	Scenario string
	// Event is the envelope as published.
	Event bus.Event
	// Signal is the event's signal as the engine decodes it (Source and
	// Type set from the envelope).
	Signal signal.Signal
	// View is the RPC view as it stood when the event was published.
	View rpcview.View
}

// RPC returns the captured view as the reader plans consult.
func (c Captured) RPC() rpcview.Reader { return staticView(c.View) }

type staticView rpcview.View

func (s staticView) View(context.Context) (rpcview.View, error) { return rpcview.View(s), nil }

// Capture runs the watchers through every transition they report and
// returns the events they published, in order: program upgrades and
// authority changes (with and without a configured rollback buffer),
// transaction failure rates, a low balance, and RPC endpoints going down
// by role, alone and all together, and recovering.
func Capture(t testing.TB) []Captured {
	t.Helper()
	primary, backup := solanatest.NewServer(), solanatest.NewServer()
	t.Cleanup(primary.Close)
	t.Cleanup(backup.Close)
	nodes := []*solanatest.Server{primary, backup}

	escrowPD, err := solana.ProgramDataAddress(solanago.MustPublicKeyFromBase58(EscrowID))
	if err != nil {
		t.Fatal(err)
	}
	paymentsPD, err := solana.ProgramDataAddress(solanago.MustPublicKeyFromBase58(PaymentsID))
	if err != nil {
		t.Fatal(err)
	}
	// Every node holds the same chain; the watchers read from either.
	setAccount := func(addr string, data []byte) {
		for _, n := range nodes {
			n.SetAccount(addr, solanatest.Account{Data: data})
		}
	}
	setBalance := func(lamports uint64) {
		for _, n := range nodes {
			n.SetBalance(FeePayerAddr, lamports)
		}
	}
	setAccount(escrowPD.String(), programData(100, Multisig))
	setAccount(paymentsPD.String(), programData(100, Multisig))
	setBalance(5 * MinLamports)

	cfg := solana.DefaultConfig()
	cfg.Endpoints = []solana.EndpointConfig{
		{Name: Primary, URL: primary.URL(), WSURL: primary.WSURL(), Role: "primary"},
		{Name: Backup, URL: backup.URL(), WSURL: backup.WSURL(), Role: "backup"},
	}
	cfg.Programs = []solana.ProgramConfig{
		{Name: Escrow, ID: EscrowID, ExpectedAuthority: Multisig, RollbackBuffer: EscrowBuffer},
		{Name: Payments, ID: PaymentsID, ExpectedAuthority: Multisig},
	}
	cfg.Wallets = []solana.WalletConfig{{Name: FeePayer, Address: FeePayerAddr, MinLamports: MinLamports}}
	cfg.Health = solana.HealthConfig{Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, UnhealthyAfter: 2, HealthyAfter: 2, MaxSlotLag: 50}
	cfg.Tx = solana.TxConfig{Window: time.Minute, Threshold: 0.5, MinSamples: 4, PollInterval: time.Hour}
	cfg.ProgramPollInterval = 100 * time.Millisecond // next to the subscription, as in production
	cfg.BalanceInterval = 20 * time.Millisecond
	cfg.Reconnect = solana.BackoffConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	cfg.PublishRetry = solana.BackoffConfig{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}

	views := bus.NewMemKV()
	rec := &recorder{views: rpcview.Store{KV: views}, ids: map[string]bool{}}
	reg := prometheus.NewRegistry()
	w, err := solana.New(cfg, rec, rpcview.Store{KV: views}, bus.NewMemKV(), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("solana watchers: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("watchtest: timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// step makes a change and waits for the events it must produce.
	step := func(scenario string, change func(), types ...string) {
		t.Helper()
		rec.setScenario(scenario)
		before := rec.counts()
		change()
		wait(scenario, func() bool {
			now := rec.counts()
			want := maps.Clone(before)
			for _, typ := range types {
				want[typ]++
			}
			for typ, n := range want {
				if now[typ] < n {
					return false
				}
			}
			return true
		})
	}
	wait("the watchers to subscribe, read their baselines and rank the endpoints", func() bool {
		v, err := rec.views.View(ctx)
		return gauge(t, reg, "solana_program_deploy_slot", "program", Escrow) == 100 &&
			gauge(t, reg, "solana_program_deploy_slot", "program", Payments) == 100 &&
			gauge(t, reg, "solana_wallet_balance_lamports", "wallet", FeePayer) == 5*MinLamports &&
			primary.Subscriptions("accountSubscribe")+backup.Subscriptions("accountSubscribe") == 2 &&
			primary.Subscriptions("logsSubscribe")+backup.Subscriptions("logsSubscribe") == 2 &&
			err == nil && len(v.Endpoints) == 2 && v.Endpoints[0].Healthy && v.Endpoints[1].Healthy
	})

	step("escrow upgraded", func() { setAccount(escrowPD.String(), programData(200, Multisig)) }, "solana.program.upgraded")
	step("escrow upgrade authority changed", func() { setAccount(escrowPD.String(), programData(200, Rogue)) }, "solana.program.authority_changed")
	step("payments upgraded", func() { setAccount(paymentsPD.String(), programData(300, Multisig)) }, "solana.program.upgraded")
	step("payments upgrade authority revoked", func() { setAccount(paymentsPD.String(), programData(300, "")) }, "solana.program.authority_changed")

	n := 0
	txs := func(id string, failed ...bool) func() {
		return func() {
			for _, f := range failed {
				n++
				tx := solanatest.Tx{Signature: signature(n), Logs: []string{"Program " + id + " invoke [1]"}}
				if f {
					tx.Err = map[string]any{"InstructionError": []any{0, map[string]any{"Custom": 6001}}}
				}
				for _, node := range nodes { // counted once, from whichever node streams it
					node.AddTx(id, tx, true)
				}
			}
		}
	}
	step("escrow transactions failing", txs(EscrowID, false, false, false, true, true, true, true), "solana.tx.failure_rate")
	step("escrow transactions succeeding again", txs(EscrowID, false, false, false, false), "solana.tx.failure_rate_recovered")
	step("payments transactions failing", txs(PaymentsID, true, true, true, true), "solana.tx.failure_rate")

	step("fee payer below its minimum", func() { setBalance(MinLamports / 2) }, "solana.balance.low")
	step("fee payer topped up", func() { setBalance(5 * MinLamports) }, "solana.balance.recovered")

	step("primary endpoint behind", func() { primary.SetHealth(solanatest.HealthBehind, 187) }, "solana.rpc.unhealthy")
	step("primary endpoint healthy again", func() { primary.SetHealth(solanatest.HealthOK, 0) }, "solana.rpc.recovered")
	step("backup endpoint unhealthy", func() { backup.SetHealth(solanatest.HealthUnknown, 0) }, "solana.rpc.unhealthy")
	step("primary endpoint down too: all endpoints down", func() { primary.SetHealth(solanatest.HealthUnknown, 0) }, "solana.rpc.unhealthy")
	step("all endpoints healthy again", func() {
		primary.SetHealth(solanatest.HealthOK, 0)
		backup.SetHealth(solanatest.HealthOK, 0)
	}, "solana.rpc.recovered", "solana.rpc.recovered")

	return rec.captured()
}

// gauge reads one series of a gauge from reg, -1 when absent.
func gauge(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// programData builds a ProgramData header; authority "" is none.
func programData(slot uint64, authority string) []byte {
	b := make([]byte, 45)
	binary.LittleEndian.PutUint32(b[0:4], 3)
	binary.LittleEndian.PutUint64(b[4:12], slot)
	if authority != "" {
		b[12] = 1
		k := solanago.MustPublicKeyFromBase58(authority)
		copy(b[13:45], k[:])
	}
	return b
}

// signature makes a distinct, valid transaction signature.
func signature(n int) string {
	var s solanago.Signature
	a := sha256.Sum256([]byte{byte(n), byte(n >> 8), 'a'})
	b := sha256.Sum256([]byte{byte(n), byte(n >> 8), 'b'})
	copy(s[:32], a[:])
	copy(s[32:], b[:])
	return s.String()
}

// recorder keeps what the watchers publish, deduplicating by id as
// JetStream does, with the RPC view at publish time.
type recorder struct {
	views rpcview.Store

	mu       sync.Mutex
	scenario string
	ids      map[string]bool
	out      []Captured
}

func (r *recorder) Publish(ctx context.Context, ev bus.Event) (bus.PublishResult, error) {
	if err := ev.Validate(); err != nil {
		return bus.PublishResult{}, err
	}
	s, err := signal.Decode(ev.Data)
	if err != nil {
		return bus.PublishResult{}, err
	}
	s.Source, s.Type = ev.Source, ev.Type
	v, err := r.views.View(ctx) // Capture waits for the first view
	if err != nil {
		return bus.PublishResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids[ev.ID] {
		return bus.PublishResult{Stream: "EVENTS", Duplicate: true}, nil
	}
	r.ids[ev.ID] = true
	r.out = append(r.out, Captured{Scenario: r.scenario, Event: ev, Signal: s, View: v})
	return bus.PublishResult{Stream: "EVENTS", Sequence: uint64(len(r.out))}, nil
}

func (r *recorder) setScenario(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scenario = s
}

func (r *recorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, c := range r.out {
		m[c.Event.Type]++
	}
	return m
}

func (r *recorder) captured() []Captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.out)
}
