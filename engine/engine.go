// Package engine turns inputs into incidents and incidents into what people
// see. It consumes events and commands from the bus, decodes each into
// inputs (see package input), applies them to incident records with a pure
// function under compare-and-set, and then hands the rest to independent
// reconcilers: the chat card and thread, the pager, and the escalation
// timer. Each reconciler runs from its own durable job stream, so one
// sink's outage never delays another, and no event waits on a sink.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// Route is where a runbook sends an incident of a given severity.
type Route struct {
	Channel string
	Page    bool
	// PagerDutyKey names the routing key to page with (the runbook's
	// pagerduty_key_ref), never the key itself: the pager resolves it.
	// Empty means the pager's default key.
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
	// Escalation is the ladder of levels called while nobody acknowledges.
	Escalation() []notify.EscalationLevel
	// Render renders the runbook for the incident's representative signal.
	Render(ctx context.Context, s signal.Signal) Rendered
}

// Correlator is implemented by runbooks that join incidents across
// sources: signals of every runbook of one correlation group with equal
// values of the group's labels share one incident, whichever arrives
// first and on whichever replica.
type Correlator interface {
	// CorrelationKey returns the group key shared by every signal of the
	// correlation group with these labels, and false when the signal is
	// not correlated (it then opens an incident of its own).
	CorrelationKey(labels map[string]string) (string, bool)
}

// Catalog selects runbooks.
type Catalog interface {
	// Match returns the runbook for a signal; false when none matches
	// (no fallback configured).
	Match(s signal.Signal) (Runbook, bool)
	// Get returns a runbook by name.
	Get(name string) (Runbook, bool)
}

