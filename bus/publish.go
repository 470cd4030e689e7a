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

// Publish stores ev on the events stream with its ID as the JetStream
// message id, and returns once the server acknowledged it. A bus that
// cannot acknowledge yields an error wrapping ErrUnavailable.
func (b *Bus) Publish(ctx context.Context, ev Event) (PublishResult, error) {
	if err := ev.Validate(); err != nil {
		return PublishResult{}, fmt.Errorf("publish event: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.PublishTimeout)
		defer cancel()
	}
	msg := encode(ev, b.names.prefix)
	// Asynchronous publish with the acknowledgement awaited here: callers
	// still get "stored or error", while concurrent publishes pipeline on
	// the one connection instead of each paying a request round trip.
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(b.StreamName(streamEvents)))
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, publishErr(err))
	}
	select {
	case ack := <-f.Ok():
		return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-f.Err():
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, publishErr(err))
	case <-ctx.Done():
		return PublishResult{}, fmt.Errorf("publish %s %s: no acknowledgement: %w", ev.Type, ev.ID, mapErr(ctx.Err()))
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

func encode(ev Event, prefix string) *nats.Msg {
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
	return &nats.Msg{Subject: ev.SubjectName(prefix), Header: h, Data: ev.Data}
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
