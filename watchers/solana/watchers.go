package solana

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/lease"
	"github.com/incidentbot/incidentbot/internal/sleep"
	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/rpcview"
)

// ViewWriter stores the ranked RPC view; rpcview.Store is one.
type ViewWriter interface {
	Put(ctx context.Context, v rpcview.View) error
}

// Watchers runs every configured Solana watcher.
type Watchers struct {
	cfg Config
	log *slog.Logger
	// scrub redacts error texts, which may quote endpoint URLs.
	scrub *redact.Scrubber
	out   *outbox
	view  ViewWriter
	state bus.KV
	m     *metrics
	// leases and holder, when set (Share), run each watcher on one
	// replica at a time.
	leases bus.KV
	holder string
	// healthLead is true while this replica runs the health watcher;
	// otherwise, when sharing, ranked follows the view its leader stores.
	healthLead atomic.Bool
	now        func() time.Time

	endpoints []*endpoint
	programs  []*programWatch
	txs       []*txWatch
	wallets   []*walletWatch

	mu     sync.Mutex
	ranked []rpcview.Endpoint // last ranked view, best first
}

// endpoint is one RPC endpoint and its debounced health state, which only
// the health loop touches.
type endpoint struct {
	cfg      EndpointConfig
	client   *rpc.Client
	redacted string

	healthy      bool
	fails, oks   int
	firstFailAt  time.Time
	episodeStart time.Time
	severity     string // of the current or last unhealthy episode
}

// New checks cfg and builds the watchers; Run starts them. pub receives
// the events, view the ranked RPC view, state the on-chain baselines
// (StateBucket, shared by replicas), reg the metrics.
func New(cfg Config, pub bus.Publisher, view ViewWriter, state bus.KV, reg prometheus.Registerer, logger *slog.Logger) (*Watchers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("solana watchers config: %w", err)
	}
	if pub == nil || view == nil || state == nil || reg == nil || logger == nil {
		return nil, errors.New("solana watchers: publisher, view writer, state bucket, registerer and logger are required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register solana metrics: %w", err)
	}
	log := logger.With("source", source)
	w := &Watchers{cfg: cfg, log: log, view: view, state: state, m: m, now: time.Now}
	var urls []string
	for _, e := range cfg.Endpoints {
		urls = append(urls, e.URL, e.WSURL)
	}
	w.scrub = redact.NewScrubber(urls...)
	w.out = newOutbox(pub, log, cfg.PublishRetry)
	for _, e := range cfg.Endpoints {
		w.endpoints = append(w.endpoints, &endpoint{cfg: e, client: rpc.New(e.URL), redacted: redact.URL(e.URL), healthy: true})
	}
	for _, p := range cfg.Programs {
		id := solanago.MustPublicKeyFromBase58(p.ID) // validated above
		pw, err := newProgramWatch(w, p, id)
		if err != nil {
			return nil, err
		}
		w.programs = append(w.programs, pw)
		w.txs = append(w.txs, newTxWatch(w, p, id))
	}
	for _, c := range cfg.Wallets {
		w.wallets = append(w.wallets, &walletWatch{cfg: c, addr: solanago.MustPublicKeyFromBase58(c.Address)})
	}
	return w, nil
}

// Share makes Run run each watcher under its own lease in leases
// (lease.Bucket), holder naming this replica (lease.Holder): of the
// replicas sharing the bucket, one at a time runs it, and another takes it
// over when that one dies. Call it before Run. Without it every watcher
// runs here.
//
// The watchers are leased as units that share state: RPC health (all
// endpoints: a round compares their slots and ranks them in one view),
// balances (one loop over the wallets), and per program its ProgramData
// watch and its transaction watch. Each unit starts from the state its
// previous holder stored (watch state bucket), so a takeover neither
// reports a change again under a new id nor forgets an open episode.
func (w *Watchers) Share(leases bus.KV, holder string) {
	w.leases, w.holder = leases, holder
}

