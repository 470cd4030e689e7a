package solana

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

var customErr = map[string]any{"InstructionError": []any{1, map[string]any{"Custom": 6001}}}

// sig makes a valid, distinct base58 signature.
func sig(n int) string {
	a := sha256.Sum256(fmt.Appendf(nil, "a%d", n))
	b := sha256.Sum256(fmt.Appendf(nil, "b%d", n))
	var s solanago.Signature
	copy(s[:32], a[:])
	copy(s[32:], b[:])
	return s.String()
}

func tx(n int, failed bool) solanatest.Tx {
	t := solanatest.Tx{Signature: sig(n), Logs: []string{"Program " + programID + " invoke [1]", "Program " + programID + " success"}}
	if failed {
		t.Err = customErr
		t.Logs = []string{"Program " + programID + " invoke [1]", "Program " + programID + " failed: custom program error: 0x1771"}
	}
	return t
}

func txConfig(srv *solanatest.Server) Config {
	cfg := testConfig()
	cfg.Endpoints = []EndpointConfig{{Name: "primary", URL: srv.URL(), WSURL: srv.WSURL(), Role: "primary"}}
	cfg.Programs = []ProgramConfig{{Name: "payments", ID: programID, ExpectedAuthority: multisig}}
	return cfg
}

func counts(h *harness) (total, failed float64) {
	return testutil.ToFloat64(h.w.m.txTotal.WithLabelValues("payments")), testutil.ToFloat64(h.w.m.txFailed.WithLabelValues("payments"))
}

func TestTxFailureRate(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	h := start(t, txConfig(srv), nil)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })

	// threshold 0.5, min_samples 4: 4 ok then failures; the 5th failure
	// makes 5/9 > 0.5.
	steps := []struct {
		failed     bool
		wantFiring int
		wantRecov  int
	}{
		{false, 0, 0}, {false, 0, 0}, {false, 0, 0}, {false, 0, 0},
		{true, 0, 0}, {true, 0, 0}, {true, 0, 0}, {true, 0, 0},
		{true, 1, 0},  // 5/9
		{true, 1, 0},  // 6/10
		{false, 1, 0}, // 6/11
		{false, 1, 1}, // 6/12 = threshold: recovered
	}
	wantFailed := 0
	for i, st := range steps {
		srv.AddTx(programID, tx(i, st.failed), true)
		if st.failed {
			wantFailed++
		}
		eventually(t, fmt.Sprintf("tx %d counted", i), func() bool {
			total, failed := counts(h)
			return total == float64(i+1) && failed == float64(wantFailed)
		})
		eventually(t, fmt.Sprintf("events after tx %d", i), func() bool {
			return h.pub.count("solana.tx.failure_rate") == st.wantFiring && h.pub.count("solana.tx.failure_rate_recovered") == st.wantRecov
		})
	}
	// Named by the transaction that tipped the rate: the 9th.
	fevs, fs := h.pub.ofType("solana.tx.failure_rate")
	revs, _ := h.pub.ofType("solana.tx.failure_rate_recovered")
	if want := stableID("solana.tx.failure_rate", programID, sig(8)); fevs[0].ID != want {
		t.Errorf("firing id %s, want %s", fevs[0].ID, want)
	}
	if want := stableID("solana.tx.failure_rate_recovered", programID, sig(8)); revs[0].ID != want {
		t.Errorf("recovered id %s, want %s", revs[0].ID, want)
	}
	f := fs[0]
	if f.Labels["alertname"] != "SolanaTxFailureRate" || f.Labels["program"] != "payments" || f.Labels["program_id"] != programID || f.Labels["severity"] != "critical" {
		t.Errorf("labels = %v", f.Labels)
	}
	if f.Fields["failed"] != float64(5) || f.Fields["total"] != float64(9) || f.Fields["threshold"] != 0.5 || f.Fields["window"] != "1m0s" {
		t.Errorf("fields = %v", f.Fields)
	}
	_, rs := h.pub.ofType("solana.tx.failure_rate_recovered")
	if rs[0].Fingerprint != f.Fingerprint || rs[0].Status != "resolved" || !rs[0].StartsAt.Equal(f.StartsAt) {
		t.Errorf("recovered %+v does not resolve %+v", rs[0], f)
	}
}

