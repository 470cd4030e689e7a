package solana

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
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
	queue   []bus.Event
	wake    chan struct{}
	dropped int
}

func newOutbox(pub bus.Publisher, log *slog.Logger, b BackoffConfig) *outbox {
	return &outbox{pub: pub, log: log, backoff: b, wake: make(chan struct{}, 1)}
}

func (o *outbox) enqueue(ev bus.Event) {
	o.mu.Lock()
	if len(o.queue) >= outboxCap {
		o.dropped++
		o.mu.Unlock()
		o.log.Error("drop solana event: publish queue full", "type", ev.Type, "id", ev.ID, "subject", ev.Subject)
		return
	}
	o.queue = append(o.queue, ev)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) run(ctx context.Context) {
	for {
		o.mu.Lock()
		var ev bus.Event
		have := len(o.queue) > 0
		if have {
			ev = o.queue[0]
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
		if !o.publish(ctx, ev) {
			return
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
// on-chain state) carries the same id and dedupes at the bus.
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

// emit builds and enqueues an event, logging a build failure (a bug).
func (w *Watchers) emit(typ, id, subject string, sig signal.Signal) {
	ev, err := newEvent(typ, id, subject, w.now(), sig)
	if err != nil {
		w.log.Error("solana event not published", "err", err)
		return
	}
	w.out.enqueue(ev)
}

// sanitize removes raw endpoint URLs (which may carry API keys) from an
// error text; solana-go puts the request URL in its errors.
func (w *Watchers) sanitize(s string) string {
	for _, e := range w.cfg.Endpoints {
		for _, raw := range []string{e.URL, e.WSURL} {
			if raw == "" {
				continue
			}
			s = strings.ReplaceAll(s, raw, RedactURL(raw))
			s = strings.ReplaceAll(s, strings.TrimSuffix(raw, "/"), RedactURL(raw))
		}
	}
	return s
}
