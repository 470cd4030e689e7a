package bus

import (
	"testing"
	"time"
)

func TestBackoffIsCappedPerConsumer(t *testing.T) {
	for _, tc := range []struct {
		attempt uint64
		limit   time.Duration
		want    time.Duration
	}{
		{1, time.Minute, time.Second},
		{2, time.Minute, 2 * time.Second},
		{4, time.Minute, 8 * time.Second},
		{7, time.Minute, time.Minute},
		{100, time.Minute, time.Minute},
		{4, 10 * time.Second, 8 * time.Second},
		{5, 10 * time.Second, 10 * time.Second},
		{1, 300 * time.Millisecond, 300 * time.Millisecond},
	} {
		if got := backoff(tc.attempt, tc.limit); got != tc.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tc.attempt, tc.limit, got, tc.want)
		}
	}
	if Backoff(10) != time.Minute {
		t.Errorf("Backoff(10) = %v, want the 1 minute default cap", Backoff(10))
	}
	if got := (ConsumerConfig{}).withDefaults().MaxBackoff; got != time.Minute {
		t.Errorf("default MaxBackoff = %v", got)
	}
}