// TestTxFailureRateReplicas: two replicas fed the same transactions name
// the episode by the same tipping transaction; the bus stores its firing
// and recovered events once each.
func TestTxFailureRateReplicas(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	pub := newRecorder()
	replicas := []*harness{start(t, txConfig(srv), pub), start(t, txConfig(srv), pub)}
	eventually(t, "logs subscriptions", func() bool { return srv.Subscriptions("logsSubscribe") == 2 })
	// threshold 0.5, min_samples 4: fires at 5 of 9, recovers at 6 of 12.
	failed := []bool{false, false, false, false, true, true, true, true, true, true, false, false}
	for i, f := range failed {
		srv.AddTx(programID, tx(i, f), true)
		for _, h := range replicas {
			eventually(t, fmt.Sprintf("tx %d counted", i), func() bool { total, _ := counts(h); return total == float64(i+1) })
		}
	}
	eventually(t, "one firing and one recovered event, each published twice", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.dupes == 2
	})
	if pub.count("solana.tx.failure_rate") != 1 || pub.count("solana.tx.failure_rate_recovered") != 1 {
		t.Errorf("%d firing, %d recovered events stored, want 1 each", pub.count("solana.tx.failure_rate"), pub.count("solana.tx.failure_rate_recovered"))
	}
}

