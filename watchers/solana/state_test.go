package solana

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// TestProgramChangeWhileDown: the watchers stop, the program changes on
// the node, the watchers start again on the same watch state: the change
// is reported once, and not at all on a second restart.
func TestProgramChangeWhileDown(t *testing.T) {
	tests := []struct {
		name           string
		next           []byte
		wantUpgraded   map[string]any
		wantAuthority  map[string]any
		wantSlot       uint64
		wantStoredAuth string
	}{
		{
			name:         "upgraded",
			next:         programDataBytes(200, key(multisig)),
			wantUpgraded: map[string]any{"slot": float64(200), "previous_slot": float64(100), "authority": multisig},
			wantSlot:     200, wantStoredAuth: multisig,
		},
		{
			name:          "authority changed",
			next:          programDataBytes(100, key(rogue)),
			wantAuthority: map[string]any{"authority": rogue, "previous_authority": multisig, "expected_authority": multisig},
			wantSlot:      100, wantStoredAuth: rogue,
		},
		{
			name:          "authority revoked",
			next:          programDataBytes(100, nil),
			wantAuthority: map[string]any{"authority": "none", "previous_authority": multisig},
			wantSlot:      100, wantStoredAuth: "none",
		},
		{
			name:          "upgraded by another authority",
			next:          programDataBytes(300, key(rogue)),
			wantUpgraded:  map[string]any{"slot": float64(300), "previous_slot": float64(100), "authority": rogue},
			wantAuthority: map[string]any{"authority": rogue, "previous_authority": multisig},
			wantSlot:      300, wantStoredAuth: rogue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := solanatest.NewServer()
			defer srv.Close()
			srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(multisig))})
			cfg := txConfig(srv)
			cfg.ProgramPollInterval = 50 * time.Millisecond // a start whose first read fails reads again soon
			state := bus.NewMemKV()

			first := startWithState(t, cfg, nil, state)
			eventually(t, "baseline stored", func() bool {
				st, ok := storedProgram(t, state, programID)
				return ok && st.Slot == 100 && st.Authority == multisig
			})
			first.stop()
			if n := first.pub.count("solana.program.upgraded") + first.pub.count("solana.program.authority_changed"); n != 0 {
				t.Fatalf("%d program events for the expected baseline", n)
			}

			srv.StoreAccount(programData, solanatest.Account{Data: tt.next})

			second := startWithState(t, cfg, nil, state)
			wantUp, wantAuth := 0, 0
			if tt.wantUpgraded != nil {
				wantUp = 1
			}
			if tt.wantAuthority != nil {
				wantAuth = 1
			}
			eventually(t, "the change reported and stored", func() bool {
				st, ok := storedProgram(t, state, programID)
				return ok && st.Slot == tt.wantSlot && st.Authority == tt.wantStoredAuth &&
					second.pub.count("solana.program.upgraded") == wantUp &&
					second.pub.count("solana.program.authority_changed") == wantAuth
			})
			for typ, want := range map[string]map[string]any{
				"solana.program.upgraded": tt.wantUpgraded, "solana.program.authority_changed": tt.wantAuthority,
			} {
				if want == nil {
					continue
				}
				_, sigs := second.pub.ofType(typ)
				for k, v := range want {
					if sigs[0].Fields[k] != v {
						t.Errorf("%s field %s = %v, want %v", typ, k, sigs[0].Fields[k], v)
					}
				}
			}
			second.stop()

			third := startWithState(t, cfg, nil, state)
			eventually(t, "the third start read the program", func() bool {
				return testutil.ToFloat64(third.w.m.deploySlot.WithLabelValues("payments")) == float64(tt.wantSlot) && third.w.drained()
			})
			third.pub.mu.Lock()
			defer third.pub.mu.Unlock()
			if third.pub.attempts != 0 {
				t.Errorf("second restart published %d events, want none", third.pub.attempts)
			}
		})
	}
}

