package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/sleep"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/redact"
)

// Deliveries are reconciled from jobs on a work-queue stream, one consumer
// per sink: after a change of state the input handler queues "bring chat
// in line with incident K" and "bring the pager in line with incident K",
// each deduplicated by the incident id and record version. A sink's worker retries on its
// own schedule (NakWithDelay), so Slack being down delays no page and holds
// no input shard, and a crash anywhere leaves the job to be redelivered.

// DeliveriesStream is the job stream the engine owns.
var DeliveriesStream = bus.StreamSpec{
	Name:        "DELIVERIES",
	Description: "incidentbot delivery jobs: bring a sink in line with an incident",
	Subjects:    []string{"deliver.>"},
	WorkQueue:   true,
	Duplicates:  2 * time.Minute,
	MaxAge:      7 * 24 * time.Hour,
}

// Streams are the streams the engine owns: its delivery jobs and the
// timers it schedules.
var Streams = []bus.StreamSpec{DeliveriesStream, bus.TimersStreamSpec()}

// Sinks, as named in job subjects, delivery keys and metrics.
const (
	SinkChat    = "chat"
	SinkPager   = "pager"
	SinkSilence = "silence"
)

// JobSubject is the subject of a sink's delivery jobs, relative to the bus
// prefix; each sink's consumer filters on it.
func JobSubject(sink string) string { return "deliver." + sink }

const jobEventType = "engine.deliver"

func (e *Engine) queueDeliveries(ctx context.Context, r *Record) error {
	sinks := []string{SinkChat, SinkPager}
	if r.Silence != nil {
		sinks = append(sinks, SinkSilence) // only incidents someone silenced
	}
	for _, sink := range sinks {
		ev := bus.Event{ID: sink + "." + r.ID + "." + strconv.FormatInt(r.Version, 10), Source: "engine", Type: jobEventType,
			Time: e.now(), Subject: r.Key, Data: []byte(r.Key)}
		if _, err := e.pub.PublishTo(ctx, JobSubject(sink), ev); err != nil {
			return fmt.Errorf("queue %s delivery of %s: %w", sink, r.ID, err)
		}
	}
	return nil
}

// Delivery is what one sink was sent for one incident, stored under
// "<sink>.<incident id>" in the deliveries bucket. Only that sink's worker
// writes it, under a lease, so it never contends with changes of state.
type Delivery struct {
	// Lease is held only while a call to the sink is in flight, and for no
	// longer than the effect timeout plus LeaseMargin: a worker that dies
	// mid-call blocks the sink for this incident until Until at most.
	Lease *Lease `json:"lease,omitempty"`
	// Failed holds a permanent delivery error (e.g. channel_not_found).
	Failed string `json:"failed,omitempty"`

	// Chat: where the card is, which version it shows, the last timeline
	// entry replied in its thread.
	Channel     string `json:"channel,omitempty"`
	TS          string `json:"ts,omitempty"`
	CardVersion int64  `json:"card_version,omitempty"`
	RepliedSeq  int64  `json:"replied_seq,omitempty"`
	// PostedAt is when the card was posted (or found after an interrupted
	// post), for reports.
	PostedAt time.Time `json:"posted_at,omitzero"`
	// Storm is set when the incident is listed on its channel's storm
	// card (see storm.go) instead of having a card: the storm's id, and
	// the channel as routed. StormGen is the storm's generation that
	// lists the incident as of CardVersion; StormDone the generation the
	// card was seen to show, or handed on to a later change to draw.
	// Thread replies of a listed incident are not posted (the people an
	// escalation level mentions are, in the storm card's thread).
	Storm        string `json:"storm,omitempty"`
	StormChannel string `json:"storm_channel,omitempty"`
	StormGen     int64  `json:"storm_gen,omitempty"`
	StormDone    int64  `json:"storm_done,omitempty"`

	// Pager: the last page action delivered ("", trigger, acknowledge,
	// resolve) and the routing key it went to, by its reference name
	// (never the key).
	State      notify.PageAction `json:"state,omitempty"`
	RoutingKey string            `json:"routing_key,omitempty"`
	// Levels holds the pages of escalation levels that page on their own,
	// by level index.
	Levels map[string]LevelPage `json:"levels,omitempty"`
	// PagedAt is when the page was first triggered, for reports.
	PagedAt time.Time `json:"paged_at,omitzero"`

	// Silence: Alertmanager's id of the silence made for wish SilenceGen,
	// the end it holds, and whether it was expired.
	SilenceID      string    `json:"silence_id,omitempty"`
	SilenceGen     int       `json:"silence_gen,omitempty"`
	SilenceUntil   time.Time `json:"silence_until,omitzero"`
	SilenceExpired bool      `json:"silence_expired,omitempty"`
}