func TestTxBackfillAfterDrop(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	cfg := txConfig(srv)
	cfg.Tx.MinSamples = 1000 // counts only
	h := start(t, cfg, nil)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })

	for i := range 3 {
		srv.AddTx(programID, tx(i, i == 1), true)
	}
	eventually(t, "streamed txs counted", func() bool { total, failed := counts(h); return total == 3 && failed == 1 })

	// Transactions the client never got a notification for, then the
	// connection drops mid-stream.
	for i := 3; i < 8; i++ {
		srv.AddTx(programID, tx(i, i%2 == 0), false)
	}
	listed := srv.Calls("getSignaturesForAddress") // the poll's baseline so far
	srv.DropConnections()
	eventually(t, "resubscribed", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	eventually(t, "gap backfilled", func() bool { total, failed := counts(h); return total == 8 && failed == 3 })
	if srv.Calls("getSignaturesForAddress") <= listed {
		t.Errorf("no getSignaturesForAddress backfill")
	}
	if n := recovered(h, "reconnect"); n != 5 {
		t.Errorf("recovered via reconnect = %v, want 5", n)
	}
	srv.AddTx(programID, tx(8, true), true)
	eventually(t, "stream resumed", func() bool { total, failed := counts(h); return total == 9 && failed == 4 })
	// A second drop with no gap must not count anything twice.
	listed = srv.Calls("getSignaturesForAddress")
	srv.DropConnections()
	eventually(t, "resubscribed again", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	eventually(t, "second backfill ran", func() bool { return srv.Calls("getSignaturesForAddress") > listed })
	if total, failed := counts(h); total != 9 || failed != 4 {
		t.Errorf("after a gap-free reconnect: total %v failed %v, want 9 and 4", total, failed)
	}
}

func recovered(h *harness, via string) float64 {
	return testutil.ToFloat64(h.w.m.txRecovered.WithLabelValues("payments", via))
}

// TestTxPollCountsWhatARejectedSubscriptionMisses: the provider rejects
// logsSubscribe (solana-go drops the error and the stream stays silent);
// the getSignaturesForAddress poll counts the transactions anyway, and not
// the history from before the watcher started.
func TestTxPollCountsWhatARejectedSubscriptionMisses(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.RejectSubscriptions("logsSubscribe")
	srv.AddTx(programID, tx(100, true), false) // history
	cfg := txConfig(srv)
	cfg.Tx.PollInterval = 20 * time.Millisecond
	h := start(t, cfg, nil)
	eventually(t, "baseline poll", func() bool { return srv.Calls("getSignaturesForAddress") >= 1 })
	eventually(t, "subscription attempted", func() bool { return srv.Calls("logsSubscribe") >= 1 })

	for i := range 5 {
		srv.AddTx(programID, tx(i, i < 3), true) // notify: nobody is subscribed
	}
	eventually(t, "polled txs counted", func() bool { total, failed := counts(h); return total == 5 && failed == 3 })
	if n := recovered(h, "poll"); n != 5 {
		t.Errorf("recovered via poll = %v, want 5", n)
	}
	// Later polls neither recount nor reach back into history.
	calls := srv.Calls("getSignaturesForAddress")
	eventually(t, "more polls", func() bool { return srv.Calls("getSignaturesForAddress") >= calls+3 })
	if total, failed := counts(h); total != 5 || failed != 3 {
		t.Errorf("after more polls: total %v failed %v, want 5 and 3", total, failed)
	}
	// The failure rate is judged on polled transactions too (3/5 > 0.5).
	eventually(t, "failure rate fired", func() bool { return h.pub.count("solana.tx.failure_rate") == 1 })
}

// TestTxPollLeavesFreshTransactionsToTheStream: a transaction younger than
// the settle time is not counted by the poll (the subscription is about to
// deliver it); the stream counts it, and the poll does not count it again
// once it has settled.
func TestTxPollLeavesFreshTransactionsToTheStream(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	cfg := txConfig(srv)
	cfg.Tx.PollInterval = 20 * time.Millisecond
	cfg.Tx.MinSamples = 1000 // counts only
	h := start(t, cfg, nil)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	eventually(t, "baseline poll", func() bool { return srv.Calls("getSignaturesForAddress") >= 1 })

	fresh := tx(1, false)
	fresh.BlockTime = time.Now().Unix()
	srv.AddTx(programID, fresh, false) // listed, notification still on its way
	calls := srv.Calls("getSignaturesForAddress")
	eventually(t, "polls", func() bool { return srv.Calls("getSignaturesForAddress") >= calls+3 })
	if total, _ := counts(h); total != 0 {
		t.Fatalf("the poll counted a transaction younger than %v; total %v, want 0", pollSettle, total)
	}
	srv.NotifyTx(programID, fresh)
	eventually(t, "streamed", func() bool { total, _ := counts(h); return total == 1 })

	// A later, settled transaction the stream never delivered is the
	// poll's; the listing now reaches back over the streamed one too.
	settled := tx(2, true)
	settled.BlockTime = time.Now().Unix() - 60
	srv.AddTx(programID, settled, false)
	eventually(t, "polled", func() bool { total, failed := counts(h); return total == 2 && failed == 1 })
	calls = srv.Calls("getSignaturesForAddress")
	eventually(t, "more polls", func() bool { return srv.Calls("getSignaturesForAddress") >= calls+3 })
	if total, failed := counts(h); total != 2 || failed != 1 {
		t.Errorf("total %v failed %v, want 2 and 1", total, failed)
	}
	if n := recovered(h, "poll"); n != 1 {
		t.Errorf("recovered via poll = %v, want 1", n)
	}
}

// TestTxEpisodeContinuesAfterTakeover: a watcher that starts on a stored
// open episode (its predecessor fired, then died) does not fire a second
// time, and resolves that episode under the predecessor's id once the rate
// is back under the threshold.
func TestTxEpisodeContinuesAfterTakeover(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	state := bus.NewMemKV()
	tip := sig(99)
	b, _ := json.Marshal(txState{Firing: true, EpisodeStart: time.Now().Add(-time.Minute).UTC(), Tip: tip})
	if _, err := state.Put(context.Background(), txKey(programID), b); err != nil {
		t.Fatal(err)
	}
	h := startWithState(t, txConfig(srv), nil, state)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	// The window is empty: no recovery before the rate is judged.
	time.Sleep(100 * time.Millisecond)
	if n := h.pub.count("solana.tx.failure_rate_recovered"); n != 0 {
		t.Fatalf("%d recoveries on an empty window right after the takeover", n)
	}
	for i := range 4 { // min_samples, all good
		srv.AddTx(programID, tx(i, false), true)
	}
	eventually(t, "the recovery", func() bool { return h.pub.count("solana.tx.failure_rate_recovered") == 1 })
	if n := h.pub.count("solana.tx.failure_rate"); n != 0 {
		t.Fatalf("%d new failure-rate events; the episode was already reported", n)
	}
	evs, _ := h.pub.ofType("solana.tx.failure_rate_recovered")
	if want := stableID("solana.tx.failure_rate_recovered", programID, tip); evs[0].ID != want {
		t.Fatalf("recovered id %s, want %s (the predecessor's episode)", evs[0].ID, want)
	}
	eventually(t, "the episode stored as closed", func() bool {
		var st txState
		ok, err := h.w.loadState(context.Background(), txKey(programID), &st)
		return err == nil && ok && !st.Firing
	})
}