// TestProgramBaselineStoredOnlyOncePublished: while the bus refuses the
// event, the old baseline stays stored, so a crash then reports the
// change again at start.
func TestProgramBaselineStoredOnlyOncePublished(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(multisig))})
	cfg := txConfig(srv)
	cfg.PublishRetry = BackoffConfig{Min: 200 * time.Millisecond, Max: 200 * time.Millisecond}
	state := bus.NewMemKV()
	h := startWithState(t, cfg, nil, state)
	eventually(t, "baseline stored", func() bool { _, ok := storedProgram(t, state, programID); return ok })
	eventually(t, "account subscription", func() bool { return srv.Subscriptions("accountSubscribe") == 1 })

	h.pub.mu.Lock()
	h.pub.failNext = 1 << 30 // the bus is down from now on
	h.pub.mu.Unlock()
	srv.SetAccount(programData, solanatest.Account{Data: programDataBytes(200, key(multisig))})
	eventually(t, "the upgrade seen", func() bool {
		return testutil.ToFloat64(h.w.m.deploySlot.WithLabelValues("payments")) == 200
	})
	eventually(t, "a publish attempted and refused", func() bool {
		h.pub.mu.Lock()
		defer h.pub.mu.Unlock()
		return h.pub.attempts > 0
	})
	h.stop() // the crash
	if st, _ := storedProgram(t, state, programID); st.Slot != 100 {
		t.Fatalf("stored slot %d before the event was published, want 100", st.Slot)
	}

	again := startWithState(t, cfg, nil, state)
	eventually(t, "upgrade reported after the restart", func() bool { return again.pub.count("solana.program.upgraded") == 1 })
	evs, _ := again.pub.ofType("solana.program.upgraded")
	if want := stableID("solana.program.upgraded", programID, "200"); evs[0].ID != want {
		t.Errorf("id %s, want %s (derived from program id and slot)", evs[0].ID, want)
	}
}

// TestBalanceStateSurvivesRestart: a wallet low before a restart and
// recovered while the bot was down is resolved at start, with the
// episode's id and start; a wallet that went low while the bot was down
// is reported once.
func TestBalanceStateSurvivesRestart(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	cfg := testConfig()
	cfg.Endpoints = []EndpointConfig{{Name: "primary", URL: srv.URL(), Role: "primary"}}
	cfg.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1000}}
	state := bus.NewMemKV()
	read := func(h *harness, bal uint64) {
		t.Helper()
		eventually(t, "balance read", func() bool {
			return testutil.ToFloat64(h.w.m.balance.WithLabelValues("hot")) == float64(bal) && h.w.drained()
		})
	}

	srv.SetBalance(hotWallet, 900)
	first := startWithState(t, cfg, nil, state)
	eventually(t, "low reported", func() bool { return first.pub.count("solana.balance.low") == 1 })
	read(first, 900)
	first.stop()
	lows, lowSigs := first.pub.ofType("solana.balance.low")

	srv.SetBalance(hotWallet, 5000) // topped up while the bot was down
	second := startWithState(t, cfg, nil, state)
	eventually(t, "recovered reported", func() bool { return second.pub.count("solana.balance.recovered") == 1 })
	read(second, 5000)
	recs, recSigs := second.pub.ofType("solana.balance.recovered")
	if second.pub.count("solana.balance.low") != 0 {
		t.Errorf("low reported again after the restart")
	}
	if recSigs[0].Status != "resolved" || !recSigs[0].StartsAt.Equal(lowSigs[0].StartsAt) || recSigs[0].Fingerprint != lowSigs[0].Fingerprint {
		t.Errorf("recovered %+v does not resolve the low episode %+v", recSigs[0], lowSigs[0])
	}
	if lows[0].ID != stableID("solana.balance.low", hotWallet, "1") || recs[0].ID != stableID("solana.balance.recovered", hotWallet, "1") {
		t.Errorf("ids %s, %s: want episode 1's", lows[0].ID, recs[0].ID)
	}
	second.stop()

	srv.SetBalance(hotWallet, 10) // drained while the bot was down
	third := startWithState(t, cfg, nil, state)
	eventually(t, "second episode reported", func() bool { return third.pub.count("solana.balance.low") == 1 })
	read(third, 10)
	lows, _ = third.pub.ofType("solana.balance.low")
	if lows[0].ID != stableID("solana.balance.low", hotWallet, "2") {
		t.Errorf("id %s, want episode 2's", lows[0].ID)
	}
	third.stop()

	fourth := startWithState(t, cfg, nil, state)
	calls := srv.Calls("getBalance")
	eventually(t, "a whole balance check", func() bool {
		// The second read starts only once the first check has decided.
		return srv.Calls("getBalance") >= calls+2 && fourth.w.drained()
	})
	fourth.pub.mu.Lock()
	defer fourth.pub.mu.Unlock()
	if fourth.pub.attempts != 0 {
		t.Errorf("a restart with the wallet still low published %d events, want none", fourth.pub.attempts)
	}
}

