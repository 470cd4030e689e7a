package engine

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	events        *prometheus.CounterVec
	processing    *prometheus.HistogramVec
	deliveryLag   *prometheus.HistogramVec
	transitions   *prometheus.CounterVec
	notifications *prometheus.CounterVec
	notifyLatency *prometheus.HistogramVec
	open          *prometheus.GaugeVec
}

// NewMetrics creates the engine's metrics and registers them on reg (nil
// registers nothing).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "incidentbot", Name: "events_processed_total",
			Help: "Events the engine processed, by source and result (ok, retry, poison)."}, []string{"source", "result"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "incidentbot", Name: "event_processing_seconds",
			Help: "Time to process one event or command: decoding, the state change and queueing what follows.", Buckets: buckets}, []string{"source"}),
		deliveryLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "incidentbot", Name: "delivery_lag_seconds",
			Help: "Time from a change of an incident to the sink being in line with it, by sink.", Buckets: buckets}, []string{"sink"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "incidentbot", Name: "incident_transitions_total",
			Help: "Incident state changes (opened, updated, reopened, resolved, acknowledged, unacknowledged, noted, escalated)."}, []string{"change"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "incidentbot", Name: "notifications_total",
			Help: "Notifications sent, by sink, operation and result."}, []string{"sink", "op", "result"}),
		notifyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "incidentbot", Name: "notification_duration_seconds",
			Help: "Time for one notification call including retries.", Buckets: buckets}, []string{"sink", "op"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "incidentbot", Name: "open_incidents",
			Help: "Incidents not resolved, by severity."}, []string{"severity"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.processing, m.deliveryLag, m.transitions, m.notifications, m.notifyLatency, m.open)
	}
	return m
}
