package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamSpec declares a stream by what its owner needs from it. The bus
// adds what every stream shares: the prefix on the name and subjects, file
// storage and the configured replicas.
type StreamSpec struct {
	// Name is the suffix of the stream name, for example "EVENTS"; the
	// full name is the upper-cased prefix, "_" and Name.
	Name string
	// Description says what the stream holds, for operators.
	Description string
	// Subjects the stream captures, relative to the prefix, for example
	// "events.>" and "commands.>".
	Subjects []string
	// MaxAge bounds how long messages are kept; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; 0 is unlimited.
	MaxBytes int64
	// Duplicates is the window in which a repeated message id is
	// recognised and not stored again; 0 is the server default (2 min).
	Duplicates time.Duration
	// WorkQueue removes each message once a consumer acknowledged it
	// (work-queue retention) instead of keeping it until MaxAge or
	// MaxBytes (limits retention).
	WorkQueue bool
	// AllowSchedules lets the stream hold message schedules (see
	// Schedule). The server accepts it only on a stream created with it
	// or still empty, and it cannot be turned off again.
	AllowSchedules bool
}

// BucketSpec declares a key-value bucket by what its owner needs from it.
type BucketSpec struct {
	// Name is the bucket's suffix, for example "incidents"; the bucket is
	// <prefix>_<name>.
	Name string
	// Description says what the bucket holds, for operators.
	Description string
	// History is how many revisions of a key are kept (0 means 1).
	History uint8
	// TTL is how long any value is kept after it was written; 0 keeps
	// values until they are deleted.
	TTL time.Duration
	// KeyTTL lets Create set a time to live on one key (see KeyTTL).
	KeyTTL bool
	// Probe makes Probe (readiness) write to this bucket too. Mark the
	// bucket serving cannot do without (the incident records): every
	// write loads its last block into memory for a while, so probing
	// every bucket would keep them all there.
	Probe bool
}

// keyTTLMarker is how long a bucket with KeyTTL keeps the marker left
// behind when a key expires. Watchers see the expiry through it; the
// value only bounds how long the marker takes space.
const keyTTLMarker = time.Minute

// Suffixes of the streams the bus itself declares.
const (
	streamEvents = "EVENTS"
	streamAudit  = "AUDIT"
)

// EventsStreamSpec is the stream of events from every source and of the
// commands given to the bot (Slack buttons, the CLI): they share one
// stream so one consumer sees them in the order they were accepted.
func EventsStreamSpec(cfg Config) StreamSpec {
	cfg = cfg.withDefaults()
	return StreamSpec{
		Name:        streamEvents,
		Description: "incidentbot events from every source, and commands",
		Subjects:    []string{"events.>", "commands.>", probeSubject},
		MaxAge:      cfg.EventsMaxAge,
		Duplicates:  cfg.DuplicateWindow,
	}
}

// AuditStreamSpec is the stream of audit records (see Audit), bounded by
// age and by size: past either, the oldest records go first.
func AuditStreamSpec(cfg Config) StreamSpec {
	cfg = cfg.withDefaults()
	return StreamSpec{
		Name:        streamAudit,
		Description: "incidentbot audit trail: every decision and effect",
		Subjects:    []string{"audit.>"},
		MaxAge:      cfg.AuditMaxAge,
		MaxBytes:    cfg.AuditMaxBytes,
	}
}

// Subject returns the NATS subject for rel, a subject relative to the
// prefix: Subject("events.x") is "<prefix>.events.x".
func (b *Bus) Subject(rel string) string { return b.names.prefix + "." + rel }

// StreamName returns the full name of the stream whose suffix is suffix:
// StreamName("EVENTS") is "<PREFIX>_EVENTS".
func (b *Bus) StreamName(suffix string) string {
	return strings.ToUpper(b.names.prefix) + "_" + suffix
}

// EnsureStream creates the stream s declares, or updates it to s when it
// exists. It is idempotent, so every replica may call it at start. An
// update the server refuses (a different retention, turning schedules
// off) is an error. While JetStream is unavailable (a cluster still
// forming) it tries again with backoff until ctx ends.
func (b *Bus) EnsureStream(ctx context.Context, s StreamSpec) error {
	_, err := b.ensureStream(ctx, s)
	return err
}

