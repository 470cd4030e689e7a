package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// readiness answers /readyz: the connection at once (bus.Ready), then a
// real write through the store (see bus.Probe), at most once a second
// however often it is asked; it keeps the latest result of the periodic
// probe (bus.Watch) too.
type readiness struct {
	ready    func(context.Context) error
	probe    func(context.Context) error
	writable prometheus.Gauge

	mu  sync.Mutex
	at  time.Time
	err error
}

func newReadiness(ready, probe func(context.Context) error, reg prometheus.Registerer) *readiness {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "incidentbot_store_writable",
		Help: "1 when the latest probe wrote to the events stream and the incident records, 0 when it could not (a full disk, a wedged store, NATS away)."})
	reg.MustRegister(g)
	return &readiness{ready: ready, probe: probe, writable: g}
}

// check says whether the bus is connected, then returns the latest
// probe's result, probing again when it is older than a second.
func (r *readiness) check(ctx context.Context) error {
	if err := r.ready(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < time.Second {
		return r.err
	}
	r.setLocked(r.probe(ctx))
	return r.err
}

// record keeps the result of a probe made elsewhere.
func (r *readiness) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLocked(err)
}

func (r *readiness) setLocked(err error) {
	r.at, r.err = time.Now(), err
	if err == nil {
		r.writable.Set(1)
	} else {
		r.writable.Set(0)
	}
}