// TestBalanceReplicas: two replicas on one watch state and one bus, each
// reading its own RPC node, store one event per crossing. The second
// replica's node misses the first episode; the next crossing both see is
// still numbered alike (from the watch state), so the second replica does
// not republish the first episode's id.
func TestBalanceReplicas(t *testing.T) {
	nodeA, nodeB := solanatest.NewServer(), solanatest.NewServer()
	defer nodeA.Close()
	defer nodeB.Close()
	config := func(node *solanatest.Server) Config {
		cfg := testConfig()
		cfg.Endpoints = []EndpointConfig{{Name: "primary", URL: node.URL(), Role: "primary"}}
		cfg.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1000}}
		return cfg
	}
	nodeA.SetBalance(hotWallet, 2000)
	nodeB.SetBalance(hotWallet, 2000)
	pub, state := newRecorder(), bus.NewMemKV()
	a := startWithState(t, config(nodeA), pub, state)
	b := startWithState(t, config(nodeB), pub, state)
	steps := []struct {
		balA, balB   uint64
		low, recover int
	}{
		{2000, 2000, 0, 0},
		{900, 2000, 1, 0},  // only A's node shows the drop
		{1500, 2000, 1, 1}, // and the top-up
		{800, 800, 2, 1},   // both see the second episode
		{1200, 1200, 2, 2},
		{2000, 900, 3, 2}, // B's node alone shows a third
		{2000, 2000, 3, 3},
	}
	for i, st := range steps {
		pub.mu.Lock()
		stored, dups := len(pub.events), len(pub.dupIDs)
		pub.mu.Unlock()
		nodeA.SetBalance(hotWallet, st.balA)
		nodeB.SetBalance(hotWallet, st.balB)
		for _, h := range []*harness{a, b} {
			eventually(t, "balance read", func() bool {
				want := st.balA
				if h == b {
					want = st.balB
				}
				return testutil.ToFloat64(h.w.m.balance.WithLabelValues("hot")) == float64(want)
			})
		}
		eventually(t, fmt.Sprintf("step %d events", i), func() bool {
			return pub.count("solana.balance.low") == st.low && pub.count("solana.balance.recovered") == st.recover &&
				a.w.drained() && b.w.drained()
		})
		// A duplicate is the other replica publishing this step's
		// crossing, never an earlier episode's id.
		pub.mu.Lock()
		fresh := map[string]bool{}
		for _, ev := range pub.events[stored:] {
			fresh[ev.ID] = true
		}
		for _, id := range pub.dupIDs[dups:] {
			if !fresh[id] {
				t.Errorf("step %d: an earlier event's id %s published again", i, id)
			}
		}
		pub.mu.Unlock()
	}
	want := []string{
		stableID("solana.balance.low", hotWallet, "1"), stableID("solana.balance.recovered", hotWallet, "1"),
		stableID("solana.balance.low", hotWallet, "2"), stableID("solana.balance.recovered", hotWallet, "2"),
		stableID("solana.balance.low", hotWallet, "3"), stableID("solana.balance.recovered", hotWallet, "3"),
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for i, ev := range pub.events {
		if i >= len(want) || ev.ID != want[i] {
			t.Errorf("event %d %s %s, want id %v", i, ev.Type, ev.ID, want[min(i, len(want)-1)])
		}
	}
}

// busPublisher publishes to a real bus and records what JetStream
// answered.
type busPublisher struct {
	b *bus.Bus

	mu      sync.Mutex
	results map[string][]bus.PublishResult // by event type
}

func (p *busPublisher) Publish(ctx context.Context, ev bus.Event) (bus.PublishResult, error) {
	res, err := p.b.Publish(ctx, ev)
	if err == nil {
		p.mu.Lock()
		p.results[ev.Type] = append(p.results[ev.Type], res)
		p.mu.Unlock()
	}
	return res, err
}

// stored and duplicates count the publishes of typ JetStream stored and
// the ones it refused as duplicates.
func (p *busPublisher) counts(typ string) (stored, duplicates int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.results[typ] {
		if r.Duplicate {
			duplicates++
		} else {
			stored++
		}
	}
	return stored, duplicates
}

