package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one event handed to a consumer, with the controls a long
// handler needs.
type Delivery struct {
	// Event is the envelope as it was published (or scheduled).
	Event Event
	// Subject is the NATS subject the message was stored on, relative to
	// the prefix: "events.<type>", "commands.…", "timers.due.<key>".
	Subject string
	// Attempt counts deliveries of this event, from 1.
	Attempt uint64
	// Last is true when this is the final attempt MaxDeliver allows.
	Last bool
	msg  jetstream.Msg
}

// InProgress tells the bus the handler is still working, resetting the ack
// timer. Call it during long work.
func (d *Delivery) InProgress() error {
	if d.msg == nil {
		return nil
	}
	return d.msg.InProgress()
}

// Handler processes one delivery. Its result decides what the bus does:
// nil acknowledges; an error from Retry asks for redelivery after its
// delay; an error from Poison (or an event that cannot be decoded)
// terminates the message for good; any other error is retried with
// backoff until MaxDeliver, then terminated.
type Handler func(ctx context.Context, d *Delivery) error

type retryError struct {
	err     error
	delay   time.Duration
	planned bool // Later: a wait, not a failure
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retry marks err as transient: redeliver after delay.
func Retry(err error, delay time.Duration) error { return &retryError{err: err, delay: delay} }

// Later asks for redelivery after delay as a planned wait, not a failure:
// another worker holds the work for now, or the work is paced. why says
// what it waits for. It is logged at debug level, where Retry warns: an
// alert storm makes thousands of these.
func Later(why error, delay time.Duration) error {
	return &retryError{err: why, delay: delay, planned: true}
}

type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

// Poison marks err as permanent: the event will never succeed.
func Poison(err error) error { return &poisonError{err: err} }

// IsPoison reports whether err was marked with Poison.
func IsPoison(err error) bool {
	var p *poisonError
	return errors.As(err, &p)
}

// ConsumerConfig configures a durable consumer of one stream.
type ConsumerConfig struct {
	// Stream is the suffix of the stream to consume (see StreamName);
	// empty is "EVENTS".
	Stream string
	// Durable is the consumer name shared by every replica.
	Durable string
	// FilterSubjects limits the consumer to these subjects, relative to
	// the prefix (for example "events.>" or "timers.due.>"); empty means
	// the whole stream.
	FilterSubjects []string
	// MaxDeliver bounds redeliveries (default 10); -1 never gives up, for
	// work that must happen however long its target is down.
	MaxDeliver int
	// AckWait is how long the server waits for an ack before redelivering
	// (default 30s). Handlers doing longer work call InProgress.
	AckWait time.Duration
	// MaxBackoff caps the delay before an event whose handler failed is
	// redelivered (default 1 minute; see Backoff). A delay asked for with
	// Retry is not capped.
	MaxBackoff time.Duration
	// Shards is how many events are handled at once. Events with the same
	// shard key always go to the same shard, so they are handled in order
	// within this process (default 4).
	Shards int
	// ShardKey returns the shard key of an event; nil keys on the event's
	// Subject.
	ShardKey func(Event) string
	// OnTerminate is called when an event is given up on (poison or out of
	// attempts), so it can be audited.
	OnTerminate func(ctx context.Context, ev Event, reason error)
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Stream == "" {
		c.Stream = streamEvents
	}
	if c.Stream == streamEvents && len(c.FilterSubjects) == 0 {
		// Everything but the store probes (see Probe).
		c.FilterSubjects = []string{"events.>", "commands.>"}
	}
	if c.MaxDeliver == 0 || c.MaxDeliver < -1 {
		c.MaxDeliver = 10
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	if c.Shards <= 0 {
		c.Shards = 4
	}
	if c.ShardKey == nil {
		c.ShardKey = func(ev Event) string { return ev.Subject }
	}
	return c
}

const defaultMaxBackoff = time.Minute

// Backoff is the redelivery delay after a failed attempt n (from 1):
// 1s, 2s, 4s ... capped at 1 minute, the default MaxBackoff.
func Backoff(attempt uint64) time.Duration { return backoff(attempt, defaultMaxBackoff) }

// backoff doubles from 1s per attempt up to limit.
func backoff(attempt uint64, limit time.Duration) time.Duration {
	d := time.Second
	for i := uint64(1); i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// inbound is a message read from the consumer and decoded once, before it
// is given to its shard.
type inbound struct {
	msg jetstream.Msg
	ev  Event
	err error // decoding failed: the message is poison
}

// Consume runs handler over a stream (cfg.Stream, the events stream by
// default) until ctx is done, then finishes the deliveries in hand and
// returns nil. Several processes may run the same durable consumer; each
// message goes to one of them.
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, handler Handler) error {
	cfg = cfg.withDefaults()
	if cfg.Durable == "" {
		return errors.New("consume: durable name is empty")
	}
	if err := validToken(cfg.Stream); err != nil {
		return fmt.Errorf("consume %s: stream: %w", cfg.Durable, err)
	}
	filters := make([]string, len(cfg.FilterSubjects))
	for i, rel := range cfg.FilterSubjects {
		if err := validSubject(rel, true); err != nil {
			return fmt.Errorf("consume %s: filter subject: %w", cfg.Durable, err)
		}
		filters[i] = b.Subject(rel)
	}
	stream := b.StreamName(cfg.Stream)
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, consumerConfig(cfg, filters))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: not a failure
		}
		return fmt.Errorf("create consumer %s on %s: %w", cfg.Durable, stream, mapErr(err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cfg.Durable, mapErr(err))
	}
	shards := make([]chan inbound, cfg.Shards)
	var wg sync.WaitGroup
	// Handlers get a context that outlives ctx briefly so a SIGTERM lets
	// in-flight work finish (drain) instead of cutting it mid-effect.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	for i := range shards {
		shards[i] = make(chan inbound, 16)
		wg.Add(1)
		go func(in <-chan inbound) {
			defer wg.Done()
			for m := range in {
				b.handle(work, cfg, m, handler)
			}
		}(shards[i])
	}
	var itMu sync.Mutex // it is replaced when it fails
	go func() {
		<-ctx.Done()
		itMu.Lock()
		it.Drain()
		itMu.Unlock()
	}()
	delay := time.Duration(0)
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// The server went quiet (its node died, a leader moved):
				// the iterator asks again by itself. Stopping here would
				// leave this replica taking webhooks and never handling
				// them (seen in TestScaleOutCluster after a node kill).
				b.log.Warn("consume: missed heartbeats; pulling again", "consumer", cfg.Durable)
				continue
			}
			// Anything else ends this iterator: open a new one (on the same
			// durable consumer, made again if it was lost) until ctx ends.
			b.log.Error("consume: next message; reopening", "consumer", cfg.Durable, "err", err)
			delay = min(max(2*delay, 100*time.Millisecond), 5*time.Second)
			next, err := b.reopen(ctx, stream, cfg, filters, delay)
			if err != nil {
				break // ctx ended
			}
			itMu.Lock()
			it.Stop()
			it = next
			itMu.Unlock()
			if ctx.Err() != nil {
				it.Drain() // ctx ended while reopening: the drain above saw the old one
			}
			continue
		}
		delay = 0
		in := inbound{msg: m}
		in.ev, in.err = decode(m.Subject(), m.Headers(), m.Data())
		key := in.ev.Subject
		if in.err == nil {
			key = cfg.ShardKey(in.ev)
		}
		shards[shardOf(key, len(shards))] <- in
	}
	for _, s := range shards {
		close(s)
	}
	wg.Wait()
	return nil
}

func shardOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

func (b *Bus) handle(ctx context.Context, cfg ConsumerConfig, in inbound, handler Handler) {
	m, ev := in.msg, in.ev
	md, err := m.Metadata()
	attempt := uint64(1)
	if err == nil {
		attempt = md.NumDelivered
	}
	if in.err != nil {
		b.terminate(ctx, cfg, m, ev, Poison(in.err))
		return
	}
	d := &Delivery{
		Event:   ev,
		Subject: strings.TrimPrefix(m.Subject(), b.names.prefix+"."),
		Attempt: attempt,
		Last:    cfg.MaxDeliver > 0 && attempt >= uint64(cfg.MaxDeliver),
		msg:     m,
	}
	herr := handler(ctx, d)
	var re *retryError
	switch {
	case herr == nil:
		if err := m.DoubleAck(ctx); err != nil {
			b.log.Warn("ack failed; the event will be redelivered", "event", ev.ID, "err", err)
		}
	case IsPoison(herr), d.Last:
		b.terminate(ctx, cfg, m, ev, herr)
	case errors.As(herr, &re):
		level := slog.LevelWarn
		if re.planned {
			level = slog.LevelDebug
		}
		b.log.Log(ctx, level, "event will be retried", "event", ev.ID, "type", ev.Type, "attempt", attempt, "delay", re.delay, "err", herr)
		_ = m.NakWithDelay(re.delay)
	default:
		delay := backoff(attempt, cfg.MaxBackoff)
		b.log.Warn("event failed; will be retried", "event", ev.ID, "type", ev.Type, "attempt", attempt, "delay", delay, "err", herr)
		_ = m.NakWithDelay(delay)
	}
}

func (b *Bus) terminate(ctx context.Context, cfg ConsumerConfig, m jetstream.Msg, ev Event, reason error) {
	b.log.Error("event given up", "event", ev.ID, "type", ev.Type, "err", reason)
	if err := m.TermWithReason(truncate(reason.Error(), 200)); err != nil {
		b.log.Warn("term failed", "event", ev.ID, "err", err)
	}
	if cfg.OnTerminate != nil {
		cfg.OnTerminate(ctx, ev, reason)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Pending counts what a durable consumer has not finished: messages not
// yet delivered plus those delivered and not acknowledged (in flight or
// waiting for a redelivery). Tests and the CLI use it to see a consumer idle.
func (b *Bus) Pending(ctx context.Context, stream, durable string) (int, error) {
	c, err := b.js.Consumer(ctx, b.StreamName(stream), durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("consumer %s: %w", durable, mapErr(err))
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s info: %w", durable, mapErr(err))
	}
	return int(info.NumPending) + info.NumAckPending, nil
}

// consumerConfig is the durable consumer behind cfg.
func consumerConfig(cfg ConsumerConfig, filters []string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  1024,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// reopen waits delay, then makes the durable consumer again (a no-op
// when it exists) and opens a new iterator on it, trying until ctx ends.
func (b *Bus) reopen(ctx context.Context, stream string, cfg ConsumerConfig, filters []string, delay time.Duration) (jetstream.MessagesContext, error) {
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, consumerConfig(cfg, filters))
		if err == nil {
			var it jetstream.MessagesContext
			if it, err = cons.Messages(jetstream.PullMaxMessages(64)); err == nil {
				b.log.Info("consume: reopened", "consumer", cfg.Durable)
				return it, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b.log.Warn("consume: reopen failed; trying again", "consumer", cfg.Durable, "err", err)
		delay = min(2*delay, 5*time.Second)
	}
}
