package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// Simulator runs the engine as serve does — the same decoders, apply,
// escalation timers and chat and pager reconcilers — on in-memory buckets,
// with a fake clock and sinks that only record what they are told. It has
// no side effects: `incidentbot test` runs runbook tests with it.
//
// Events are handled one at a time, in the order given, and every delivery
// job they queue is run to completion before the next: what a healthy
// deployment converges to, without its concurrency. Escalation timers fire
// as the clock passes their due time, each delivering the event the engine
// scheduled, exactly as the bus would. A Simulator is not safe for
// concurrent use.
type Simulator struct {
	eng *Engine

	mu      sync.Mutex // guards now, for the engine's clock
	now     time.Time
	jobs    []bus.Event
	timers  map[string]simTimer
	byID    map[string]*SimIncident
	audit   []bus.AuditRecord
	nextID  int
	handled int
}

// SimIncident is one incident as the simulator saw it: its record, where
// its runbook routes it, and what chat and pager were told.
type SimIncident struct {
	// Record is the incident's latest record.
	Record *Record
	// Route is where its runbook sends it at its current severity.
	Route Route
	// Channel is where the card was posted; empty if it never was.
	Channel string
	// Card is the card as last posted or edited.
	Card notify.Incident
	// Chat lists the chat calls made for it, in order.
	Chat []SimChat
	// Pages lists the page actions sent for it, in order.
	Pages []SimPage
	// Escalations lists the escalation levels called, in order: the levels
	// due at once are called by the opening (and by a reopening).
	Escalations []SimEscalation
	// Levels is its runbook's escalation ladder.
	Levels []notify.EscalationLevel
}

// SimChat is one chat call: "post", "update" or "reply" (with the
// timeline entry it posted).
type SimChat struct {
	Op     string
	At     time.Time
	Update notify.Update
}

// SimPage is one page sent.
type SimPage struct {
	Action notify.PageAction
	At     time.Time
	// RoutingKey names the runbook's routing key; empty for the default.
	RoutingKey string
}

// SimEscalation is one escalation level called, and when.
type SimEscalation struct {
	Level notify.EscalationLevel
	At    time.Time
}

// NextEscalation is the level the incident's armed timer will call, and
// when; false when no timer is armed (acknowledged, resolved, or every
// level called).
func (i SimIncident) NextEscalation() (notify.EscalationLevel, time.Time, bool) {
	r := i.Record
	if r == nil || r.Escalation.Token == "" || r.Escalation.Next >= len(i.Levels) {
		return notify.EscalationLevel{}, time.Time{}, false
	}
	return i.Levels[r.Escalation.Next], r.Escalation.DueAt, true
}

type simTimer struct {
	at time.Time
	ev bus.Event
}

// NewSimulator returns a simulator whose clock starts at start. Incident
// ids are INC-0001, INC-0002, … in the order incidents open.
func NewSimulator(cfg Config, cat Catalog, dec *input.Decoders, start time.Time) (*Simulator, error) {
	s := &Simulator{now: start, timers: map[string]simTimer{}, byID: map[string]*SimIncident{}}
	sinks := simSinks{s}
	eng, err := New(cfg, Deps{Catalog: cat, Decoders: dec, Incidents: bus.NewMemKV(), IDs: bus.NewMemKV(), Deliveries: bus.NewMemKV(),
		Chat: sinks, Pager: sinks, Publisher: simBus{s}, Scheduler: simBus{s}, Audit: simBus{s},
		Now: s.Now, NewID: func() string { s.nextID++; return fmt.Sprintf("INC-%04d", s.nextID) }})
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	s.eng = eng
	return s, nil
}

// Now is the simulated time.
func (s *Simulator) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *Simulator) setNow(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.now) {
		s.now = t
	}
}

// Advance moves the clock to t, firing every escalation timer due by then
// in order of due time, each at its due time. The clock never goes back.
func (s *Simulator) Advance(ctx context.Context, t time.Time) error {
	for {
		key, tm, ok := s.nextTimer(t)
		if !ok {
			break
		}
		delete(s.timers, key)
		s.setNow(tm.at)
		if err := s.handle(ctx, tm.ev); err != nil {
			return err
		}
	}
	s.setNow(t)
	return nil
}

// nextTimer is the earliest timer due at or before t.
func (s *Simulator) nextTimer(t time.Time) (string, simTimer, bool) {
	var best string
	var bt simTimer
	for k, tm := range s.timers {
		if tm.at.After(t) {
			continue
		}
		if best == "" || tm.at.Before(bt.at) || (tm.at.Equal(bt.at) && k < best) {
			best, bt = k, tm
		}
	}
	return best, bt, best != ""
}

// Deliver handles one event as the engine's consumer would (an
// Alertmanager notification, a watcher event, a command), then runs the
// deliveries it queued. An event the decoders refuse is an error.
func (s *Simulator) Deliver(ctx context.Context, ev bus.Event) error {
	if ev.Time.IsZero() {
		ev.Time = s.Now()
	}
	return s.handle(ctx, ev)
}

func (s *Simulator) handle(ctx context.Context, ev bus.Event) error {
	s.handled++
	if err := s.eng.Handle(ctx, &bus.Delivery{Event: ev, Subject: "events." + ev.Type, Attempt: 1}); err != nil {
		return fmt.Errorf("handle %s event %s: %w", ev.Type, ev.ID, err)
	}
	for len(s.jobs) > 0 {
		job := s.jobs[0]
		s.jobs = s.jobs[1:]
		h := s.eng.HandleChat
		if job.Subject == JobSubject(SinkPager) {
			h = s.eng.HandlePager
		}
		if err := h(ctx, &bus.Delivery{Event: job, Subject: job.Subject, Attempt: 1}); err != nil {
			return fmt.Errorf("deliver %s: %w", job.ID, err)
		}
	}
	return s.observe(ctx)
}

