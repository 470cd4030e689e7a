package solana

import (
	"crypto/sha256"
	"fmt"
	"testing"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	_, fs := h.pub.ofType("solana.tx.failure_rate")
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
	srv.DropConnections()
	eventually(t, "resubscribed", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	eventually(t, "gap backfilled", func() bool { total, failed := counts(h); return total == 8 && failed == 3 })
	if srv.Calls("getSignaturesForAddress") < 1 {
		t.Errorf("no getSignaturesForAddress backfill")
	}
	srv.AddTx(programID, tx(8, true), true)
	eventually(t, "stream resumed", func() bool { total, failed := counts(h); return total == 9 && failed == 4 })
	// A second drop with no gap must not count anything twice.
	srv.DropConnections()
	eventually(t, "resubscribed again", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	eventually(t, "second backfill ran", func() bool { return srv.Calls("getSignaturesForAddress") >= 2 })
	if total, failed := counts(h); total != 9 || failed != 4 {
		t.Errorf("after a gap-free reconnect: total %v failed %v, want 9 and 4", total, failed)
	}
}
