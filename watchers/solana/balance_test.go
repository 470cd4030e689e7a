package solana

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

func TestBalanceLowWithHysteresis(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	cfg := testConfig()
	cfg.Endpoints = []EndpointConfig{{Name: "primary", URL: srv.URL(), Role: "primary"}}
	cfg.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1000}}
	cfg.BalanceHysteresis = 0.1
	pub := newRecorder()
	pub.failNext = 3 // the bus is down for the first publishes
	// The first read must see the first step's balance, not an unset (0,
	// hence low) one.
	srv.SetBalance(hotWallet, 2000)
	h := start(t, cfg, pub)

	steps := []struct {
		balance      uint64
		low, recover int
	}{
		{2000, 0, 0},
		{900, 1, 0},
		{1050, 1, 0}, // above min, below min × 1.1: still low
		{999, 1, 0},  // same episode, no second page
		{1100, 1, 1},
		{1050, 1, 1},
	}
	for _, st := range steps {
		srv.SetBalance(hotWallet, st.balance)
		eventually(t, "balance read", func() bool {
			return testutil.ToFloat64(h.w.m.balance.WithLabelValues("hot")) == float64(st.balance)
		})
		eventually(t, "events", func() bool {
			return pub.count("solana.balance.low") == st.low && pub.count("solana.balance.recovered") == st.recover
		})
	}
	if pub.attempts < 5 {
		t.Errorf("publish attempts = %d, want the failed ones retried", pub.attempts)
	}
	_, lows := pub.ofType("solana.balance.low")
	_, recs := pub.ofType("solana.balance.recovered")
	l, r := lows[0], recs[0]
	if l.Labels["alertname"] != "SolanaBalanceLow" || l.Labels["severity"] != "warning" || l.Labels["wallet"] != "hot" {
		t.Errorf("labels = %v", l.Labels)
	}
	if l.Fields["balance_lamports"] != float64(900) || l.Fields["min_lamports"] != float64(1000) || l.Fields["address"] != hotWallet {
		t.Errorf("fields = %v", l.Fields)
	}
	if r.Status != "resolved" || r.Fingerprint != l.Fingerprint || !r.StartsAt.Equal(l.StartsAt) {
		t.Errorf("recovered %+v does not resolve %+v", r, l)
	}
}
