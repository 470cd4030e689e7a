package solana

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/signal"
)

// source is the bus Source of every watcher event.
const source = "solana"

// outboxCap bounds the events waiting to be published while the bus is
// down; past it new events are dropped (and logged) so that probing never
// blocks on the bus.
const outboxCap = 1024

// outbox publishes events in order, retrying each with back-off until the
// bus takes it. Watchers enqueue without blocking.
type outbox struct {
	pub     bus.Publisher
	log     *slog.Logger
	backoff BackoffConfig

	mu      sync.Mutex
	queue   []outboxEntry
	wake    chan struct{}
	dropped int
}

// outboxEntry is an event to publish, then a step to run once the bus has
// accepted it (storing the baseline the event reports on); either may be
// absent. A step alone runs in queue order, after the events before it.
type outboxEntry struct {
	ev    *bus.Event
	after func(context.Context)
}

func newOutbox(pub bus.Publisher, log *slog.Logger, b BackoffConfig) *outbox {
	return &outbox{pub: pub, log: log, backoff: b, wake: make(chan struct{}, 1)}
}

// enqueue queues e and reports whether it was queued.
func (o *outbox) enqueue(e outboxEntry) bool {
	o.mu.Lock()
	if len(o.queue) >= outboxCap {
		o.dropped++
		o.mu.Unlock()
		if e.ev != nil {
			o.log.Error("drop solana event: publish queue full", "type", e.ev.Type, "id", e.ev.ID, "subject", e.ev.Subject)
		} else {
			o.log.Error("drop watch state write: publish queue full")
		}
		return false
	}
	o.queue = append(o.queue, e)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true
}

func (o *outbox) run(ctx context.Context) {
	for {
		o.mu.Lock()
		var e outboxEntry
		have := len(o.queue) > 0
		if have {
			e = o.queue[0]
		}
		o.mu.Unlock()
		if !have {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
				continue
			}
		}
		if e.ev != nil && !o.publish(ctx, *e.ev) {
			return
		}
		if e.after != nil {
			e.after(ctx)
		}
		o.mu.Lock()
		o.queue = o.queue[1:]
		o.mu.Unlock()
	}
}

// publish retries until the bus acknowledges ev or ctx ends.
func (o *outbox) publish(ctx context.Context, ev bus.Event) bool {
	delay := o.backoff.Min
	for attempt := 1; ; attempt++ {
		res, err := o.pub.Publish(ctx, ev)
		if err == nil {
			o.log.Info("published solana event", "type", ev.Type, "id", ev.ID, "subject", ev.Subject, "duplicate", res.Duplicate)
			return true
		}
		o.log.Warn("publish solana event failed, retrying", "type", ev.Type, "id", ev.ID, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(delay*2, o.backoff.Max)
	}
}

// stableID hashes the parts that identify one state transition, so that a
// repeated publish (retry, restart, second replica seeing the same
// on-chain state) carries the same id and dedupes at the bus. The parts
// are on-chain facts where there are some: program id, ProgramData slot
// and authority for programs; the tipping transaction for failure rates;
// the shared episode number for wallets. What each event kind cannot make
// stable across replicas is said where it is emitted.
func stableID(typ string, parts ...string) string {
	return typ + ":" + hashParts(parts...)
}

func fingerprint(parts ...string) string { return hashParts(parts...)[:16] }

func hashParts(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s|", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// newEvent wraps a signal in the bus envelope.
func newEvent(typ, id, subject string, at time.Time, sig signal.Signal) (bus.Event, error) {
	sig.Source, sig.Type = source, typ
	if err := sig.Validate(); err != nil {
		return bus.Event{}, fmt.Errorf("build %s event: %w", typ, err)
	}
	data, err := json.Marshal(sig)
	if err != nil {
		return bus.Event{}, fmt.Errorf("encode %s signal: %w", typ, err)
	}
	ev := bus.Event{
		ID:              id,
		Source:          source,
		Type:            typ,
		Time:            at.UTC(),
		Subject:         subject,
		DataContentType: "application/json",
		Data:            data,
	}
	if err := ev.Validate(); err != nil {
		return bus.Event{}, fmt.Errorf("build %s event: %w", typ, err)
	}
	return ev, nil
}

// emit builds and enqueues an event, logging a build failure (a bug), and
// reports whether it was queued. after, when not nil, runs once the bus
// has accepted the event.
func (w *Watchers) emit(typ, id, subject string, sig signal.Signal, after func(context.Context)) bool {
	ev, err := newEvent(typ, id, subject, w.now(), sig)
	if err != nil {
		w.log.Error("solana event not published", "err", err)
		return false
	}
	return w.out.enqueue(outboxEntry{ev: &ev, after: after})
}

// then queues f behind the events already queued.
func (w *Watchers) then(f func(context.Context)) { w.out.enqueue(outboxEntry{after: f}) }

// sanitize removes what may be secret from an error text: every URL in it
// by structure, and the configured endpoints' API keys wherever they
// appear. solana-go puts the request URL in its errors in its own
// normalised form, which need not match the configured one.
func (w *Watchers) sanitize(s string) string { return w.scrub.String(s) }