func (b *Bus) ensureStream(ctx context.Context, s StreamSpec) (jetstream.Stream, error) {
	if err := validToken(s.Name); err != nil {
		return nil, fmt.Errorf("ensure stream: name: %w", err)
	}
	name := b.StreamName(s.Name)
	if len(s.Subjects) == 0 {
		return nil, fmt.Errorf("ensure stream %s: no subjects", name)
	}
	subjects := make([]string, len(s.Subjects))
	for i, rel := range s.Subjects {
		if err := validSubject(rel, true); err != nil {
			return nil, fmt.Errorf("ensure stream %s: subject: %w", name, err)
		}
		subjects[i] = b.Subject(rel)
	}
	retention := jetstream.LimitsPolicy
	if s.WorkQueue {
		retention = jetstream.WorkQueuePolicy
	}
	sc := jetstream.StreamConfig{
		Name:        name,
		Description: s.Description,
		Subjects:    subjects,
		// The default (synchronous) persist mode is deliberate: the
		// receiver answers 200 only on the publish ack, and with the
		// embedded server a SIGKILL takes the bus down with the bot, so an
		// async-persisted ack could vouch for an event that is then lost.
		// Async persist measured only ~5% more ingest throughput.
		Storage:           jetstream.FileStorage,
		Retention:         retention,
		MaxAge:            s.MaxAge,
		MaxBytes:          s.MaxBytes,
		Duplicates:        s.Duplicates,
		Replicas:          b.cfg.Replicas,
		AllowMsgSchedules: s.AllowSchedules,
	}
	var st jetstream.Stream
	err := b.retry(ctx, "stream "+name, transientAPI, func(ctx context.Context) error {
		// Create first, update only a stream that exists with another
		// configuration: replicas starting together on a cluster then
		// all create, which the server answers at once (identical
		// configurations succeed). nats.go's CreateOrUpdateStream updates
		// first, and concurrent updates of a replicated stream still
		// being created can go unanswered until the attempt's deadline
		// (seen with nats-server 2.15: every replica waited 10s per
		// stream and bucket; see e2e TestScaleOutCluster).
		var err error
		st, err = b.js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = b.js.UpdateStream(ctx, sc)
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, mapErr(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// EnsureBucket creates the bucket s declares, or updates it to s when it
// exists, and returns it. It is idempotent, so every replica may call it
// at start. While JetStream is unavailable it tries again with backoff
// until ctx ends.
func (b *Bus) EnsureBucket(ctx context.Context, s BucketSpec) (KV, error) {
	if err := validToken(s.Name); err != nil {
		return nil, fmt.Errorf("ensure bucket: name: %w", err)
	}
	name := b.names.bucket(s.Name)
	cfg := jetstream.KeyValueConfig{
		Bucket:      name,
		Description: s.Description,
		History:     s.History,
		TTL:         s.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	}
	if s.KeyTTL {
		cfg.LimitMarkerTTL = keyTTLMarker
	}
	var kv jetstream.KeyValue
	err := b.retry(ctx, "bucket "+name, transientAPI, func(ctx context.Context) error {
		// Create first, as for streams (see ensureStream).
		var err error
		kv, err = b.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = b.js.UpdateKeyValue(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("ensure bucket %s: %w", name, mapErr(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kb := kvBucket{kv: kv, js: b.js}
	b.mu.Lock()
	if s.Probe && !slices.ContainsFunc(b.buckets, func(o kvBucket) bool { return o.kv.Bucket() == name }) {
		b.buckets = append(b.buckets, kb)
	}
	b.mu.Unlock()
	return kb, nil
}

// validSubject checks a subject relative to the prefix: dot-separated
// tokens, none empty, without spaces; wildcards only when allowed (stream
// and filter subjects), never in a subject published to.
func validSubject(rel string, wildcards bool) error {
	if rel == "" {
		return errors.New("empty")
	}
	for rest := rel; ; {
		tok, more, found := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return fmt.Errorf("%q has an empty token", rel)
		case strings.ContainsAny(tok, " \t\r\n"):
			return fmt.Errorf("%q contains white space", rel)
		case tok == "*" && wildcards, tok == ">" && wildcards && !found:
		case strings.ContainsAny(tok, "*>"):
			if wildcards {
				return fmt.Errorf("%q: a wildcard must be a whole token, and > the last", rel)
			}
			return fmt.Errorf("%q must not contain wildcards", rel)
		}
		if !found {
			break
		}
		rest = more
	}
	return nil
}
