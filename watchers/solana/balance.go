package solana

import (
	"context"
	"fmt"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/incidentbot/incidentbot/signal"
)

// walletWatch is one wallet's balance state; only the balance loop
// touches it.
type walletWatch struct {
	cfg          WalletConfig
	addr         solanago.PublicKey
	low          bool
	episodeStart time.Time
}

func (w *Watchers) runBalances(ctx context.Context) {
	for {
		for _, ww := range w.wallets {
			if err := w.checkBalance(ctx, ww); err != nil && ctx.Err() == nil {
				w.log.Warn("read wallet balance", "wallet", ww.cfg.Name, "err", w.sanitize(err.Error()))
			}
		}
		if !sleep(ctx, w.cfg.BalanceInterval) {
			return
		}
	}
}

// checkBalance reads one balance. It is low below min_lamports and
// recovered only at min_lamports × (1 + balance_hysteresis) or more.
func (w *Watchers) checkBalance(ctx context.Context, ww *walletWatch) error {
	ep := w.pick(false)
	var out *rpc.GetBalanceResult
	_, err := w.timed(ep, "getBalance", func() (err error) {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.Health.Timeout)
		defer cancel()
		out, err = ep.client.GetBalance(cctx, ww.addr, rpc.CommitmentConfirmed)
		return err
	})
	if err != nil {
		return fmt.Errorf("getBalance %s: %w", ww.addr, err)
	}
	bal := out.Value
	w.m.balance.WithLabelValues(ww.cfg.Name).Set(float64(bal))
	min := ww.cfg.MinLamports
	recoverAt := uint64(float64(min) * (1 + w.cfg.BalanceHysteresis))
	now := w.now()
	var typ string
	switch {
	case !ww.low && bal < min:
		ww.low, ww.episodeStart = true, now
		typ = "solana.balance.low"
	case ww.low && bal >= recoverAt:
		ww.low = false
		typ = "solana.balance.recovered"
	default:
		return nil
	}
	sig := signal.Signal{
		GroupKey:    "solana/wallet/" + ww.cfg.Name,
		Fingerprint: fingerprint("wallet", ww.cfg.Address, "balance_low"),
		Status:      signal.Firing,
		Labels: map[string]string{
			"alertname": "SolanaBalanceLow", "severity": "warning", "wallet": ww.cfg.Name,
		},
		Annotations: map[string]string{
			"summary": fmt.Sprintf("Wallet %s holds %d lamports, minimum %d", ww.cfg.Name, bal, min),
		},
		StartsAt:     ww.episodeStart.UTC(),
		GeneratorURL: explorerURL(ww.cfg.Address),
		Fields: map[string]any{
			"balance_lamports": bal, "min_lamports": min, "address": ww.cfg.Address,
		},
	}
	if typ == "solana.balance.recovered" {
		sig.Status = signal.Resolved
		sig.EndsAt = now.UTC()
	}
	w.emit(typ, stableID(typ, ww.cfg.Address, ww.episodeStart.UTC().Format(time.RFC3339Nano)), ww.cfg.Address, sig)
	return nil
}
