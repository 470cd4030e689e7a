package notify_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

// fakeClock is a clock whose Sleep advances time instead of waiting.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	cancel context.CancelFunc // called on the nth sleep when set
	at     int
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	if c.cancel != nil && len(c.slept) == c.at {
		c.cancel()
	}
	return ctx.Err()
}

func policy(c *fakeClock) notify.RetryPolicy {
	return notify.RetryPolicy{
		MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: 3 * time.Second,
		Sleep: c.Sleep, Now: c.Now, Rand: func() float64 { return 0.5 },
	}
}

var errTransient = &notify.Error{Retryable: true, Err: errors.New("HTTP 503")}

func TestRetryDo(t *testing.T) {
	tests := []struct {
		name       string
		errs       []error // returned by successive attempts; nil afterwards
		wantCalls  int
		wantSleeps []time.Duration
		wantRetry  *bool // nil: no error
		wantAfter  time.Duration
		wantText   string
	}{
		{"success first", nil, 1, nil, nil, 0, ""},
		{"backoff with jitter then success", []error{errTransient, errTransient}, 3,
			[]time.Duration{750 * time.Millisecond, 1500 * time.Millisecond}, nil, 0, ""},
		{"retry-after honoured", []error{&notify.Error{Retryable: true, RetryAfter: 7 * time.Second, Err: errors.New("429")}}, 2,
			[]time.Duration{7 * time.Second}, nil, 0, ""},
		{"permanent stops", []error{&notify.Error{Op: "x", Err: errors.New("400")}}, 1, nil, ptr(false), 0, "x: 400"},
		{"exhausted, capped backoff", []error{errTransient, errTransient, errTransient, &notify.Error{Retryable: true, RetryAfter: time.Minute, Err: errors.New("HTTP 429")}}, 4,
			[]time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 2250 * time.Millisecond}, ptr(true), time.Minute,
			"op: after 4 attempt(s): HTTP 429"},
		{"plain error is retryable", []error{errors.New("connection reset"), errors.New("connection reset"), errors.New("connection reset"), errors.New("connection reset")}, 4,
			[]time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 2250 * time.Millisecond}, ptr(true), 0, "op: after 4 attempt(s): connection reset"},
		{"context.Canceled is not", []error{context.Canceled}, 1, nil, ptr(false), 0, "op: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{now: time.Unix(0, 0)}
			calls := 0
			err := policy(c).Do(t.Context(), "op", func(context.Context) error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls || !reflect.DeepEqual(c.slept, tt.wantSleeps) {
				t.Errorf("calls %d slept %v, want %d and %v", calls, c.slept, tt.wantCalls, tt.wantSleeps)
			}
			if tt.wantRetry == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var ne *notify.Error
			if !errors.As(err, &ne) || ne.Retryable != *tt.wantRetry || ne.RetryAfter != tt.wantAfter || err.Error() != tt.wantText {
				t.Errorf("err = %q %#v, want %q retryable %v after %v", err, err, tt.wantText, *tt.wantRetry, tt.wantAfter)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRetryStopsAtDeadline(t *testing.T) {
	c := &fakeClock{now: time.Now()}
	ctx, cancel := context.WithDeadline(t.Context(), c.now.Add(2*time.Second))
	defer cancel()
	calls := 0
	err := policy(c).Do(ctx, "op", func(context.Context) error { calls++; return errTransient })
	// 0.75 s fits before the deadline, then 1.5 s would not.
	if calls != 2 || !reflect.DeepEqual(c.slept, []time.Duration{750 * time.Millisecond}) {
		t.Errorf("calls %d slept %v", calls, c.slept)
	}
	var ne *notify.Error
	if !errors.As(err, &ne) || !ne.Retryable || ne.RetryAfter != 1500*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v %#v, want retryable, RetryAfter 1.5s, wrapping DeadlineExceeded", err, err)
	}
}

func TestRetryCanceledWhileSleeping(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	c := &fakeClock{now: time.Unix(0, 0), cancel: cancel, at: 1}
	calls := 0
	err := policy(c).Do(ctx, "op", func(context.Context) error { calls++; return errTransient })
	if calls != 1 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("calls %d err %v", calls, err)
	}
}

func TestZeroPolicyTriesOnce(t *testing.T) {
	calls := 0
	err := notify.RetryPolicy{}.Do(t.Context(), "op", func(context.Context) error { calls++; return errTransient })
	if calls != 1 || !notify.IsRetryable(err) {
		t.Errorf("calls %d err %v", calls, err)
	}
}

func TestSleepContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := notify.SleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	if err := notify.SleepContext(t.Context(), time.Millisecond); err != nil {
		t.Errorf("err = %v", err)
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 5, "hello"},
		{"hello!", 5, "hell…"},
		{"héllo wörld", 3, "hé…"},
		{"🔥🔥🔥", 2, "🔥…"},
		{"abc", 0, ""},
		{"a\xffb", 5, "a\uFFFDb"},
	} {
		if got := notify.Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 12 * time.Minute: "12m", 65 * time.Minute: "1h05m", 51 * time.Hour: "2d03h", -time.Second: "0s",
	} {
		if got := notify.HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestResultOf(t *testing.T) {
	if notify.ResultOf(nil) != notify.ResultSuccess || notify.ResultOf(errTransient) != notify.ResultRetryableError ||
		notify.ResultOf(&notify.Error{Err: errors.New("x")}) != notify.ResultPermanentError {
		t.Error("ResultOf misclassifies")
	}
}
