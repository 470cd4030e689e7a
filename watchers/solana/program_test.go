package solana

import (
	"context"
	"testing"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/internal/loaderv3"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

func key(s string) []byte { return solanago.MustPublicKeyFromBase58(s).Bytes() }

func TestProgramUpgradeAndAuthority(t *testing.T) {
	tests := []struct {
		name          string
		expected      string
		initial, next []byte
		viaPoll       bool // the notification is lost; the poll must catch it
		wantUpgraded  map[string]any
		wantAuthority map[string]any
	}{
		{
			name: "upgrade with authority change", expected: multisig,
			initial:       programDataBytes(100, key(multisig)),
			next:          programDataBytes(200, key(rogue)),
			wantUpgraded:  map[string]any{"slot": float64(200), "previous_slot": float64(100), "authority": rogue},
			wantAuthority: map[string]any{"authority": rogue, "expected_authority": multisig, "previous_authority": multisig},
		},
		{
			name: "authority revoked (stale key bytes left)", expected: multisig,
			initial:       programDataBytes(100, key(multisig)),
			next:          programDataBytes(100, nil),
			wantAuthority: map[string]any{"authority": "none", "expected_authority": multisig, "previous_authority": multisig},
		},
		{
			name: "immutable program stays immutable across an upgrade", expected: Immutable,
			initial:      programDataBytes(100, nil),
			next:         programDataBytes(300, nil),
			wantUpgraded: map[string]any{"slot": float64(300), "previous_slot": float64(100), "authority": "none"},
		},
		{
			name: "upgrade seen by the poll only", expected: multisig, viaPoll: true,
			initial:      programDataBytes(100, key(multisig)),
			next:         programDataBytes(150, key(multisig)),
			wantUpgraded: map[string]any{"slot": float64(150), "previous_slot": float64(100), "authority": multisig},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := solanatest.NewServer()
			defer srv.Close()
			srv.StoreAccount(programData, solanatest.Account{Data: tt.initial, Lamports: 2871118320})
			cfg := txConfig(srv)
			cfg.Programs[0].ExpectedAuthority = tt.expected
			if tt.viaPoll {
				cfg.ProgramPollInterval = 30 * time.Millisecond
			}
			// Two replicas watching the same program (sharing the watch
			// state, as on one NATS) publish the same ids: the bus
			// stores each event once.
			pub := newRecorder()
			h1 := start(t, cfg, pub)
			h2 := startWithState(t, cfg, pub, h1.state)
			for _, h := range []*harness{h1, h2} {
				eventually(t, "baseline read", func() bool {
					return testutil.ToFloat64(h.w.m.deploySlot.WithLabelValues("payments")) == 100
				})
			}
			eventually(t, "both account subscriptions", func() bool { return srv.Subscriptions("accountSubscribe") == 2 })
			pub.mu.Lock()
			n := len(pub.events)
			pub.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d events for the expected baseline", n)
			}

			if tt.viaPoll {
				srv.StoreAccount(programData, solanatest.Account{Data: tt.next})
			} else {
				srv.SetAccount(programData, solanatest.Account{Data: tt.next})
			}
			check := func(typ string, want map[string]any, alertname string) {
				t.Helper()
				if want == nil {
					return
				}
				evs, sigs := pub.ofType(typ)
				if len(evs) != 1 {
					t.Fatalf("%d %s events stored, want 1", len(evs), typ)
				}
				s := sigs[0]
				if evs[0].Subject != programID || s.Labels["alertname"] != alertname || s.Labels["program"] != "payments" || s.Labels["program_id"] != programID || s.Status != "firing" {
					t.Errorf("%s: subject %q signal %+v", typ, evs[0].Subject, s)
				}
				for k, v := range want {
					if s.Fields[k] != v {
						t.Errorf("%s field %s = %v, want %v", typ, k, s.Fields[k], v)
					}
				}
			}
			eventually(t, "events", func() bool {
				return (tt.wantUpgraded == nil || pub.count("solana.program.upgraded") == 1) &&
					(tt.wantAuthority == nil || pub.count("solana.program.authority_changed") == 1)
			})
			wantDupes := 0
			for _, m := range []map[string]any{tt.wantUpgraded, tt.wantAuthority} {
				if m != nil {
					wantDupes++
				}
			}
			eventually(t, "the second replica's publishes deduplicated", func() bool {
				pub.mu.Lock()
				defer pub.mu.Unlock()
				return pub.dupes == wantDupes
			})
			check("solana.program.upgraded", tt.wantUpgraded, "SolanaProgramUpgraded")
			check("solana.program.authority_changed", tt.wantAuthority, "SolanaProgramAuthorityChanged")
			if tt.wantUpgraded == nil && pub.count("solana.program.upgraded") != 0 {
				t.Errorf("unexpected upgrade event")
			}
			if tt.wantAuthority == nil && pub.count("solana.program.authority_changed") != 0 {
				t.Errorf("unexpected authority event")
			}
		})
	}
}

