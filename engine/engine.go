// Package engine consumes events from the bus, matches each signal to a
// runbook, keeps one incident per (group, runbook) in a KV bucket with
// compare-and-set, and reconciles what people have been told — the living
// Slack card, its thread, the PagerDuty page — with the incident's state.
// It acknowledges an event only after the state change and its effects are
// recorded, so a crash at any point is repaired by redelivery.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// Route is where a runbook sends an incident of a given severity.
type Route struct {
	Channel string
	Page    bool
	// PagerDutyKey is the routing key; empty means the pager's default.
	PagerDutyKey string
}

// Rendered is a runbook rendered for one incident.
type Rendered struct {
	Title       string
	Summary     string
	RunbookURL  string
	Assessment  []notify.Step
	Remediation []notify.Proposal
	Escalation  []notify.EscalationLevel
}

// Runbook is what the engine needs of a runbook.
type Runbook interface {
	Name() string
	Severity(labels map[string]string) notify.Severity
	Route(sev notify.Severity) Route
	// Render renders the runbook for the incident's representative signal.
	Render(ctx context.Context, s signal.Signal) Rendered
}

// Catalog selects runbooks.
type Catalog interface {
	// Match returns the runbook for a signal; false when none matches
	// (no fallback configured).
	Match(s signal.Signal) (Runbook, bool)
	// Get returns a runbook by name.
	Get(name string) (Runbook, bool)
}

