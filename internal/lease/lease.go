// Package lease runs work on one replica at a time: the replica that holds
// a named lease in a KV bucket runs it, the others wait to take over.
//
// A lease is the key lease.<name>, written by compare-and-set only:
// Create to take a free lease (with a per-key TTL, so a holder that dies
// at once leaves nothing behind), Update at the last revision to renew it
// every TTL/3, and Update at a stale revision to take over a lease whose
// holder stopped renewing. Expiry is judged without comparing clocks: a
// contender takes over when it has seen the same revision for a whole TTL
// on its own monotonic clock, and a holder stops its work once TTL has
// passed since the start of its last successful write. A write commits
// after it started and is seen after it committed, so the holder always
// stops before a contender may start (up to clock rate drift and the time
// the work takes to notice its context ended).
package lease

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/sleep"
)

// Bucket is the bucket leases live in. KeyTTL lets a lease created and
// never renewed expire by itself; TTL drops leases nobody renews any more
// (a watcher removed from the configuration) after an hour, long after
// any live lease was renewed.
var Bucket = bus.BucketSpec{Name: "leases", Description: "incidentbot leases: which replica runs which watcher", History: 1, KeyTTL: true, TTL: time.Hour}

// MaxTTL bounds a lease's TTL, well under the bucket's TTL.
const MaxTTL = 10 * time.Minute

// Key is the KV key of the lease named name.
func Key(name string) string { return "lease." + name }

// Holder returns an id for this process: host name, pid and a random
// part, so two processes never share one, even on one host or after a
// restart with the same pid.
func Holder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Lease is one named lease and what to do when holding it changes.
type Lease struct {
	// KV is the bucket (see Bucket).
	KV bus.KV
	// Name names the lease; the key is Key(Name).
	Name string
	// Holder identifies this replica (see Holder).
	Holder string
	// TTL is how long a lease lasts without renewal.
	TTL time.Duration
	// Log receives ownership changes; nil discards them.
	Log *slog.Logger
	// OnChange, when set, is called with true when the lease is taken and
	// false when it is lost or released.
	OnChange func(held bool)
}

// Run is Lease{KV: kv, Name: name, Holder: holder, TTL: ttl}.Run(ctx, f).
func Run(ctx context.Context, kv bus.KV, name, holder string, ttl time.Duration, f func(context.Context) error) error {
	return Lease{KV: kv, Name: name, Holder: holder, TTL: ttl}.Run(ctx, f)
}