// Config tunes the engine; it is the engine section of the configuration.
type Config struct {
	// ReopenWindow: an incident that fires again within this time after
	// resolving is reopened in place (flapping); default 1h.
	ReopenWindow time.Duration `yaml:"reopen_window"`
	// EffectTimeout bounds one notification call, retries included; a
	// chat or pager lease lasts no longer than this plus a margin.
	// Default 15s.
	EffectTimeout time.Duration `yaml:"effect_timeout"`
	// RetryMax caps the delay between attempts of a failing delivery
	// (default 10s), so deliveries resume soon after a sink recovers.
	RetryMax time.Duration `yaml:"retry_max"`
	// SweepInterval is how often the repair sweep looks for deliveries
	// that fell behind (default 1m): every pass checks the incidents whose
	// change settled since the previous pass, and one pass in 10 reads
	// every record (the retention, and the idle incidents' deliveries), so
	// a lagging delivery is repaired within 10 intervals at most. The
	// open-incidents gauge follows the records as they change.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Retention is how long a resolved incident is kept (its record, id,
	// deliveries and archived copy) after it resolved; the sweep removes
	// it then. Default 90 days; it must exceed ReopenWindow.
	Retention time.Duration `yaml:"retention"`
	// ReportOnResolve posts the incident's report in its thread when it
	// resolves (default true; needs Deps.Reports).
	ReportOnResolve bool `yaml:"report_on_resolve"`
	// VerifyInterval is how often a remediation run still being checked
	// (its action said "not yet", or verify.within waits for the incident
	// to resolve) is probed again, on a durable timer (default 5s).
	VerifyInterval time.Duration `yaml:"verify_interval"`
	// Storm is storm mode of the chat sink; it is configured in the slack
	// section (slack.storm_threshold, slack.storm_window).
	Storm StormConfig `yaml:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ReopenWindow: time.Hour, EffectTimeout: 15 * time.Second, RetryMax: 10 * time.Second, SweepInterval: time.Minute,
		Retention: 90 * 24 * time.Hour, ReportOnResolve: true, VerifyInterval: 5 * time.Second}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ReopenWindow <= 0 {
		c.ReopenWindow = d.ReopenWindow
	}
	if c.EffectTimeout <= 0 {
		c.EffectTimeout = d.EffectTimeout
	}
	if c.RetryMax <= 0 {
		c.RetryMax = d.RetryMax
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = d.SweepInterval
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
	// A resolved incident may still reopen within the reopen window: it
	// is kept at least that long.
	c.Retention = max(c.Retention, c.ReopenWindow+c.SweepInterval)
	if c.VerifyInterval <= 0 {
		c.VerifyInterval = d.VerifyInterval
	}
	c.Storm = c.Storm.withDefaults()
	return c
}

// Publisher publishes to a subject relative to the bus prefix.
type Publisher interface {
	PublishTo(ctx context.Context, subject string, ev bus.Event) (bus.PublishResult, error)
}

// Scheduler arms and cancels durable timers: at a time, the event is
// delivered to the timer consumer. One timer per key; arming again
// replaces it.
type Scheduler interface {
	Schedule(ctx context.Context, key string, at time.Time, ev bus.Event) error
	CancelSchedule(ctx context.Context, key string) error
}

// Engine turns inputs into incidents and incidents into notifications.
type Engine struct {
	cfg        Config
	catalog    Catalog
	decoders   *input.Decoders
	incidents  bus.KV
	ids        bus.KV
	deliveries bus.KV
	archiveKV  bus.KV
	// archivePass is when the sweep last walked the archive (retention).
	archivePass time.Time
	// lastFull is when the sweep last read every record; checkedTo is
	// how far its passes checked the changes the index names.
	lastFull, checkedTo time.Time
	// known is the open incidents and the recently changed ones, from a
	// watch of the incidents bucket (Sweep).
	known      *incidentIndex
	chat       notify.Chat
	pager      notify.Pager
	pub        Publisher
	timers     Scheduler
	silencer   Silencer
	silenceMax time.Duration
	reports    Reports
	runs       bus.KV
	runner     StepRunner
	actionEnv  actions.Env
	audit      bus.Auditor
	log        *slog.Logger
	m          *Metrics
	now        func() time.Time
	newID      func() string
}

// Deps are the engine's collaborators.
type Deps struct {
	Catalog  Catalog
	Decoders *input.Decoders
	// Incidents, IDs and Deliveries are the engine's buckets (see Buckets).
	Incidents  bus.KV
	IDs        bus.KV
	Deliveries bus.KV
	// Archive keeps resolved incidents by id after a later incident of
	// the same group takes their key (reports); nil keeps none.
	Archive bus.KV
	Chat    notify.Chat
	Pager   notify.Pager
	// Publisher queues delivery jobs; Scheduler arms escalation timers.
	Publisher Publisher
	Scheduler Scheduler
	Audit     bus.Auditor
	Logger    *slog.Logger
	Metrics   *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewID names new incidents; nil means NewID.
	NewID func() string
	// Silencer reaches Alertmanager's API; nil refuses silences.
	// SilenceMax bounds one (0 means DefaultSilenceMax).
	Silencer   Silencer
	SilenceMax time.Duration
	// Reports renders the report posted on resolution; nil posts none.
	Reports Reports
	// Runs is the bucket of action keys (RunsBucket); Runner resolves and
	// runs approved steps with ActionEnv's clients. Without Runs no step
	// runs; without Runner an approved step waits.
	Runs      bus.KV
	Runner    StepRunner
	ActionEnv actions.Env
}

// Reports renders an incident's report (package report).
type Reports interface {
	// RecordReport renders the Markdown report of rec.
	RecordReport(ctx context.Context, rec *Record) (string, error)
}

// New returns an engine.
func New(cfg Config, d Deps) (*Engine, error) {
	cfg = cfg.withDefaults()
	if d.Catalog == nil || d.Decoders == nil || d.Incidents == nil || d.IDs == nil || d.Deliveries == nil ||
		d.Chat == nil || d.Pager == nil || d.Publisher == nil || d.Scheduler == nil {
		return nil, errors.New("engine: catalog, decoders, buckets, chat, pager, publisher and scheduler are required")
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
	if d.NewID == nil {
		d.NewID = NewID
	}
	if d.Audit == nil {
		d.Audit = nopAuditor{}
	}
	eng := &Engine{cfg: cfg, catalog: d.Catalog, decoders: d.Decoders, incidents: d.Incidents, ids: d.IDs, deliveries: d.Deliveries, archiveKV: d.Archive,
		chat: d.Chat, pager: d.Pager, pub: d.Publisher, timers: d.Scheduler, audit: d.Audit,
		silencer: d.Silencer, silenceMax: d.SilenceMax, reports: d.Reports,
		runs: d.Runs, runner: d.Runner, actionEnv: d.ActionEnv,
		log: d.Logger, m: d.Metrics, now: d.Now, newID: d.NewID}
	eng.known = newIncidentIndex(func(open map[notify.Severity]int) {
		for sev, n := range open {
			eng.m.open.WithLabelValues(string(sev)).Set(float64(n))
		}
	})
	return eng, nil
}

type nopAuditor struct{}

func (nopAuditor) Audit(context.Context, bus.AuditRecord) error { return nil }

// Handle processes one delivered event or command: it decodes it into
// inputs, applies them, and queues what must follow. It is the bus handler
// of the input consumer; it never calls a sink.
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
	return err
}

func (e *Engine) handle(ctx context.Context, d *bus.Delivery) error {
	ev := d.Event
	ins, err := e.decoders.Decode(ev)
	if err != nil {
		return err
	}
	log := e.log.With("event", ev.ID, "type", ev.Type, "attempt", d.Attempt)
	var sigs []input.Input
	var errs []error
	for _, in := range ins {
		if in.Kind == input.Signal {
			sigs = append(sigs, in)
			continue
		}
		if (in.Kind == input.Freeze || in.Kind == input.Unfreeze) && in.Incident == "" {
			if err := e.applyFreeze(ctx, in, ev); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := e.applyOne(ctx, in, ev, log); err != nil {
			errs = append(errs, err)
		}
	}
	if len(sigs) > 0 {
		batches, unmatched := e.group(sigs)
		for _, s := range unmatched {
			log.Warn("no runbook matches and no fallback is configured; signal dropped", "alertname", s.Signal.Name(), "group", s.Signal.GroupKey)
			e.auditf(ctx, bus.AuditRecord{Kind: "signal.unmatched", EventID: ev.ID, Detail: s.Signal.Name()})
		}
		for _, b := range batches {
			if err := e.applySignals(ctx, b, ev); err != nil {
				errs = append(errs, err)
			}
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

// batch is the signals of one event that belong to one incident.
type batch struct {
	key     string
	runbook Runbook
	inputs  []input.Input
	// uncorrelated is, for correlated signals, the key their incident had
	// before their runbook correlated: an incident still open there keeps
	// them (see applySignals).
	uncorrelated string
}

// group matches signals to runbooks and groups them per incident, keeping
// the order of first appearance. A correlated signal's group key becomes
// its correlation key, so that the Alertmanager group and the watcher's
// group of one fault address one incident.
func (e *Engine) group(ins []input.Input) ([]*batch, []input.Input) {
	var out []*batch
	byKey := map[string]*batch{}
	var unmatched []input.Input
	for _, in := range ins {
		rb, ok := e.catalog.Match(in.Signal)
		if !ok {
			unmatched = append(unmatched, in)
			continue
		}
		key := incidentKey(in.Signal.GroupKey, rb.Name())
		var uncorrelated string
		if c, ok := rb.(Correlator); ok {
			if ck, ok := c.CorrelationKey(in.Signal.Labels); ok {
				uncorrelated, key = key, incidentKey(ck, "")
				in.Signal.GroupKey = ck
			}
		}
		b := byKey[key]
		if b == nil {
			b = &batch{key: key, runbook: rb, uncorrelated: uncorrelated}
			byKey[key] = b
			out = append(out, b)
		}
		b.inputs = append(b.inputs, in)
	}
	return out, unmatched
}

func (e *Engine) env(key string, rb Runbook) applyEnv {
	return applyEnv{Now: e.now(), ReopenWindow: e.cfg.ReopenWindow, Runbook: rb.Name(), Severity: rb.Severity,
		Levels: rb.Escalation(), NewID: e.newID, Key: key,
		Silences: e.silencer != nil, SilenceMax: e.silenceMax, ReportOnResolve: e.cfg.ReportOnResolve && e.reports != nil,
		Step: stepOf(rb), AutoSteps: autoStepsOf(rb)}
}

// autoStepsOf returns rb's automatic steps, or nil.
func autoStepsOf(rb Runbook) []string {
	if s, ok := rb.(AutoStepper); ok {
		return s.AutomaticSteps()
	}
	return nil
}

// stepOf returns rb's step policies, or nil when rb has none. A step's
// revert step (revert-<id>) has the step's approval policy, unless the
// step never reverts.
func stepOf(rb Runbook) func(string) (StepPolicy, bool) {
	s, ok := rb.(Stepper)
	if !ok {
		return nil
	}
	return func(id string) (StepPolicy, bool) {
		orig, isRevert := strings.CutPrefix(id, RevertPrefix)
		if !isRevert {
			return s.Step(id)
		}
		p, ok := s.Step(orig)
		if !ok || runPolicy(rb, orig).Revert == RevertNever {
			return StepPolicy{}, false
		}
		return RevertPolicy(p), true
	}
}

// signalEnv is the env for signals rb matched, applied to cur: when cur
// belongs to another runbook (the signals join a correlated incident), the
// incident keeps that runbook's escalation ladder.
func (e *Engine) signalEnv(key string, rb Runbook, cur *Record) applyEnv {
	env := e.env(key, rb)
	if cur != nil && cur.Runbook != env.Runbook {
		env.OwnerLevels = e.runbook(cur).Escalation()
	}
	return env
}

func (e *Engine) applySignals(ctx context.Context, b *batch, ev bus.Event) error {
	key := b.key
	if b.uncorrelated != "" {
		// An incident opened before its runbook correlated keeps its
		// alerts until it resolves, so that their resolution reaches it.
		old, _, err := e.load(ctx, b.uncorrelated)
		if err != nil {
			return err
		}
		if old != nil && old.Open() {
			key = b.uncorrelated
		}
	}
	prev, next, res, err := e.update(ctx, key, func(cur *Record) (*Record, Result) {
		return applySignals(cur, b.inputs, e.signalEnv(key, b.runbook, cur))
	})
	if err != nil {
		return err
	}
	return e.follow(ctx, prev, next, res, ev, input.Bot)
}

// applyOne applies an input addressed to an incident by id.
func (e *Engine) applyOne(ctx context.Context, in input.Input, ev bus.Event, log *slog.Logger) error {
	ref, err := e.Lookup(ctx, in.Incident)
	if errors.Is(err, ErrNoIncident) {
		log.Warn("input for an unknown incident dropped", "incident", in.Incident, "kind", in.Kind)
		e.auditf(ctx, bus.AuditRecord{Kind: "input.dropped", EventID: ev.ID, Actor: in.Actor.String(), Incident: in.Incident,
			Detail: string(in.Kind) + ": no such incident", Attrs: actorAttrs(nil, in.Actor)})
		return nil
	}
	if err != nil {
		return err
	}
	prev, next, res, err := e.update(ctx, ref.Key, func(cur *Record) (*Record, Result) {
		if cur != nil && cur.ID != ref.ID {
			return cur, stale("incident " + ref.ID + " was superseded by " + cur.ID)
		}
		env := e.env(ref.Key, e.runbook(cur))
		if in.Kind == input.Request && cur != nil && !strings.HasPrefix(in.Step, RevertPrefix) {
			// The action reconciler checks again before it runs.
			env.Breaker, _ = e.BreakerOpen(ctx, cur.Runbook)
		}
		return applyInput(cur, in, env)
	})
	if err != nil {
		return err
	}
	if !res.Changed() {
		log.Info("input changed nothing", "incident", ref.ID, "kind", in.Kind, "by", in.Actor.String(), "why", res.Reason)
		if in.Kind != input.EscalationDue {
			e.auditf(ctx, bus.AuditRecord{Kind: "input.ignored", EventID: ev.ID, Incident: ref.ID, Actor: in.Actor.String(),
				Detail: string(in.Kind) + ": " + res.Reason, Attrs: actorAttrs(nil, in.Actor)})
		}
	}
	return e.follow(ctx, prev, next, res, ev, in.Actor)
}

// update applies f to the incident at key with compare-and-set, retrying
// when another worker or replica changed it meanwhile. It returns the
// record before and after.
func (e *Engine) update(ctx context.Context, key string, f func(*Record) (*Record, Result)) (prev, next *Record, res Result, err error) {
	for range 20 {
		cur, rev, err := e.load(ctx, key)
		if err != nil {
			return nil, nil, Result{}, err
		}
		next, res := f(cur)
		if !res.Changed() {
			return cur, next, res, nil
		}
		if err := e.store(ctx, key, next, rev); errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrKeyExists) {
			continue
		} else if err != nil {
			return nil, nil, Result{}, err
		}
		return cur, next, res, nil
	}
	return nil, nil, Result{}, fmt.Errorf("update incident %s: too many concurrent changes", key)
}

// follow does what a recorded change requires, each step idempotent: index
// a new incident, arm or cancel its escalation timer, queue its deliveries,
// audit. An input that changes nothing may be the redelivery of one whose
// change was recorded by an attempt that then died before its follow-up,
// so a no-op does the follow-up again (its jobs are deduplicated by record
// version on the bus). The delivery's attempt number cannot tell: the
// embedded server writes consumer state about ten times a second, so after
// kill -9 an event already delivered may come back as attempt 1.
func (e *Engine) follow(ctx context.Context, prev, rec *Record, res Result, ev bus.Event, by input.Actor) error {
	if rec == nil {
		return nil
	}
	redo := !res.Changed()
	if fresh := prev == nil || prev.ID != rec.ID; fresh || redo {
		if err := e.index(ctx, rec); err != nil {
			return err
		}
	}
	if prev == nil || prev.Escalation.Token != rec.Escalation.Token || redo {
		if err := e.armTimer(ctx, rec); err != nil {
			return err
		}
	}
	if err := e.armApprovalTimers(ctx, prev, rec, redo); err != nil {
		return err
	}
	if err := e.queueDeliveries(ctx, rec); err != nil {
		return err
	}
	if err := e.queueActions(ctx, rec); err != nil {
		return err
	}
	if err := e.archive(ctx, rec); err != nil {
		return err
	}
	if res.Changed() {
		e.m.transitions.WithLabelValues(res.change.String()).Inc()
		e.log.Info("incident "+res.change.String(), "incident", rec.ID, "runbook", rec.Runbook, "severity", rec.Severity,
			"status", rec.Status, "group", rec.GroupKey, "by", by.String())
		attrs := map[string]string{"runbook": rec.Runbook, "severity": string(rec.Severity), "status": string(rec.Status)}
		kind := "incident." + res.change.String()
		if res.change == stepChanged {
			// remediation.requested, .approved, .denied, .expired, .void,
			// .started, .result, .vote_early, .not_run: with the step,
			// its plan and hash.
			kind = "remediation." + strings.TrimPrefix(rec.Timeline[len(rec.Timeline)-1].Kind, "step_")
			attrs["step"] = res.step
			if q := rec.Steps[res.step]; q != nil {
				attrs["hash"], attrs["plan"], attrs["state"] = q.Hash, q.Plan, string(q.State)
				if q.Run != nil && q.Run.Result != "" {
					attrs["result"] = q.Run.Result
				}
			}
		}
		e.auditf(ctx, bus.AuditRecord{Kind: kind, Incident: rec.ID, EventID: ev.ID, Actor: by.String(),
			Detail: lastText(rec), Attrs: actorAttrs(attrs, by)})
	}
	return e.requestAutomatic(ctx, rec)
}

// actorAttrs adds to an audit record's attributes who acted (their id in
// the system they came from), that system, and the transport it used.
func actorAttrs(attrs map[string]string, by input.Actor) map[string]string {
	if by.ID == "" && by.Transport == "" {
		return attrs
	}
	if attrs == nil {
		attrs = map[string]string{}
	}
	for k, v := range map[string]string{"actor_id": by.ID, "via": by.Via, "transport": by.Transport} {
		if v != "" {
			attrs[k] = v
		}
	}
	return attrs
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
	if r.Time.IsZero() {
		r.Time = e.now().UTC()
	}
	if err := e.audit.Audit(ctx, r); err != nil {
		e.log.Error("audit append failed", "kind", r.Kind, "incident", r.Incident, "err", err)
	}
}

// Consumer is one durable consumer the engine needs, with its handler.
type Consumer struct {
	Config  bus.ConsumerConfig
	Handler bus.Handler
}

// Consumers are the durable consumers a replica runs: events and commands,
// fired timers, and one per sink for delivery jobs. Delivery jobs never
// give up: a sink down for an hour is retried every RetryMax until it
// answers, and a job in flight when its process died comes back within
// AckWait, when the lease its worker held ends.
func (e *Engine) Consumers() []Consumer {
	deliver := func(sink string, h bus.Handler) Consumer {
		return Consumer{bus.ConsumerConfig{Durable: "deliver-" + sink, Stream: DeliveriesStream.Name,
			FilterSubjects: []string{JobSubject(sink)}, MaxDeliver: -1, MaxBackoff: e.cfg.RetryMax,
			AckWait: e.cfg.EffectTimeout + LeaseMargin, Shards: 8}, h}
	}
	return []Consumer{
		{bus.ConsumerConfig{Durable: "engine"}, e.Handle},
		{bus.ConsumerConfig{Durable: "engine-timers", Stream: bus.TimersStreamSpec().Name, FilterSubjects: []string{"timers.due.>"}}, e.handleTimer},
		deliver(SinkChat, e.HandleChat),
		deliver(SinkPager, e.HandlePager),
		deliver(SinkSilence, e.HandleSilence),
		deliver(SinkAction, e.HandleAction),
	}
}