// Config tunes the engine.
type Config struct {
	// ReopenWindow: an incident that fires again within this time after
	// resolving is reopened in place (flapping); default 1h.
	ReopenWindow time.Duration `yaml:"reopen_window"`
	// EffectTimeout bounds one notification call; default 15s.
	EffectTimeout time.Duration `yaml:"effect_timeout"`
	// ClaimTimeout is how long a card-posting claim holds before another
	// worker may assume the poster died; default 2m.
	ClaimTimeout time.Duration `yaml:"claim_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ReopenWindow: time.Hour, EffectTimeout: 15 * time.Second, ClaimTimeout: 2 * time.Minute}
}

// Engine turns events into incidents and incidents into notifications.
type Engine struct {
	cfg     Config
	catalog Catalog
	kv      bus.KV
	chat    notify.Chat
	pager   notify.Pager
	audit   bus.Auditor
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time
}

// Deps are the engine's collaborators.
type Deps struct {
	Catalog Catalog
	KV      bus.KV
	Chat    notify.Chat
	Pager   notify.Pager
	Audit   bus.Auditor
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New returns an engine.
func New(cfg Config, d Deps) (*Engine, error) {
	def := DefaultConfig()
	if cfg.ReopenWindow <= 0 {
		cfg.ReopenWindow = def.ReopenWindow
	}
	if cfg.EffectTimeout <= 0 {
		cfg.EffectTimeout = def.EffectTimeout
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = def.ClaimTimeout
	}
	if d.Catalog == nil || d.KV == nil || d.Chat == nil || d.Pager == nil {
		return nil, errors.New("engine: catalog, kv, chat and pager are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Audit == nil {
		d.Audit = nopAuditor{}
	}
	return &Engine{cfg: cfg, catalog: d.Catalog, kv: d.KV, chat: d.Chat, pager: d.Pager, audit: d.Audit, log: d.Logger, m: d.Metrics, now: d.Now}, nil
}

type nopAuditor struct{}

func (nopAuditor) Audit(context.Context, bus.AuditRecord) error { return nil }

// batch is the signals of one event that belong to one incident.
type batch struct {
	key       string
	runbook   Runbook
	groupKey  string
	source    string
	signals   []signal.Signal
	truncated int
}

// Signals decodes an event into signals. Events that can never be decoded
// are poison.
func Signals(ev bus.Event) ([]signal.Signal, int, error) {
	switch {
	case ev.Type == "alertmanager.notification":
		m, err := alertmanager.Decode(ev.Data)
		if err != nil {
			return nil, 0, bus.Poison(err)
		}
		return m.Signals(), int(m.TruncatedAlerts), nil
	case ev.Source == "alertmanager":
		return nil, 0, bus.Poison(fmt.Errorf("unknown alertmanager event type %q", ev.Type))
	default:
		s, err := signal.Decode(ev.Data)
		if err != nil {
			return nil, 0, bus.Poison(err)
		}
		s.Source, s.Type = ev.Source, ev.Type
		return []signal.Signal{s}, 0, nil
	}
}

// Handle processes one delivered event. It is the bus handler.
func (e *Engine) Handle(ctx context.Context, d *bus.Delivery) error {
	start := e.now()
	err := e.handle(ctx, d)
	result := "ok"
	switch {
	case err == nil:
	case bus.IsPoison(err):
		result = "poison"
	default:
		result = "retry"
	}
	e.m.events.WithLabelValues(d.Event.Source, result).Inc()
	e.m.processing.WithLabelValues(d.Event.Source).Observe(e.now().Sub(start).Seconds())
	if err == nil && !d.Event.Time.IsZero() {
		e.m.endToEnd.WithLabelValues(d.Event.Source).Observe(e.now().Sub(d.Event.Time).Seconds())
	}
	return err
}

func (e *Engine) handle(ctx context.Context, d *bus.Delivery) error {
	ev := d.Event
	sigs, truncated, err := Signals(ev)
	if err != nil {
		return err
	}
	log := e.log.With("event", ev.ID, "type", ev.Type, "attempt", d.Attempt)
	batches, unmatched := e.group(sigs, truncated)
	for _, s := range unmatched {
		log.Warn("no runbook matches and no fallback is configured; signal dropped", "alertname", s.Name(), "group", s.GroupKey)
		e.auditf(ctx, bus.AuditRecord{Kind: "signal.unmatched", EventID: ev.ID, Detail: s.Name()})
	}
	var errs []error
	for _, b := range batches {
		rec, err := e.record(ctx, b, ev.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec == nil {
			continue
		}
		_ = d.InProgress()
		if err := e.reconcile(ctx, b.key); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if d.Last {
			log.Error("giving up on event after its last attempt; incidents keep their recorded state", "err", err)
		}
		return err
	}
	return nil
}

// group matches signals to runbooks and groups them per incident, keeping
// the order of first appearance.
func (e *Engine) group(sigs []signal.Signal, truncated int) ([]*batch, []signal.Signal) {
	var out []*batch
	byKey := map[string]*batch{}
	var unmatched []signal.Signal
	for _, s := range sigs {
		rb, ok := e.catalog.Match(s)
		if !ok {
			unmatched = append(unmatched, s)
			continue
		}
		key := incidentKey(s.GroupKey, rb.Name())
		b := byKey[key]
		if b == nil {
			b = &batch{key: key, runbook: rb, groupKey: s.GroupKey, source: s.Source, truncated: truncated}
			byKey[key] = b
			out = append(out, b)
		}
		b.signals = append(b.signals, s)
	}
	return out, unmatched
}

// record applies a batch to its incident with compare-and-set, retrying on
// conflicts with another worker or replica.
func (e *Engine) record(ctx context.Context, b *batch, eventID string) (*Record, error) {
	for attempt := 0; attempt < 20; attempt++ {
		cur, rev, err := e.load(ctx, b.key)
		if err != nil {
			return nil, err
		}
		next, ch := apply(cur, applyInput{
			GroupKey: b.groupKey, Runbook: b.runbook.Name(), Source: b.source,
			Signals: b.signals, Truncated: b.truncated, Now: e.now(),
			ReopenWindow: e.cfg.ReopenWindow, Severity: b.runbook.Severity,
		})
		if ch == unchanged {
			return next, nil
		}
		if err := e.store(ctx, b.key, next, rev); errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrKeyExists) {
			continue
		} else if err != nil {
			return nil, err
		}
		e.m.transitions.WithLabelValues(ch.String()).Inc()
		switch {
		case ch == opened || ch == reopened:
			e.m.open.WithLabelValues(string(next.Severity)).Inc()
		case ch == resolved:
			e.m.open.WithLabelValues(string(next.Severity)).Dec()
		}
		e.log.Info("incident "+ch.String(), "incident", next.ID, "runbook", next.Runbook, "severity", next.Severity, "status", next.Status, "group", next.GroupKey)
		e.auditf(ctx, bus.AuditRecord{Kind: "incident." + ch.String(), Incident: next.ID, EventID: eventID,
			Detail: lastText(next), Attrs: map[string]string{"runbook": next.Runbook, "severity": string(next.Severity), "status": string(next.Status)}})
		return next, nil
	}
	return nil, fmt.Errorf("update incident %s: too many concurrent changes", b.key)
}

func lastText(r *Record) string {
	if len(r.Timeline) == 0 {
		return ""
	}
	return r.Timeline[len(r.Timeline)-1].Text
}

func (e *Engine) auditf(ctx context.Context, r bus.AuditRecord) {
	if r.Actor == "" {
		r.Actor = "incidentbot"
	}
	if err := e.audit.Audit(ctx, r); err != nil {
		e.log.Error("audit append failed", "kind", r.Kind, "incident", r.Incident, "err", err)
	}
}
