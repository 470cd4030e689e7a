package solana

import (
	"sort"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// TestMetricNames checks the series the course's PrometheusRule queries.
func TestMetricNames(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(multisig))})
	srv.SetBalance(hotWallet, 5000)
	cfg := txConfig(srv)
	cfg.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1}}
	h := start(t, cfg, nil)
	eventually(t, "logs subscription", func() bool { return srv.Subscriptions("logsSubscribe") == 1 })
	srv.AddTx(programID, tx(1, true), true)

	want := map[string]string{
		"solana_rpc_up":                       "endpoint",
		"solana_rpc_slot_lag":                 "endpoint",
		"solana_rpc_request_duration_seconds": "endpoint,method",
		"solana_tx_total":                     "program",
		"solana_tx_failed_total":              "program",
		"solana_program_deploy_slot":          "program",
		"solana_wallet_balance_lamports":      "wallet",
	}
	got := map[string]string{}
	eventually(t, "every metric family", func() bool {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			var names []string
			for _, lp := range mf.GetMetric()[0].GetLabel() {
				names = append(names, lp.GetName())
			}
			sort.Strings(names)
			got[mf.GetName()] = strings.Join(names, ",")
		}
		return len(got) == len(want)
	})
	for name, labels := range want {
		if got[name] != labels {
			t.Errorf("%s labels = %q, want %q", name, got[name], labels)
		}
	}
}
