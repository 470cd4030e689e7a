// Package rpcview is the live, ranked view of the team's Solana RPC
// endpoints. The RPC health watcher writes it; the RPC-switch action and
// runbook rendering read it to name the healthiest backup. It lives in a
// bus KV bucket so that a watcher running as its own replica
// (`incidentbot watch`) and the engine share one view.
package rpcview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// Bucket is the KV bucket the view lives in; whoever writes or reads the
// view ensures it (bus.EnsureBucket).
var Bucket = bus.BucketSpec{Name: "rpcview", Description: "incidentbot live view of RPC endpoints", History: 5}

// Role is an endpoint's configured role.
type Role string

// Roles.
const (
	RolePrimary Role = "primary"
	RoleBackup  Role = "backup"
)

// Endpoint is one RPC endpoint as last seen by the watcher.
type Endpoint struct {
	Name      string        `json:"name"`
	URL       string        `json:"url"`
	Role      Role          `json:"role"`
	Healthy   bool          `json:"healthy"`
	Slot      uint64        `json:"slot"`
	SlotLag   uint64        `json:"slot_lag"`
	Latency   time.Duration `json:"latency_ns"`
	LastError string        `json:"last_error,omitempty"`
	CheckedAt time.Time     `json:"checked_at"`
}

// View is every endpoint, best first: healthy before unhealthy, then by
// slot lag, then by latency.
type View struct {
	UpdatedAt time.Time  `json:"updated_at"`
	Endpoints []Endpoint `json:"endpoints"`
}

// HealthiestBackup returns the best healthy endpoint with role backup, or
// false when none is healthy.
func (v View) HealthiestBackup() (Endpoint, bool) {
	for _, e := range v.Endpoints {
		if e.Role == RoleBackup && e.Healthy {
			return e, true
		}
	}
	return Endpoint{}, false
}

// Reader reads the current view.
type Reader interface {
	View(ctx context.Context) (View, error)
}

// ErrNoView is returned when no watcher has written a view yet.
var ErrNoView = errors.New("no RPC view yet: no Solana watcher has reported")

// key is the single key the view is stored under.
const key = "rpc.view"

// Store keeps the view in a bus KV bucket.
type Store struct {
	KV bus.KV
}

// View reads the stored view.
func (s Store) View(ctx context.Context) (View, error) {
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return View{}, ErrNoView
	}
	if err != nil {
		return View{}, fmt.Errorf("read rpc view: %w", err)
	}
	var v View
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return View{}, fmt.Errorf("decode rpc view: %w", err)
	}
	return v, nil
}

// Put replaces the stored view.
func (s Store) Put(ctx context.Context, v View) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode rpc view: %w", err)
	}
	if _, err := s.KV.Put(ctx, key, b); err != nil {
		return fmt.Errorf("store rpc view: %w", err)
	}
	return nil
}
