package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CloudEvents binary-mode header names used on the wire.
const (
	hdrSpecVersion = "ce-specversion"
	hdrID          = "ce-id"
	hdrSource      = "ce-source"
	hdrType        = "ce-type"
	hdrTime        = "ce-time"
	hdrSubject     = "ce-subject"
	hdrContentType = "content-type"
)

// Publish stores ev on the events stream, on events.<type>, with its ID
// as the JetStream message id; it is PublishTo(ctx, "events."+ev.Type, ev).
// A bus that cannot acknowledge yields an error wrapping ErrUnavailable.
func (b *Bus) Publish(ctx context.Context, ev Event) (PublishResult, error) {
	return b.PublishTo(ctx, "events."+ev.Type, ev)
}

// PublishTo stores ev on rel, a subject relative to the prefix (for
// example "commands.slack.ack"), with ev.ID as the JetStream message id,
// and returns once the server acknowledged it. The subject must belong to
// a stream. An error wraps ErrUnavailable when trying again may help and
// ErrTooLarge when it cannot.
func (b *Bus) PublishTo(ctx context.Context, rel string, ev Event) (PublishResult, error) {
	if err := ev.Validate(); err != nil {
		return PublishResult{}, fmt.Errorf("publish event to %s: %w", rel, err)
	}
	if err := validSubject(rel, false); err != nil {
		return PublishResult{}, fmt.Errorf("publish event %s: subject: %w", ev.ID, err)
	}
	ack, err := b.publishMsg(ctx, encode(ev, b.Subject(rel)), jetstream.WithMsgID(ev.ID))
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s to %s: %w", ev.Type, ev.ID, rel, err)
	}
	return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publishMsg publishes msg and waits for the server's acknowledgement,
// bounded by ctx or, without a deadline, by the configured PublishTimeout.
// Its errors are classified by publishErr.
func (b *Bus) publishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	// Without a deadline, a timer bounds the wait: it is cheaper than a
	// derived context, which registers with its parent (for a webhook, the
	// request's context) on every publish.
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(b.cfg.PublishTimeout)
		defer t.Stop()
		timeout = t.C
	}
	// Asynchronous publish with the acknowledgement awaited here: callers
	// still get "stored or error", while concurrent publishes pipeline on
	// the one connection (its writer coalesces them into one write, the
	// server reads them in one go) instead of each paying a request round
	// trip.
	f, err := b.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, publishErr(err)
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, publishErr(err)
	case <-ctx.Done():
		return nil, fmt.Errorf("no acknowledgement: %w", mapErr(ctx.Err()))
	case <-timeout:
		return nil, fmt.Errorf("no acknowledgement: %w", mapErr(context.DeadlineExceeded))
	}
}

// ErrTooLarge is returned (wrapped) when an event exceeds the server's
// maximum payload; retrying cannot help.
var ErrTooLarge = errors.New("event larger than the bus accepts")

// publishErr classifies a failed publish. Only an oversized message is
// permanent; anything else (disconnected, closed, no responders, timeout,
// stream unavailable) means the event was not stored and the sender should
// try again.
func publishErr(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// encode puts ev in a message to subject: the envelope in CloudEvents
// headers, the data as the body.
func encode(ev Event, subject string) *nats.Msg {
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	ct := ev.DataContentType
	if ct == "" {
		ct = "application/json"
	}
	h := nats.Header{}
	h.Set(hdrSpecVersion, "1.0")
	h.Set(hdrID, ev.ID)
	h.Set(hdrSource, ev.Source)
	h.Set(hdrType, ev.Type)
	h.Set(hdrTime, t.UTC().Format(time.RFC3339Nano))
	if ev.Subject != "" {
		h.Set(hdrSubject, ev.Subject)
	}
	h.Set(hdrContentType, ct)
	return &nats.Msg{Subject: subject, Header: h, Data: ev.Data}
}

// decode reads an envelope back from a stored message.
func decode(subject string, h nats.Header, data []byte) (Event, error) {
	ev := Event{
		ID:              h.Get(hdrID),
		Source:          h.Get(hdrSource),
		Type:            h.Get(hdrType),
		Subject:         h.Get(hdrSubject),
		DataContentType: h.Get(hdrContentType),
		Data:            data,
	}
	if ts := h.Get(hdrTime); ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return ev, fmt.Errorf("event on %s: bad %s %q: %w", subject, hdrTime, ts, err)
		}
		ev.Time = t
	}
	if err := ev.Validate(); err != nil {
		return ev, fmt.Errorf("event on %s: %w", subject, err)
	}
	return ev, nil
}
