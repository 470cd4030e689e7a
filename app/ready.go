package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// readiness answers /readyz: the connection at once (bus.Ready), then the
// latest real write through the store (bus.Probe). The periodic probe
// (bus.Watch) records its results here, so /readyz probes by itself only
// when the latest result is older than fresh (the probe interval): every
// write loads a store block into memory, and /readyz may be asked often.
type readiness struct {
	ready    func(context.Context) error
	probe    func(context.Context) error
	writable prometheus.Gauge
	fresh    time.Duration

	mu  sync.Mutex
	at  time.Time
	err error
}

func newReadiness(ready, probe func(context.Context) error, fresh time.Duration, reg prometheus.Registerer) *readiness {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "incidentbot_store_writable",
		Help: "1 when the latest probe wrote to the events stream and the incident records, 0 when it could not (a full disk, a wedged store, NATS away)."})
	reg.MustRegister(g)
	return &readiness{ready: ready, probe: probe, fresh: max(fresh, time.Second), writable: g}
}

// check says whether the bus is connected, then returns the latest
// probe's result, probing again when it is older than fresh.
func (r *readiness) check(ctx context.Context) error {
	if err := r.ready(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < r.fresh {
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
