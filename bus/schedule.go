package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamTimers is the suffix of the timers stream.
const streamTimers = "TIMERS"

// timersMaxAge is how long the timers stream keeps a message. A schedule
// is a message too: one set further ahead would age out before it fires,
// so Schedule refuses times past scheduleHorizon.
const (
	timersMaxAge    = 30 * 24 * time.Hour
	scheduleHorizon = timersMaxAge - 24*time.Hour
)

// TimersStreamSpec is the stream that holds durable timers: schedules on
// timers.at.<key> and their firings on timers.due.<key>. Its owner
// ensures it with EnsureStream before calling Schedule, and consumes the
// firings with ConsumerConfig{Stream: "TIMERS", FilterSubjects:
// []string{"timers.due.>"}}.
func TimersStreamSpec() StreamSpec {
	return StreamSpec{
		Name:           streamTimers,
		Description:    "incidentbot durable timers: schedules on timers.at.<key>, firings on timers.due.<key>",
		Subjects:       []string{"timers.>"},
		MaxAge:         timersMaxAge,
		AllowSchedules: true,
	}
}

// Schedule sets the timer key to deliver ev at time at, on
// timers.due.<key> of the timers stream; setting a key again replaces its
// time and event. key is one or more subject tokens ("incident.INC-7.ack").
// A time in the past fires at once; a time is rounded up to the whole
// second, and may be at most 29 days ahead. A nil error means the server
// stored the schedule.
//
// Timers are JetStream message schedules (nats-server 2.12 and later,
// ADR-51), chosen over in-process timers or a polled table because:
//
//   - A schedule is a message on timers.at.<key> whose headers tell the
//     server when to fire and where to (timers.due.<key>). It is stored in
//     the stream like any message, so it survives a restart of the bot and
//     of the server, and every replica shares the same schedules; a time
//     that passed while the server was down fires when it is back.
//   - One schedule per key: the server rolls a schedule subject up to its
//     last message, so scheduling a key again replaces it, and purging the
//     subject cancels it.
//   - When it fires, the server stores a copy of the schedule message on
//     timers.due.<key> (every header but the scheduling ones, so the
//     envelope travels unchanged) and removes the schedule. The firing is
//     an ordinary stream message: a durable consumer hands it to one of the
//     replicas consuming it, with the usual acks and redeliveries.
//
// A timer can still reach its handler when it is no longer wanted: a
// cancel or reschedule racing with the firing, a redelivery after a crash
// before the ack. Fencing is the caller's job: keep a token (a generation,
// the deadline itself) in the record the timer is about, put it in the
// scheduled event, and let the handler do nothing when they differ.
//
// The server reads schedule times to the second and runs its scheduler at
// most every 250ms, which is why times are rounded up: a timer never fires
// early, and usually fires within a second after its time.
func (b *Bus) Schedule(ctx context.Context, key string, at time.Time, ev Event) error {
	if err := validSubject(key, false); err != nil {
		return fmt.Errorf("schedule timer: key: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("schedule timer %s: %w", key, err)
	}
	if s := at.Truncate(time.Second); !s.Equal(at) {
		at = s.Add(time.Second)
	}
	if limit := time.Now().Add(scheduleHorizon); at.After(limit) {
		return fmt.Errorf("schedule timer %s at %s: more than %v ahead, past what the timers stream keeps",
			key, at.UTC().Format(time.RFC3339), scheduleHorizon)
	}
	stream := b.StreamName(streamTimers)
	_, err := b.publishMsg(ctx, encode(ev, b.Subject("timers.at."+key)),
		jetstream.WithScheduleAt(at),
		jetstream.WithScheduleTarget(b.Subject("timers.due."+key)),
		jetstream.WithExpectStream(stream))
	if err != nil {
		if errors.Is(err, ErrUnavailable) && b.streamMissing(ctx, stream) {
			return fmt.Errorf("schedule timer %s: stream %s does not exist (ensure TimersStreamSpec first): %w", key, stream, err)
		}
		return fmt.Errorf("schedule timer %s: %w", key, err)
	}
	return nil
}

// CancelSchedule removes the timer key, if it is set; cancelling a timer
// that is not set (or already fired) is not an error. A timer whose firing
// was already stored is still delivered: the handler's fencing token
// makes it harmless.
func (b *Bus) CancelSchedule(ctx context.Context, key string) error {
	if err := validSubject(key, false); err != nil {
		return fmt.Errorf("cancel timer: key: %w", err)
	}
	stream := b.StreamName(streamTimers)
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("cancel timer %s: open stream %s: %w", key, stream, mapErr(err))
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(b.Subject("timers.at."+key))); err != nil {
		return fmt.Errorf("cancel timer %s: %w", key, mapErr(err))
	}
	return nil
}

// streamMissing tells a publish that found no stream from a bus that is
// down: both look like "no responders".
func (b *Bus) streamMissing(ctx context.Context, stream string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, err := b.js.Stream(ctx, stream)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}