// TestReplicasOnOneBus runs two watcher instances against one fake node
// and one embedded NATS: each on-chain change is stored once and the
// second instance's publish is a duplicate. Then the bot restarts around
// an upgrade made while it was down: one event, and none on the next start.
func TestReplicasOnOneBus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	ctx := context.Background()
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = t.TempDir()
	b, err := bus.Open(ctx, bcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	defer b.Close()
	state, err := b.EnsureBucket(ctx, StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	views, err := b.EnsureBucket(ctx, rpcview.Bucket)
	if err != nil {
		t.Fatal(err)
	}

	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(multisig))})
	cfg := txConfig(srv)
	cfg.ProgramPollInterval = 50 * time.Millisecond // a start whose first read fails reads again soon
	pub := &busPublisher{b: b, results: map[string][]bus.PublishResult{}}
	w1, _, stop1 := run(t, cfg, pub, rpcview.Store{KV: views}, state)
	w2, _, stop2 := run(t, cfg, pub, rpcview.Store{KV: views}, state)
	eventually(t, "both account subscriptions", func() bool { return srv.Subscriptions("accountSubscribe") == 2 })
	// And both have read the program: one that first read it after the
	// change below would take it as its baseline and report nothing.
	eventually(t, "both instances read the program", func() bool {
		return testutil.ToFloat64(w1.m.deploySlot.WithLabelValues("payments")) == 100 &&
			testutil.ToFloat64(w2.m.deploySlot.WithLabelValues("payments")) == 100
	})

	srv.SetAccount(programData, solanatest.Account{Data: programDataBytes(200, key(rogue))})
	for _, typ := range []string{"solana.program.upgraded", "solana.program.authority_changed"} {
		eventually(t, typ+" stored once, duplicated once", func() bool {
			stored, dup := pub.counts(typ)
			return stored == 1 && dup == 1
		})
	}
	eventually(t, "baseline stored", func() bool {
		st, err := loadProgram(ctx, state)
		return err == nil && st.Slot == 200 && st.Authority == rogue && st.AlertedFor == rogue && w1.drained() && w2.drained()
	})
	stop1()
	stop2()

	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(300, key(rogue))})
	w3, _, stop3 := run(t, cfg, pub, rpcview.Store{KV: views}, state)
	eventually(t, "the upgrade made while down stored once", func() bool {
		stored, dup := pub.counts("solana.program.upgraded")
		st, err := loadProgram(ctx, state)
		return stored == 2 && dup == 1 && err == nil && st.Slot == 300 && w3.drained()
	})
	stop3()

	w4, _, _ := run(t, cfg, pub, rpcview.Store{KV: views}, state)
	eventually(t, "the next start read the program", func() bool {
		return testutil.ToFloat64(w4.m.deploySlot.WithLabelValues("payments")) == 300 && w4.drained()
	})
	for _, typ := range []string{"solana.program.upgraded", "solana.program.authority_changed"} {
		stored, dup := pub.counts(typ)
		want := map[string][2]int{"solana.program.upgraded": {2, 1}, "solana.program.authority_changed": {1, 1}}[typ]
		if stored != want[0] || dup != want[1] {
			t.Errorf("%s: %d stored, %d duplicates; want %d, %d", typ, stored, dup, want[0], want[1])
		}
	}
}

func loadProgram(ctx context.Context, state bus.KV) (programState, error) {
	e, err := state.Get(ctx, programKey(programID))
	if err != nil {
		return programState{}, err
	}
	var st programState
	return st, json.Unmarshal(e.Value, &st)
}

// TestStoreStateKeepsLaterBaseline: a replica with an older view does not
// overwrite a later one; concurrent writers both land through
// compare-and-set.
func TestStoreStateKeepsLaterBaseline(t *testing.T) {
	ctx := context.Background()
	kv := bus.NewMemKV()
	older := func(st programState) func(programState) bool {
		return func(stored programState) bool { return stored.ContextSlot > st.ContextSlot }
	}
	later := programState{Slot: 200, Authority: multisig, ContextSlot: 900}
	if err := storeState(ctx, kv, "k", later, older(later)); err != nil {
		t.Fatal(err)
	}
	stale := programState{Slot: 100, Authority: multisig, ContextSlot: 800}
	if err := storeState(ctx, kv, "k", stale, older(stale)); err != nil {
		t.Fatal(err)
	}
	e, _ := kv.Get(ctx, "k")
	var got programState
	if err := json.Unmarshal(e.Value, &got); err != nil || got != later {
		t.Fatalf("stored %+v (%v), want the later %+v", got, err, later)
	}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			st := programState{Slot: 300, Authority: multisig, ContextSlot: 1000 + uint64(i)}
			if err := storeState(ctx, kv, "k", st, older(st)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e, _ = kv.Get(ctx, "k")
	if err := json.Unmarshal(e.Value, &got); err != nil || got.ContextSlot != 1007 {
		t.Errorf("after concurrent writes stored %+v, want context slot 1007", got)
	}

	var missing programState
	if ok, err := (&Watchers{state: kv}).loadState(ctx, "absent", &missing); ok || err != nil {
		t.Errorf("absent key: ok %v err %v, want a fresh baseline", ok, err)
	}
}