// TestProgramEventsCarryRollbackBuffer: a configured rollback buffer is
// on every event about the program, for the runbooks' rollback step.
func TestProgramEventsCarryRollbackBuffer(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(rogue))})
	cfg := txConfig(srv)
	cfg.Programs[0].RollbackBuffer = hotWallet // any other key
	cfg.Tx.MinSamples = 1
	h := start(t, cfg, nil)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	srv.AddTx(programID, tx(1, true), true)
	eventually(t, "events", func() bool {
		return h.pub.count("solana.program.authority_changed") == 1 && h.pub.count("solana.tx.failure_rate") == 1
	})
	for _, typ := range []string{"solana.program.authority_changed", "solana.tx.failure_rate"} {
		_, sigs := h.pub.ofType(typ)
		if sigs[0].Annotations["rollback_buffer"] != hotWallet || sigs[0].Annotations["summary"] == "" {
			t.Errorf("%s annotations %v, want rollback_buffer %s and a summary", typ, sigs[0].Annotations, hotWallet)
		}
	}
}

func TestProgramUnexpectedAuthorityAtStart(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(rogue))})
	h := start(t, txConfig(srv), nil)
	eventually(t, "authority event", func() bool { return h.pub.count("solana.program.authority_changed") == 1 })
	_, s := h.pub.ofType("solana.program.authority_changed")
	if s[0].Fields["authority"] != rogue || s[0].Fields["previous_authority"] != "unknown" {
		t.Errorf("fields = %v", s[0].Fields)
	}
	// Seeing the same state again (poll + notification) does not re-alert.
	srv.SetAccount(programData, solanatest.Account{Data: programDataBytes(100, key(rogue))})
	eventually(t, "notification handled", func() bool { return srv.Subscriptions("accountSubscribe") == 1 })
	if n := h.pub.count("solana.program.authority_changed"); n != 1 {
		t.Errorf("%d authority events, want 1", n)
	}
}

// TestUpgradeTransactionSeenByTheWatcher: an Upgrade transaction sent to
// the fake node (as solana.program_rollback or its signers send it)
// reaches the ProgramData watcher as solana.program.upgraded.
func TestUpgradeTransactionSeenByTheWatcher(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	auth := solanago.NewWallet().PrivateKey
	authKey := auth.PublicKey()
	program := solanago.MustPublicKeyFromBase58(programID)
	buffer := solanago.NewWallet().PublicKey()
	srv.SetProgram(program, 100, &authKey, []byte("\x7fELF bad release, padded"))
	srv.SetBuffer(buffer, &authKey, []byte("\x7fELF previous"))
	cfg := txConfig(srv)
	cfg.Programs[0].ExpectedAuthority = authKey.String()
	h := start(t, cfg, nil)
	eventually(t, "baseline read", func() bool {
		return testutil.ToFloat64(h.w.m.deploySlot.WithLabelValues("payments")) == 100
	})
	eventually(t, "account subscription", func() bool { return srv.Subscriptions("accountSubscribe") == 1 })

	c := rpc.New(srv.URL())
	ctx := context.Background()
	bh, err := c.GetLatestBlockhash(ctx, rpc.CommitmentFinalized)
	if err != nil {
		t.Fatal(err)
	}
	u, err := loaderv3.NewUpgrade(program, buffer, authKey, authKey)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := u.Transaction(bh.Value.Blockhash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Sign(func(k solanago.PublicKey) *solanago.PrivateKey { return &auth }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendTransaction(ctx, tx); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, "upgraded event", func() bool { return h.pub.count("solana.program.upgraded") == 1 })
	_, sigs := h.pub.ofType("solana.program.upgraded")
	if sigs[0].Fields["previous_slot"] != float64(100) || sigs[0].Fields["authority"] != authKey.String() {
		t.Errorf("upgraded fields %v", sigs[0].Fields)
	}
	if n := h.pub.count("solana.program.authority_changed"); n != 0 {
		t.Errorf("%d authority_changed events for an upgrade by the expected authority", n)
	}
}
