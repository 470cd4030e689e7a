// Package bus is incidentbot's event bus: NATS JetStream, embedded in the
// process by default or an external cluster by URL. Sources publish events
// here; the engine consumes them. Owners declare their streams and
// buckets (EnsureStream, EnsureBucket); the bus also keeps durable timers
// (Schedule) and revisioned state (KV). Callers see the Event envelope and
// small interfaces, never nats types.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event is the envelope every source publishes. Its field names follow
// CloudEvents 1.0; on the wire the envelope travels as NATS headers
// (CloudEvents "binary content mode") and Data is the message body, so a
// source can publish the bytes it received without re-encoding them.
type Event struct {
	// ID identifies the event for deduplication: two publishes with the
	// same ID within the stream's duplicate window store one message.
	ID string
	// Source names the producer, for example "alertmanager" or "solana".
	Source string
	// Type is "<source>.<kind>", for example "alertmanager.notification"
	// or "solana.rpc.unhealthy"; it must begin with Source and a dot.
	Type string
	// Time is when the event happened (or was received).
	Time time.Time
	// Subject is what the event is about: the Alertmanager group key, an
	// RPC endpoint name, a program id. The engine keys incidents on it.
	Subject string
	// DataContentType is the media type of Data; "application/json" when empty.
	DataContentType string
	// Data is the payload, whose shape depends on Type.
	Data []byte
}

// Validate reports whether the envelope has what the bus needs to route and
// deduplicate it.
func (e Event) Validate() error {
	var errs []error
	if e.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	if err := validToken(e.Source); err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	}
	if e.Type == "" {
		errs = append(errs, errors.New("type is empty"))
	} else if strings.ContainsAny(e.Type, " \t\r\n*>") || strings.Contains(e.Type, "..") || strings.HasSuffix(e.Type, ".") {
		errs = append(errs, fmt.Errorf("type %q: must be dot-separated tokens without spaces or wildcards", e.Type))
	} else if !strings.HasPrefix(e.Type, e.Source+".") {
		errs = append(errs, fmt.Errorf("type %q: must begin with the source %q and a dot", e.Type, e.Source))
	}
	return errors.Join(errs...)
}

// SubjectName is the NATS subject the event is published on:
// <prefix>.events.<type>, that is <prefix>.events.<source>.<kind>.
func (e Event) SubjectName(prefix string) string {
	return prefix + ".events." + e.Type
}

func validToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(s, ". \t\r\n*>") {
		return fmt.Errorf("%q must be one subject token (no dots, spaces or wildcards)", s)
	}
	return nil
}

// PublishResult is what the bus acknowledged for one publish.
type PublishResult struct {
	// Stream is the stream that stored the event.
	Stream string
	// Sequence is the stream sequence of the stored message.
	Sequence uint64
	// Duplicate is true when an event with the same ID was already stored
	// within the duplicate window; nothing new was stored.
	Duplicate bool
}

// Publisher publishes events durably: a nil error means the bus
// acknowledged the event (stored it, or recognised it as a duplicate).
type Publisher interface {
	Publish(ctx context.Context, ev Event) (PublishResult, error)
}

// ErrUnavailable is returned (wrapped) when the bus cannot accept or
// acknowledge a publish right now. It is transient: callers should ask
// their sender to retry (HTTP 503).
var ErrUnavailable = errors.New("bus unavailable")