// observe records each changed incident and the escalation levels its
// change called.
func (s *Simulator) observe(ctx context.Context) error {
	recs, err := s.eng.Incidents(ctx)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		inc := s.incident(rec.ID)
		prev := inc.Record
		if prev != nil && prev.Version == rec.Version {
			continue
		}
		rb := s.eng.runbook(rec)
		from := 0
		if prev != nil && prev.Reopened == rec.Reopened {
			from = prev.Escalation.Next
		}
		levels := rb.Escalation()
		for i := from; i < rec.Escalation.Next && i < len(levels); i++ {
			inc.Escalations = append(inc.Escalations, SimEscalation{Level: levels[i], At: s.Now()})
		}
		inc.Record, inc.Route, inc.Levels = rec, rb.Route(rec.Severity), levels
	}
	return nil
}

func (s *Simulator) incident(id string) *SimIncident {
	inc := s.byID[id]
	if inc == nil {
		inc = &SimIncident{}
		s.byID[id] = inc
	}
	return inc
}

// Incidents returns every incident opened so far, in the order they
// opened, as they stand now.
func (s *Simulator) Incidents() []SimIncident {
	ids := make([]string, 0, len(s.byID))
	for id, inc := range s.byID {
		if inc.Record != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]SimIncident, len(ids))
	for i, id := range ids {
		out[i] = *s.byID[id]
	}
	return out
}

// Audit returns what the engine audited: unmatched signals, inputs that
// changed nothing and why, every change and delivery.
func (s *Simulator) Audit() []bus.AuditRecord { return slices.Clone(s.audit) }

// Lookup finds an incident by id, as command.Sender does before sending.
func (s *Simulator) Lookup(ctx context.Context, id string) (Ref, error) { return s.eng.Lookup(ctx, id) }

// PublishTo takes what is published on the simulated bus: delivery jobs
// are queued for the sinks; commands (commands.<verb>, as command.Sender
// publishes them) are handled at once, as the engine's consumer would.
func (s *Simulator) PublishTo(ctx context.Context, subject string, ev bus.Event) (bus.PublishResult, error) {
	if !strings.HasPrefix(subject, "commands.") {
		return bus.PublishResult{}, fmt.Errorf("simulator: cannot publish on %s", subject)
	}
	if err := s.handle(ctx, ev); err != nil {
		return bus.PublishResult{}, err
	}
	return bus.PublishResult{Stream: "EVENTS", Sequence: uint64(s.handled)}, nil
}

// simBus is the engine's publisher, scheduler and auditor in a Simulator.
type simBus struct{ s *Simulator }

func (b simBus) PublishTo(_ context.Context, subject string, ev bus.Event) (bus.PublishResult, error) {
	if subject != JobSubject(SinkChat) && subject != JobSubject(SinkPager) {
		return bus.PublishResult{}, fmt.Errorf("simulator: the engine published on %s", subject)
	}
	ev.Subject = subject
	b.s.jobs = append(b.s.jobs, ev)
	return bus.PublishResult{Stream: DeliveriesStream.Name, Sequence: uint64(len(b.s.jobs))}, nil
}

func (b simBus) Schedule(_ context.Context, key string, at time.Time, ev bus.Event) error {
	b.s.timers[key] = simTimer{at: at, ev: ev}
	return nil
}

func (b simBus) CancelSchedule(_ context.Context, key string) error {
	delete(b.s.timers, key)
	return nil
}

func (b simBus) Audit(_ context.Context, r bus.AuditRecord) error {
	b.s.audit = append(b.s.audit, r)
	return nil
}

// simSinks records what chat and pager are told; every call succeeds.
type simSinks struct{ s *Simulator }

func (k simSinks) PostCard(_ context.Context, channel string, inc notify.Incident, _ notify.CardTag) (notify.CardRef, error) {
	i := k.s.incident(inc.ID)
	i.Channel, i.Card = channel, inc
	i.Chat = append(i.Chat, SimChat{Op: "post", At: k.s.Now()})
	return notify.CardRef{Channel: channel, TS: "sim." + inc.ID}, nil
}

func (k simSinks) FindCard(context.Context, string, notify.CardTag, time.Time) (notify.CardRef, bool, error) {
	return notify.CardRef{}, false, nil // every post is recorded, none is lost
}

func (k simSinks) UpdateCard(_ context.Context, _ notify.CardRef, inc notify.Incident) error {
	i := k.s.incident(inc.ID)
	i.Card = inc
	i.Chat = append(i.Chat, SimChat{Op: "update", At: k.s.Now()})
	return nil
}

func (k simSinks) Reply(_ context.Context, _ notify.CardRef, inc notify.Incident, u notify.Update) error {
	i := k.s.incident(inc.ID)
	i.Chat = append(i.Chat, SimChat{Op: "reply", At: k.s.Now(), Update: u})
	return nil
}

func (k simSinks) Page(_ context.Context, p notify.Page) error {
	i := k.s.incident(p.DedupKey)
	i.Pages = append(i.Pages, SimPage{Action: p.Action, At: k.s.Now(), RoutingKey: p.RoutingKeyRef})
	return nil
}