// Run contends for the lease until ctx ends and runs f while it holds it.
// f's context ends as soon as the lease is lost (a renewal found another
// holder, or no renewal succeeded within TTL); Run waits for f to return
// and contends again. When ctx ends Run stops f, releases the lease so a
// peer takes over at once, and returns nil. When f returns on its own
// while ctx is live, Run releases the lease and returns what f returned.
func (l Lease) Run(ctx context.Context, f func(context.Context) error) error {
	if l.KV == nil || l.Name == "" || l.Holder == "" {
		return errors.New("lease: KV, name and holder are required")
	}
	if l.TTL <= 0 || l.TTL > MaxTTL {
		return fmt.Errorf("lease %s: ttl %s, want (0, %s]", l.Name, l.TTL, MaxTTL)
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	l.Log = l.Log.With("lease", l.Name, "holder", l.Holder)
	c := &contender{Lease: l}
	// A short random first wait spreads the leases of replicas that
	// start together.
	if !sleep.For(ctx, rand.N(min(l.TTL/3, time.Second)+1)) {
		return nil
	}
	for {
		rev, start, ok := c.acquire(ctx)
		if !ok {
			return nil
		}
		done, err := c.hold(ctx, rev, start, f)
		if done {
			return err
		}
	}
}

type contender struct {
	Lease
	// seenRev is the revision last seen held by another, seenAt when this
	// replica first saw it.
	seenRev uint64
	seenAt  time.Time
	seenBy  string
}

func (c *contender) value() []byte { return []byte(c.Holder) }

// acquire polls until it holds the lease (returning its revision and
// when the winning write started) or ctx ends.
func (c *contender) acquire(ctx context.Context) (uint64, time.Time, bool) {
	every := c.TTL / 3
	for {
		if rev, start, ok := c.try(ctx); ok {
			return rev, start, true
		}
		if !sleep.For(ctx, every) {
			return 0, time.Time{}, false
		}
	}
}

// try makes one attempt: Create when the key is free, Update at a
// revision seen unchanged for a whole TTL.
func (c *contender) try(ctx context.Context) (uint64, time.Time, bool) {
	wctx, cancel := context.WithTimeout(ctx, c.TTL)
	defer cancel()
	key := Key(c.Name)
	e, err := c.KV.Get(wctx, key)
	now := time.Now()
	switch {
	case errors.Is(err, bus.ErrKeyNotFound):
		var opts []bus.KVOption
		if c.TTL >= time.Second {
			// Rounded up: the key must not expire before this holder
			// stops, TTL after this write started.
			opts = append(opts, bus.KeyTTL((c.TTL+time.Second-1)/time.Second*time.Second))
		}
		rev, err := c.KV.Create(wctx, key, c.value(), opts...)
		if err == nil {
			c.Log.Info("lease acquired", "previous", "none")
			return rev, now, true
		}
		if !errors.Is(err, bus.ErrKeyExists) && ctx.Err() == nil {
			c.Log.Warn("take lease", "err", err)
		}
	case err != nil:
		if ctx.Err() == nil {
			c.Log.Warn("read lease", "err", err)
		}
	case e.Revision != c.seenRev:
		c.seenRev, c.seenAt, c.seenBy = e.Revision, now, string(e.Value)
	case now.Sub(c.seenAt) >= c.TTL:
		rev, err := c.KV.Update(wctx, key, c.value(), e.Revision)
		if err == nil {
			c.Log.Info("lease taken over", "previous", c.seenBy, "unrenewed_for", now.Sub(c.seenAt).Round(time.Millisecond))
			return rev, now, true
		}
		if !errors.Is(err, bus.ErrRevisionMismatch) && ctx.Err() == nil {
			c.Log.Warn("take over lease", "err", err)
		}
	}
	return 0, time.Time{}, false
}

// hold runs f while renewing the lease at rev. It reports done when Run
// must return (ctx ended, or f returned on its own) with what to return.
func (c *contender) hold(ctx context.Context, rev uint64, start time.Time, f func(context.Context) error) (bool, error) {
	if c.OnChange != nil {
		c.OnChange(true)
	}
	fctx, stop := context.WithCancel(ctx)
	var (
		wg   sync.WaitGroup
		ferr error
	)
	fdone := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); defer close(fdone); ferr = f(fctx) }()

	deadline := start.Add(c.TTL)
	renew := time.NewTimer(c.TTL / 3)
	defer renew.Stop()
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	lost := func(why string, args ...any) (bool, error) {
		stop()
		wg.Wait()
		c.Log.Warn("lease lost; stopped its work", append([]any{"reason", why}, args...)...)
		if c.OnChange != nil {
			c.OnChange(false)
		}
		c.seenRev = 0
		return false, nil
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			c.release(ctx, rev)
			return true, nil
		case <-fdone:
			stop()
			c.release(ctx, rev)
			return true, ferr
		case <-expire.C:
			return lost("not renewed within the ttl", "ttl", c.TTL)
		case <-renew.C:
			st := time.Now()
			wctx, cancel := context.WithDeadline(ctx, deadline)
			nrev, err := c.KV.Update(wctx, Key(c.Name), c.value(), rev)
			cancel()
			switch {
			case err == nil:
				rev, deadline = nrev, st.Add(c.TTL)
				expire.Reset(time.Until(deadline))
				renew.Reset(c.TTL / 3)
			case errors.Is(err, bus.ErrRevisionMismatch), errors.Is(err, bus.ErrKeyNotFound):
				return lost("another replica holds it, or it was removed")
			case ctx.Err() != nil:
				// ctx.Done is handled on the next turn.
				renew.Reset(0)
			default:
				c.Log.Warn("renew lease, retrying", "err", err, "holds_until", deadline.Format(time.RFC3339Nano))
				renew.Reset(max(c.TTL/10, 10*time.Millisecond))
			}
		}
	}
}

// release deletes the lease while it is still at rev, so a peer takes it
// at once instead of after a TTL.
func (c *contender) release(ctx context.Context, rev uint64) {
	if c.OnChange != nil {
		c.OnChange(false)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(c.TTL, 5*time.Second))
	defer cancel()
	if err := c.KV.Delete(rctx, Key(c.Name), bus.IfRevision(rev)); err != nil {
		c.Log.Warn("release lease; peers take over once it expires", "err", err)
		return
	}
	c.Log.Info("lease released")
}