// Run starts all watchers and returns nil when ctx is done.
func (w *Watchers) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	start := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	// leased starts f under the lease key, shown as watcher in metrics and
	// logs; reset clears the gauges f set, which go stale once another
	// replica runs it.
	leased := func(watcher, key string, f func(context.Context), reset func(), onChange ...func(bool)) {
		if w.leases == nil {
			start(f)
			return
		}
		gauge := w.m.leader.WithLabelValues(watcher)
		gauge.Set(0)
		l := lease.Lease{
			KV: w.leases, Name: key, Holder: w.holder, TTL: w.cfg.LeaseTTL,
			Log: w.log.With("watcher", watcher),
			OnChange: func(held bool) {
				if held {
					gauge.Set(1)
				} else {
					gauge.Set(0)
				}
				for _, f := range onChange {
					f(held)
				}
			},
		}
		start(func(ctx context.Context) {
			err := l.Run(ctx, func(ctx context.Context) error {
				defer reset()
				f(ctx)
				return nil
			})
			if err != nil {
				w.log.Error("watcher lease", "watcher", watcher, "err", err)
			}
		})
	}
	start(w.out.run)
	leased("solana.health", "solana.health", w.runHealth, func() { w.m.rpcUp.Reset(); w.m.slotLag.Reset() }, w.healthLead.Store)
	if r, ok := w.view.(rpcview.Reader); ok && w.leases != nil {
		start(func(ctx context.Context) { w.followView(ctx, r) })
	}
	if len(w.wallets) > 0 {
		leased("solana.balances", "solana.balances", w.runBalances, func() { w.m.balance.Reset() })
	}
	for _, t := range w.txs {
		leased("solana.tx."+t.cfg.Name, "solana.tx."+t.cfg.ID, t.run, func() {})
	}
	for _, p := range w.programs {
		leased("solana.program."+p.cfg.Name, "solana.program."+p.cfg.ID, p.run, func() { w.m.deploySlot.DeleteLabelValues(p.cfg.Name) })
	}
	wg.Wait()
	return nil
}

// followView keeps the ranked view of a replica that does not run the
// health watcher from the one its leader stores, so that the watchers
// running here read from the endpoint the leader ranks best rather than
// from the configured primary, down or not.
func (w *Watchers) followView(ctx context.Context, r rpcview.Reader) {
	for {
		if !w.healthLead.Load() {
			rctx, cancel := context.WithTimeout(ctx, w.cfg.Health.Timeout)
			v, err := r.View(rctx)
			cancel()
			switch {
			case err == nil:
				w.mu.Lock()
				w.ranked = v.Endpoints
				w.mu.Unlock()
			case !errors.Is(err, rpcview.ErrNoView) && ctx.Err() == nil:
				w.log.Warn("read the rpc view the health watcher's leader stores", "err", err)
			}
		}
		if !sleep.For(ctx, w.cfg.Health.Interval) {
			return
		}
	}
}

// pick returns the endpoint to read from: the best healthy one of the last
// ranked view (with a WebSocket URL if ws), else the configured order,
// primary first.
func (w *Watchers) pick(ws bool) *endpoint {
	byName := map[string]*endpoint{}
	for _, e := range w.endpoints {
		byName[e.cfg.Name] = e
	}
	usable := func(e *endpoint) bool { return e != nil && (!ws || e.cfg.WSURL != "") }
	w.mu.Lock()
	ranked := w.ranked
	w.mu.Unlock()
	for _, r := range ranked {
		if e := byName[r.Name]; r.Healthy && usable(e) {
			return e
		}
	}
	for _, role := range []string{"primary", "backup"} {
		for _, e := range w.endpoints {
			if e.cfg.Role == role && usable(e) {
				return e
			}
		}
	}
	return w.endpoints[0]
}

// timed runs one RPC call and records its duration.
func (w *Watchers) timed(ep *endpoint, method string, f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	d := time.Since(start)
	w.m.reqDuration.WithLabelValues(ep.cfg.Name, method).Observe(d.Seconds())
	return d, err
}

// resubscribe runs session against the best WebSocket endpoint until ctx
// ends. After each break it reconnects with exponential backoff between
// Reconnect.Min and Reconnect.Max, reset once a session got as far as
// streaming (drops are routine; a node that never subscribes is not).
func (w *Watchers) resubscribe(ctx context.Context, log *slog.Logger, what string, session func(context.Context, *endpoint) (streamed bool, err error)) {
	delay := w.cfg.Reconnect.Min
	for ctx.Err() == nil {
		ep := w.pick(true)
		streamed, err := session(ctx, ep)
		if ctx.Err() != nil {
			return
		}
		if streamed {
			delay = w.cfg.Reconnect.Min
		}
		reason := "stream ended"
		if err != nil {
			reason = w.sanitize(err.Error())
		}
		log.Warn(what+" subscription ended, reconnecting", "endpoint", ep.cfg.Name, "err", reason, "retry_in", delay)
		if !sleep.For(ctx, delay) {
			return
		}
		if !streamed {
			delay = min(delay*2, w.cfg.Reconnect.Max)
		}
	}
}