// Lease is a claim on a sink call for one incident. Nonce identifies the
// attempt; for a card post it is also written into the card's metadata, so
// an attempt whose outcome is unknown can be found again.
type Lease struct {
	Op    string    `json:"op"`
	Nonce string    `json:"nonce"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// ChatDelivery is the chat delivery as stored by releases before the
// split of state and deliveries (inline in the record).
type ChatDelivery struct {
	Channel     string `json:"channel,omitempty"`
	TS          string `json:"ts,omitempty"`
	CardVersion int64  `json:"card_version"`
	RepliedSeq  int64  `json:"replied_seq"`
	Failed      string `json:"failed,omitempty"`
}

// PageDelivery is the pager delivery as stored before the split.
type PageDelivery struct {
	State  notify.PageAction `json:"state,omitempty"`
	Failed string            `json:"failed,omitempty"`
}

func deliveryKey(sink, id string) string { return sink + "." + id }

// loadDelivery reads a sink's delivery of an incident; a missing one is
// seeded from what an older release recorded inline, if anything.
func (e *Engine) loadDelivery(ctx context.Context, sink string, r *Record) (*Delivery, uint64, error) {
	ent, err := e.deliveries.Get(ctx, deliveryKey(sink, r.ID))
	if errors.Is(err, bus.ErrKeyNotFound) {
		d := &Delivery{}
		switch {
		case sink == SinkChat && r.LegacySlack != nil:
			l := r.LegacySlack
			d.Channel, d.TS, d.CardVersion, d.RepliedSeq, d.Failed = l.Channel, l.TS, l.CardVersion, l.RepliedSeq, l.Failed
		case sink == SinkPager && r.LegacyPage != nil:
			d.State, d.Failed = r.LegacyPage.State, r.LegacyPage.Failed
		}
		return d, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load %s delivery of %s: %w", sink, r.ID, err)
	}
	var d Delivery
	if err := json.Unmarshal(ent.Value, &d); err != nil {
		return nil, 0, fmt.Errorf("decode %s delivery of %s: %w", sink, r.ID, err)
	}
	return &d, ent.Revision, nil
}

// storeDelivery writes with compare-and-set and returns the new revision.
func (e *Engine) storeDelivery(ctx context.Context, sink, id string, d *Delivery, rev uint64) (uint64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("encode %s delivery of %s: %w", sink, id, err)
	}
	var nrev uint64
	if rev == 0 {
		nrev, err = e.deliveries.Create(ctx, deliveryKey(sink, id), b)
	} else {
		nrev, err = e.deliveries.Update(ctx, deliveryKey(sink, id), b, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("record %s delivery of %s: %w", sink, id, err)
	}
	return nrev, nil
}

// LeaseMargin is how long a sink lease, and a delivery job's ack wait,
// outlast the effect timeout that bounds the call: time to record the
// answer of a call that ran to its deadline, and for the sink to finish a
// request its client gave up on (a later worker looks for the card before
// posting again anyway). It is kept short because it is also the head
// start a dead holder keeps: after kill -9 mid-call the job comes back, and
// the lease ends, EffectTimeout+LeaseMargin after the call began, and the
// card must be out within 20 s of a restart.
const LeaseMargin = 2 * time.Second

// errLeased means another worker holds the sink for this incident now.
var errLeased = errors.New("another worker is delivering to this sink for this incident")

// acquire takes the lease for op on d (read at rev). A live lease of
// another worker is a retry after it ends; an expired one means its holder
// died mid-call, and is taken over (the caller decides what the unknown
// outcome means).
func (e *Engine) acquire(ctx context.Context, sink, id, op string, d *Delivery, rev uint64) (*Lease, uint64, error) {
	now := e.now()
	if l := d.Lease; l != nil && now.Before(l.Until) {
		return nil, 0, bus.Later(errLeased, l.Until.Sub(now)+100*time.Millisecond)
	}
	l := &Lease{Op: op, Nonce: nonce(), Since: now, Until: now.Add(e.cfg.EffectTimeout + LeaseMargin)}
	next := *d
	next.Lease = l
	nrev, err := e.storeDelivery(ctx, sink, id, &next, rev)
	if err != nil {
		return nil, 0, err
	}
	*d = next
	return l, nrev, nil
}

// settleDelivery records the outcome of a call made under lease l: f
// changes the delivery, and the lease is dropped. The call happened, so it
// is recorded whatever else changed (retrying on conflicts), and through a
// short bus outage too (a NATS node failing over under the connection):
// a record given up on leaves the lease to expire, and the job's next
// attempt repeats the call.
func (e *Engine) settleDelivery(ctx context.Context, sink string, r *Record, d *Delivery, rev uint64, l *Lease, f func(*Delivery)) error {
	// The outage is waited out in real time (the sleeps are real), for as
	// long as the lease has left by the engine's clock.
	outage := settleBackoff{until: time.Now().Add(max(l.Until.Sub(e.now()), settleOutageMin))}
	for conflicts := 0; conflicts < 10; {
		next := *d
		if next.Lease != nil && next.Lease.Nonce == l.Nonce {
			next.Lease = nil
		}
		f(&next)
		_, err := e.storeDelivery(ctx, sink, r.ID, &next, rev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, bus.ErrUnavailable):
			if outage.delay == 0 {
				e.log.Warn("recording a delivery waits for the bus", "sink", sink, "incident", r.ID, "err", err)
			}
			if !outage.wait(ctx) {
				return err
			}
		case errors.Is(err, bus.ErrRevisionMismatch), errors.Is(err, bus.ErrKeyExists):
			conflicts++
		default:
			return err
		}
		// Reload and apply f again (it is idempotent): the write may also
		// have landed before the outage hid its answer.
		var lerr error
		for {
			if d, rev, lerr = e.loadDelivery(ctx, sink, r); !errors.Is(lerr, bus.ErrUnavailable) || !outage.wait(ctx) {
				break
			}
		}
		if lerr != nil {
			return lerr
		}
	}
	return fmt.Errorf("record %s delivery of %s: too many concurrent changes", sink, r.ID)
}

// settleOutageMin is the least time settleDelivery waits out a bus outage,
// even under a lease about to end: a client's failover to another node of
// the cluster takes a few hundred milliseconds.
const settleOutageMin = 5 * time.Second

// settleBackoff paces retries through a bus outage until a deadline.
type settleBackoff struct {
	until time.Time
	delay time.Duration
}

// wait sleeps before the next try; false when the deadline or ctx ends.
func (b *settleBackoff) wait(ctx context.Context) bool {
	b.delay = min(max(2*b.delay, 50*time.Millisecond), time.Second)
	if !time.Now().Add(b.delay).Before(b.until) {
		return false
	}
	return sleep.For(ctx, b.delay)
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jobKey reads the incident key a delivery job carries.
func jobKey(d *bus.Delivery) (string, error) {
	if d.Event.Type != jobEventType || len(d.Event.Data) == 0 {
		return "", bus.Poison(fmt.Errorf("not a delivery job: %s", d.Event.Type))
	}
	return string(d.Event.Data), nil
}

// failed handles a failed sink call: a retryable failure asks for a
// redelivery (no later than RetryMax); a permanent one is recorded so it
// is not retried forever, and audited.
func (e *Engine) failed(ctx context.Context, sink string, r *Record, d *Delivery, rev uint64, l *Lease, err error) error {
	if notify.IsRetryable(err) {
		_ = e.settleDelivery(ctx, sink, r, d, rev, l, func(d *Delivery) {
			if l.Op == "post" && !errors.Is(err, notify.ErrNotSent) {
				// A failed post may still have reached the chat (a
				// timeout after Slack took it): leave the lease, expired,
				// so the next attempt looks for the card first. A post
				// handed back unsent (it would have waited for its
				// channel past its deadline) cannot have.
				expired := *l
				expired.Until = e.now()
				d.Lease = &expired
			}
		})
		return retryAfter(err, e.cfg.RetryMax)
	}
	e.log.Error(sink+" delivery failed permanently", "incident", r.ID, "err", err)
	why := redact.Error(err).Error() // stored: no URL's secret in it
	e.auditf(ctx, bus.AuditRecord{Kind: "notify." + sink + ".failed", Incident: r.ID, Detail: why})
	return e.settleDelivery(ctx, sink, r, d, rev, l, func(d *Delivery) { d.Failed = why })
}

// call runs one sink call with its own deadline and records metrics.
func (e *Engine) call(ctx context.Context, sink, op string, r *Record, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.EffectTimeout)
	defer cancel()
	start := e.now()
	err := f(ctx)
	result := "ok"
	if err != nil {
		result = "error"
		e.log.Warn("notification failed", "sink", sink, "op", op, "incident", r.ID, "err", err)
	}
	e.m.notifications.WithLabelValues(sink, op, result).Inc()
	e.m.notifyLatency.WithLabelValues(sink, op).Observe(e.now().Sub(start).Seconds())
	return err
}

// observeLag records how long after its job was queued a sink caught up.
func (e *Engine) observeLag(sink string, d *bus.Delivery) {
	if !d.Event.Time.IsZero() {
		e.m.deliveryLag.WithLabelValues(sink).Observe(e.now().Sub(d.Event.Time).Seconds())
	}
}
