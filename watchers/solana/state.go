package solana

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	solanago "github.com/gagliardetto/solana-go"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/sleep"
)

// StateBucket is the bucket of the watchers' on-chain baselines (ProgramData
// slot and authority, wallet balance state) and open episodes (RPC health,
// transaction failure rate); the watchers own it.
var StateBucket = bus.BucketSpec{Name: "watchstate", Description: "incidentbot watchers' on-chain baselines", History: 5}

// The watchers keep their on-chain baselines in StateBucket, one key per
// program and per wallet, so that a
// restart continues from what was last reported instead of taking a fresh
// baseline (which would hide an upgrade that happened while the bot was
// down), and so that replicas agree on what has been reported.
//
// A baseline is stored only after the events it implies were accepted by
// the bus: a crash in between reports the change again at start, with the
// same event id, rather than never.

// stateWriteAttempts bounds the compare-and-set retries of one write.
const stateWriteAttempts = 8

// programState is a program's stored baseline.
type programState struct {
	// Slot is the ProgramData slot (last deploy or upgrade).
	Slot uint64 `json:"slot"`
	// Authority is the upgrade authority in base58, or "none" when there
	// is none (immutable, or revoked).
	Authority string `json:"authority"`
	// ContextSlot is the slot the view was read at; a write never
	// replaces a baseline read at a later slot.
	ContextSlot uint64 `json:"context_slot"`
	// AlertedFor is the unexpected authority last reported, "" when the
	// authority is as expected.
	AlertedFor string `json:"alerted_for,omitempty"`
}

// programData is the stored baseline as a decoded header.
func (s programState) programData() (ProgramData, error) {
	pd := ProgramData{Slot: s.Slot}
	if s.Authority != "none" {
		k, err := solanago.PublicKeyFromBase58(s.Authority)
		if err != nil {
			return ProgramData{}, fmt.Errorf("stored authority %q: %w", s.Authority, err)
		}
		pd.Authority = &k
	}
	return pd, nil
}

// walletState is a wallet's stored balance state.
type walletState struct {
	// Low is true from a drop below min_lamports until the balance is
	// back at min_lamports × (1 + balance_hysteresis).
	Low bool `json:"low"`
	// Episode counts the wallet's low-balance episodes; the current or
	// last one when not low. Event ids are derived from it.
	Episode uint64 `json:"episode"`
	// Since is when the current or last episode was first seen.
	Since time.Time `json:"since,omitzero"`
}

// supersedes reports whether s is a later state than o: a later episode,
// or the same episode recovered.
func (s walletState) supersedes(o walletState) bool {
	return s.Episode > o.Episode || (s.Episode == o.Episode && o.Low && !s.Low)
}

// endpointState is an RPC endpoint's debounced health, stored under
// healthKey (by endpoint name) at each transition, so that the replica
// that takes the health watcher over continues an open episode: it
// reports the recovery, with the id the previous holder would have used,
// instead of a second outage or none. The consecutive counts are not
// stored; a takeover counts afresh.
type endpointState struct {
	Healthy      bool      `json:"healthy"`
	EpisodeStart time.Time `json:"episode_start,omitzero"`
	Severity     string    `json:"severity,omitempty"`
}

// txState is a program's transaction failure-rate episode, stored at each
// transition for the same reason. The window of samples is not: the new
// holder counts afresh.
type txState struct {
	Firing       bool      `json:"firing"`
	EpisodeStart time.Time `json:"episode_start,omitzero"`
	Tip          string    `json:"tip,omitempty"`
}

const healthKey = "health"

func txKey(id string) string          { return "tx." + id }
func programKey(id string) string     { return "program." + id }
func walletKey(address string) string { return "wallet." + address }

// loadState reads key into v. It reports false, without error, when the
// key does not exist or holds what cannot be decoded (logged: the
// watcher then starts from a fresh baseline, as on first start).
func (w *Watchers) loadState(ctx context.Context, key string, v any) (bool, error) {
	e, err := w.state.Get(ctx, key)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s from the watch state: %w", key, err)
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		w.log.Warn("ignore unreadable watch state; starting from a fresh baseline", "key", key, "err", err)
		return false, nil
	}
	return true, nil
}

// loadStateRetrying is loadState retried with back-off until it succeeds
// or ctx ends (reported as false): starting without a stored baseline
// would miss what changed while the bot was down.
func (w *Watchers) loadStateRetrying(ctx context.Context, key string, v any) bool {
	delay := w.cfg.PublishRetry.Min
	for {
		ok, err := w.loadState(ctx, key, v)
		if err == nil {
			return ok
		}
		w.log.Warn("read watch state failed, retrying", "key", key, "retry_in", delay, "err", err)
		if !sleep.For(ctx, delay) {
			return false
		}
		delay = min(delay*2, w.cfg.PublishRetry.Max)
	}
}

// storeState writes v under key unless the stored value is later
// (stale(stored) reports whether v is older than stored). Concurrent
// writers (replicas) are resolved by compare-and-set on the revision.
func storeState[T any](ctx context.Context, kv bus.KV, key string, v T, stale func(stored T) bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode watch state %s: %w", key, err)
	}
	for range stateWriteAttempts {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, bus.ErrKeyNotFound) {
			if _, err = kv.Create(ctx, key, b); errors.Is(err, bus.ErrKeyExists) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create watch state %s: %w", key, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read watch state %s: %w", key, err)
		}
		var cur T
		if json.Unmarshal(e.Value, &cur) == nil && stale(cur) {
			return nil
		}
		if _, err = kv.Update(ctx, key, b, e.Revision); errors.Is(err, bus.ErrRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update watch state %s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("update watch state %s: still changing after %d attempts", key, stateWriteAttempts)
}

// stateTimeout bounds one state write.
const stateTimeout = 5 * time.Second

// saveLater returns an outbox step that stores v under key, logging a
// failure: the next change stores again, and until then a restart reports
// the change once more (same event id, deduplicated within the bus's
// duplicate window).
func saveLater[T any](w *Watchers, key string, v T, stale func(stored T) bool) func(context.Context) {
	return func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, stateTimeout)
		defer cancel()
		if err := storeState(ctx, w.state, key, v, stale); err != nil {
			w.log.Warn("store watch state", "key", key, "err", err)
		}
	}
}
