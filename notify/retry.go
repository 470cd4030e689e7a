package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how a sink retries one delivery: a few attempts with
// exponential backoff and jitter, a server's Retry-After honoured, and never
// past the context's deadline. When it gives up it returns a *Error with
// Retryable set, so the engine can redeliver later (e.g. NakWithDelay).
//
// The zero value makes a single attempt. Sleep, Rand and Now are injectable
// so tests never sleep for real.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included.
	// Values below 1 mean 1.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; it doubles for
	// each further attempt, up to MaxDelay.
	BaseDelay time.Duration
	// MaxDelay caps the computed backoff (not a server's Retry-After).
	MaxDelay time.Duration

	// Sleep waits for d or until ctx is done; nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error `json:"-"`
	// Rand returns a number in [0, 1) for jitter; nil uses math/rand/v2.
	Rand func() float64 `json:"-"`
	// Now returns the current time, compared with the context's deadline;
	// nil uses time.Now.
	Now func() time.Time `json:"-"`
	// OnRetry, when set, is called before each wait with the attempt that
	// just failed (from 1), the delay and the error. Sinks use it to log.
	OnRetry func(attempt int, delay time.Duration, err error) `json:"-"`
}

// DefaultRetryPolicy returns four attempts with a backoff of about 0.5 s,
// 1 s and 2 s between them (capped at 30 s), the policy both sinks start
// from.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, BaseDelay: 500 * time.Millisecond, MaxDelay: 30 * time.Second}
}

// Backoff returns the delay before attempt+1 after attempt (from 1) failed,
// without a server's Retry-After: BaseDelay·2^(attempt-1), capped at
// MaxDelay, with "equal jitter" (half fixed, half random).
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	if p.BaseDelay <= 0 || attempt < 1 {
		return 0
	}
	d := p.BaseDelay
	for i := 1; i < attempt && (p.MaxDelay <= 0 || d < p.MaxDelay); i++ {
		d *= 2
	}
	if p.MaxDelay > 0 && d > p.MaxDelay {
		d = p.MaxDelay
	}
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}

// Do runs fn until it succeeds, fails permanently, runs out of attempts or
// would outlive ctx. op names the operation for errors ("slack
// chat.postMessage"). fn reports failures as *Error (Retryable and
// RetryAfter are honoured); any other error is classified by IsRetryable.
//
// The returned error is nil or a *Error: permanent failures are returned
// as they came, exhausted retries are wrapped with Retryable set and the
// last RetryAfter, so that the caller can redeliver later.
func (p RetryPolicy) Do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	attempts := max(p.MaxAttempts, 1)
	sleep := p.Sleep
	if sleep == nil {
		sleep = SleepContext
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}

	var last *Error
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		last = asError(op, err)
		if !last.Retryable {
			return last
		}
		if ctx.Err() != nil {
			return giveUp(op, attempt, last, ctx.Err())
		}
		if attempt >= attempts {
			return giveUp(op, attempt, last, nil)
		}

		delay := p.Backoff(attempt)
		if last.RetryAfter > 0 {
			delay = last.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && !now().Add(delay).Before(dl) {
			// Waiting would outlive the caller: hand the retry back.
			out := giveUp(op, attempt, last, context.DeadlineExceeded)
			out.RetryAfter = delay
			return out
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, delay, last)
		}
		if err := sleep(ctx, delay); err != nil {
			return giveUp(op, attempt, last, err)
		}
	}
}

// asError turns any failure of op into a *Error, keeping one that is
// already there.
func asError(op string, err error) *Error {
	var ne *Error
	if errors.As(err, &ne) {
		if ne.Op == "" {
			cp := *ne // do not mutate the caller's error
			cp.Op = op
			return &cp
		}
		return ne
	}
	return &Error{Op: op, Retryable: IsRetryable(err), Err: err}
}

// giveUp wraps the last retryable failure after attempts, with the reason
// for stopping early when there is one.
func giveUp(op string, attempts int, last *Error, why error) *Error {
	err := fmt.Errorf("after %d attempt(s): %w", attempts, last.Err)
	if why != nil {
		err = fmt.Errorf("after %d attempt(s), stopped (%w): %w", attempts, why, last.Err)
	}
	return &Error{Op: op, Retryable: true, RetryAfter: last.RetryAfter, Err: err}
}

// SleepContext waits for d or until ctx is done, returning ctx's error in
// the latter case.
func SleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
