package solana

import (
	"context"
	"fmt"
	"strconv"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/incidentbot/incidentbot/internal/sleep"
	"github.com/incidentbot/incidentbot/signal"
)

// walletWatch is one wallet's balance state; only the balance loop
// touches it.
type walletWatch struct {
	cfg  WalletConfig
	addr solanago.PublicKey
	st   walletState
}

func (w *Watchers) runBalances(ctx context.Context) {
	for _, ww := range w.wallets {
		var st walletState
		if w.loadStateRetrying(ctx, walletKey(ww.cfg.Address), &st) {
			ww.st = st
		}
		if ctx.Err() != nil {
			return
		}
	}
	for {
		for _, ww := range w.wallets {
			if err := w.checkBalance(ctx, ww); err != nil && ctx.Err() == nil {
				w.log.Warn("read wallet balance", "wallet", ww.cfg.Name, "err", w.sanitize(err.Error()))
			}
		}
		if !sleep.For(ctx, w.cfg.BalanceInterval) {
			return
		}
	}
}

// checkBalance reads one balance. It is low below min_lamports and
// recovered only at min_lamports × (1 + balance_hysteresis) or more.
//
// Event ids are the wallet address and the episode number, which lives in
// the shared watch state: a replica reads it before reporting a crossing,
// so the replicas that see one crossing publish one id (or find it
// reported) and the bus keeps one event. The crossing itself has no on-chain identity a replica could
// read: getBalance answers at the slot of the read, not of the transfer
// that crossed the minimum, and each replica reads at its own time. If the
// watch state is lost the numbering restarts at 1, and a low episode
// numbered like one reported within the bus's duplicate window is
// dropped as its duplicate.
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
	// Only a crossing this replica sees consults the shared state: one
	// whose node shows no crossing (it lags, or read between two) leaves
	// another replica's episode alone.
	if crosses := (!ww.st.Low && bal < min) || (ww.st.Low && bal >= recoverAt); !crosses {
		return nil
	}
	w.refreshWallet(ctx, ww)
	now := w.now()
	var typ string
	switch {
	case !ww.st.Low && bal < min:
		ww.st = walletState{Low: true, Episode: ww.st.Episode + 1, Since: now.UTC()}
		typ = "solana.balance.low"
	case ww.st.Low && bal >= recoverAt:
		ww.st.Low = false
		typ = "solana.balance.recovered"
	default:
		return nil // another replica reported it
	}
	st := ww.st
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
		StartsAt:     st.Since,
		GeneratorURL: explorerURL(ww.cfg.Address),
		Fields: map[string]any{
			"balance_lamports": bal, "min_lamports": min, "address": ww.cfg.Address,
		},
	}
	if typ == "solana.balance.recovered" {
		sig.Status = signal.Resolved
		sig.EndsAt = now.UTC()
	}
	// The new state is stored once the bus has the event: a crash in
	// between reports the transition again at start, with the same id.
	w.emit(typ, stableID(typ, ww.cfg.Address, strconv.FormatUint(st.Episode, 10)), ww.cfg.Address, sig,
		saveLater(w, walletKey(ww.cfg.Address), st, func(stored walletState) bool { return stored.supersedes(st) }))
	return nil
}

// refreshWallet adopts the stored state when it is later than the
// wallet's own: another replica already reported that transition, or a
// later one. A failed read keeps the own state; a replica that decides on
// it may then number an episode differently.
func (w *Watchers) refreshWallet(ctx context.Context, ww *walletWatch) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Health.Timeout)
	defer cancel()
	var stored walletState
	ok, err := w.loadState(ctx, walletKey(ww.cfg.Address), &stored)
	if err != nil {
		w.log.Warn("read wallet state; deciding on this replica's own", "wallet", ww.cfg.Name, "err", err)
		return
	}
	if ok && stored.supersedes(ww.st) {
		ww.st = stored
	}
}
