package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

// Watchers builds the Solana watchers, publishing to b and keeping the
// RPC view in b's rpcview bucket and their baselines in its watchstate
// bucket.
func Watchers(ctx context.Context, cfg config.Config, b *bus.Bus, reg prometheus.Registerer, log *slog.Logger) (*solana.Watchers, error) {
	kv, err := b.KV(ctx, bus.BucketRPCView)
	if err != nil {
		return nil, err
	}
	state, err := b.KV(ctx, bus.BucketWatchState)
	if err != nil {
		return nil, err
	}
	w, err := solana.New(cfg.Solana, b, rpcview.Store{KV: kv}, state, reg, log.With("component", "solana"))
	if err != nil {
		return nil, fmt.Errorf("solana watchers: %w", err)
	}
	return w, nil
}
