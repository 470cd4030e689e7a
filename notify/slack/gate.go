package slack

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

// gate paces the calls that post into each channel (chat.postMessage for
// cards and replies, chat.update): a token bucket per channel, closed for
// every caller while Slack's Retry-After for that channel runs, with the
// callers waiting their turn in order of severity (critical first), then
// of arrival. Channels do not wait for each other.
type gate struct {
	rate  float64 // tokens per second; <= 0 means no pacing
	burst float64
	now   func() time.Time

	mu    sync.Mutex
	chans map[string]*lane
	seq   uint64
}

// lane is one channel's state (under gate.mu).
type lane struct {
	tokens float64
	last   time.Time // when tokens was last refilled
	until  time.Time // closed until then (Retry-After)
	queue  waiters
}

type waiter struct {
	prio  int
	seq   uint64
	index int
	wake  chan struct{} // buffered 1: "look again"
}

func newGate(rate float64, burst int, now func() time.Time) *gate {
	if now == nil {
		now = time.Now
	}
	return &gate{rate: rate, burst: float64(max(burst, 1)), now: now, chans: map[string]*lane{}}
}

// priority orders severities: lower goes first.
func priority(s notify.Severity) int {
	switch s {
	case notify.SeverityCritical:
		return 0
	case notify.SeverityWarning:
		return 1
	case notify.SeverityInfo:
		return 2
	}
	return 3
}

// wait blocks until it is the caller's turn to call Slack in channel, or
// ctx ends. When its turn would come past ctx's deadline (the channel
// closed by a Retry-After, or too many calls ahead at the pace) it returns
// at once a retryable *notify.Error, wrapping notify.ErrNotSent, whose
// RetryAfter says when the turn would have come, so the engine can
// redeliver then instead of holding a worker.
func (g *gate) wait(ctx context.Context, op, channel string, sev notify.Severity) error {
	g.mu.Lock()
	l := g.lane(channel)
	g.seq++
	w := &waiter{prio: priority(sev), seq: g.seq, wake: make(chan struct{}, 1)}
	heap.Push(&l.queue, w)
	if l.queue[0] == w {
		l.queue.signalHead() // a new head: the old one no longer runs a timer
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := g.now()
		if dl, ok := ctx.Deadline(); ok {
			if eta := l.eta(now, w, g.rate, g.burst); now.Add(eta).After(dl) {
				g.leave(l, w)
				g.mu.Unlock()
				why := "its turn"
				if now.Before(l.until) {
					why = "Slack's Retry-After"
				}
				return &notify.Error{Op: op, Retryable: true, RetryAfter: eta,
					Err: fmt.Errorf("channel %s: %s is %s away, past the call's deadline: %w", channel, why, eta.Round(time.Millisecond), notify.ErrNotSent)}
			}
		}
		var next <-chan time.Time
		if l.queue[0] == w {
			d := l.ready(now, g.rate, g.burst)
			if d <= 0 {
				if g.rate > 0 {
					l.tokens--
				}
				g.leave(l, w)
				g.mu.Unlock()
				return nil
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			next = timer.C
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			g.mu.Lock()
			g.leave(l, w)
			g.mu.Unlock()
			err := ctx.Err()
			return &notify.Error{Op: op, Retryable: errors.Is(err, context.DeadlineExceeded),
				Err: fmt.Errorf("waiting for a turn in channel %s: %w (%w)", channel, err, notify.ErrNotSent)}
		case <-w.wake:
		case <-next:
		}
		g.mu.Lock()
	}
}

// closeFor closes channel for d from now for every caller, as Slack's
// Retry-After asks; it never shortens a longer closure. After it one call
// may go at once, then the pace resumes.
func (g *gate) closeFor(channel string, d time.Duration) time.Time {
	until := g.now().Add(max(d, time.Second))
	g.closeUntil(channel, until)
	return until
}

// closeUntil closes channel until the given time (see closeFor).
func (g *gate) closeUntil(channel string, until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.lane(channel)
	if until.After(l.until) {
		l.until = until
		l.tokens, l.last = min(1, g.burst), until
	}
	l.queue.signalHead()
}

// waiting counts the callers waiting at channel's gate.
func (g *gate) waiting(channel string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.chans[channel]; ok {
		return len(l.queue)
	}
	return 0
}

// lane returns channel's lane, making it (under g.mu). Before making one
// past maxLanes it forgets the idle ones (nobody waiting, open, bucket
// full again), so the map does not grow with every channel ever used.
func (g *gate) lane(channel string) *lane {
	l, ok := g.chans[channel]
	if ok {
		return l
	}
	now := g.now()
	if len(g.chans) >= maxLanes {
		for k, o := range g.chans {
			if len(o.queue) == 0 && o.ready(now, g.rate, g.burst) <= 0 && (g.rate <= 0 || o.tokens >= g.burst) {
				delete(g.chans, k)
			}
		}
	}
	l = &lane{tokens: g.burst, last: now}
	g.chans[channel] = l
	return l
}

// maxLanes is how many channels the gate keeps before forgetting idle ones.
const maxLanes = 256

// leave takes w out of the queue and wakes the next head (under g.mu).
func (g *gate) leave(l *lane, w *waiter) {
	if w.index >= 0 {
		heap.Remove(&l.queue, w.index)
	}
	l.queue.signalHead()
}

// eta estimates how long w must still wait: until the channel opens, then
// until tokens for every caller ahead of it and itself have come (under
// g.mu).
func (l *lane) eta(now time.Time, w *waiter, rate, burst float64) time.Duration {
	wait := max(l.until.Sub(now), 0)
	if rate <= 0 {
		return wait
	}
	ahead := 0
	for i := range l.queue {
		if l.queue[i] != w && l.queue.Less(i, w.index) {
			ahead++
		}
	}
	tokens := l.tokens
	if wait == 0 && now.After(l.last) {
		tokens = min(burst, tokens+now.Sub(l.last).Seconds()*rate)
	}
	if need := float64(ahead+1) - tokens; need > 0 {
		wait += time.Duration(need / rate * float64(time.Second))
	}
	return wait
}

// ready returns how long the head must still wait: until the channel
// opens and a token is there (under g.mu).
func (l *lane) ready(now time.Time, rate, burst float64) time.Duration {
	if now.Before(l.until) {
		return l.until.Sub(now)
	}
	if rate <= 0 {
		return 0
	}
	if now.After(l.last) {
		l.tokens = min(burst, l.tokens+now.Sub(l.last).Seconds()*rate)
		l.last = now
	}
	if l.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - l.tokens) / rate * float64(time.Second))
}

// waiters is a heap of callers: lowest priority value, then earliest.
type waiters []*waiter

func (q waiters) Len() int { return len(q) }
func (q waiters) Less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio < q[j].prio
	}
	return q[i].seq < q[j].seq
}
func (q waiters) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waiters) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*q = old[:len(old)-1]
	return w
}

// signalHead tells the head to look again.
func (q waiters) signalHead() {
	if len(q) > 0 {
		select {
		case q[0].wake <- struct{}{}:
		default:
		}
	}
}
