package bus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/internal/ratelog"
)

// Starting on a young cluster: NATS may be down when the bot starts, or up
// with JetStream still electing its leaders. Open, EnsureStream and
// EnsureBucket then try again with backoff until their context ends,
// instead of failing on the first timeout; what fails for good (wrong
// credentials, a configuration the server refuses) still fails at once.
const (
	// attemptTimeout bounds one attempt to create or update a stream or
	// a bucket.
	attemptTimeout = 10 * time.Second
	// firstRetry and maxRetry bound the backoff between attempts.
	firstRetry = 250 * time.Millisecond
	maxRetry   = 5 * time.Second
	// waitLogEvery is how often the log says what is still awaited.
	waitLogEvery = 5 * time.Second
)

// Wait says what the bus is waiting for while it starts.
type Wait struct {
	// What is awaited: "NATS at nats://nats:4222", "stream INCIDENTBOT_EVENTS".
	What string
	// Err is the last attempt's error.
	Err error
	// Since is when the wait began; Attempts counts the failed attempts.
	Since    time.Time
	Attempts int
}

// String describes the wait for a readiness probe.
func (w Wait) String() string {
	return fmt.Sprintf("waiting for %s since %s (%d attempts): %v", w.What, w.Since.UTC().Format(time.RFC3339), w.Attempts, w.Err)
}

// Option changes how Open starts the bus.
type Option func(*Bus)

// OnWait calls f after every failed attempt that will be tried again,
// while connecting and while streams and buckets are ensured, so a
// readiness probe can say what the bot waits for.
func OnWait(f func(Wait)) Option { return func(b *Bus) { b.onWait = f } }

// retry runs attempt, each time under its own deadline, until it succeeds,
// fails with an error transient does not accept, or ctx ends. Between
// attempts it backs off and says what it waits for: in the log (at most a
// line every few seconds) and to OnWait.
func (b *Bus) retry(ctx context.Context, what string, transient func(error) bool, attempt func(context.Context) error) error {
	start := time.Now()
	delay := firstRetry
	wlog := ratelog.New(b.log, slog.LevelWarn, waitLogEvery)
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		switch {
		case err == nil:
			if n > 1 {
				b.log.Info("ready: "+what, "waited", time.Since(start).Round(time.Millisecond), "attempts", n)
			}
			return nil
		case ctx.Err() != nil:
			return giveUp(ctx, what, start, n, err)
		case !transient(err):
			return err
		}
		w := Wait{What: what, Err: err, Since: start, Attempts: n}
		wlog.Log(ctx, "waiting for "+what, "err", err, "attempts", n, "waiting", time.Since(start).Round(time.Second).String())
		if b.onWait != nil {
			b.onWait(w)
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(ctx, what, start, n, err)
		case <-t.C:
		}
		delay = min(2*delay, maxRetry)
	}
}

// giveUp is the error of a wait that its context ended: it says what was
// awaited, for how long, and the last attempt's error.
func giveUp(ctx context.Context, what string, start time.Time, attempts int, last error) error {
	cause := ""
	if c := context.Cause(ctx); c != nil && c != ctx.Err() {
		cause = " (" + c.Error() + ")" // "interrupt signal received"
	}
	return fmt.Errorf("gave up waiting for %s after %s (%d attempts)%s: %w; last error: %w",
		what, time.Since(start).Round(time.Millisecond), attempts, cause, ctx.Err(), last)
}

// transientConnect reports whether a failed connection may succeed later:
// any failure but refused credentials and an unusable URL or credentials
// file.
func transientConnect(err error) bool {
	var ue *url.Error
	var pe *fs.PathError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrBadTimeout), errors.As(err, &ue), errors.As(err, &pe):
		return false
	}
	return true
}

// youngClusterCodes are JetStream API errors of a cluster that is still
// forming: no meta leader yet, peers not yet joined.
var youngClusterCodes = map[jetstream.ErrorCode]bool{
	10005: true, // JSClusterNoPeersErrF: no suitable peers for placement
	10006: true, // JSClusterNotActiveErr: not in clustered mode (yet)
	10007: true, // JSClusterNotAssignedErr
	10009: true, // JSClusterNotLeaderErr
}

// transientAPI reports whether a failed stream or bucket request may
// succeed later: the server did not answer in time or not at all, or
// answered that JetStream is not available yet (503) or its cluster is
// still forming. A configuration the server refuses is not.
func transientAPI(err error) bool {
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return ae.Code == 503 || youngClusterCodes[ae.ErrorCode]
	}
	return false
}
