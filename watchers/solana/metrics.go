package solana

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the series the course's PrometheusRule queries. The names
// carry no incidentbot_ prefix on purpose: they are the course's names.
type metrics struct {
	rpcUp       *prometheus.GaugeVec
	slotLag     *prometheus.GaugeVec
	reqDuration *prometheus.HistogramVec
	txTotal     *prometheus.CounterVec
	txFailed    *prometheus.CounterVec
	txRecovered *prometheus.CounterVec
	deploySlot  *prometheus.GaugeVec
	balance     *prometheus.GaugeVec
	leader      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rpcUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "solana_rpc_up",
			Help: "1 if the endpoint's last probe (getHealth ok, getSlot answered, slot lag within bounds) succeeded, else 0.",
		}, []string{"endpoint"}),
		slotLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "solana_rpc_slot_lag",
			Help: "Slots the endpoint is behind the best slot seen across endpoints in the last probe round.",
		}, []string{"endpoint"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "solana_rpc_request_duration_seconds",
			Help:    "Duration of JSON-RPC requests made by the watchers.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint", "method"}),
		txTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "solana_tx_total",
			Help: "Transactions mentioning the program, seen by logsSubscribe or backfilled.",
		}, []string{"program"}),
		txFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "solana_tx_failed_total",
			Help: "Failed transactions mentioning the program.",
		}, []string{"program"}),
		txRecovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "incidentbot_solana_tx_recovered_total",
			Help: "Transactions counted from getSignaturesForAddress because the logs subscription did not deliver them: via=\"reconnect\" fills a reconnect gap, via=\"poll\" is the periodic safety net (a steady rate means the subscription is rejected or stalled).",
		}, []string{"program", "via"}),
		deploySlot: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "solana_program_deploy_slot",
			Help: "Slot the program was last deployed or upgraded at (ProgramData).",
		}, []string{"program"}),
		balance: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "solana_wallet_balance_lamports",
			Help: "Wallet balance in lamports.",
		}, []string{"wallet"}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "incidentbot_watcher_leader",
			Help: "1 while this replica holds the watcher's lease and runs it, else 0 (replicas sharing a bus run each watcher on one of them).",
		}, []string{"watcher"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.rpcUp, m.slotLag, m.reqDuration, m.txTotal, m.txFailed, m.txRecovered, m.deploySlot, m.balance, m.leader} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}
