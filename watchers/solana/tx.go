package solana

import (
	"context"
	"fmt"
	"sync"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/ws"

	"github.com/incidentbot/incidentbot/signal"
)

const (
	// seenCap bounds the signatures remembered to drop duplicates between
	// the live stream and a backfill.
	seenCap = 10000
	// backfillPageLimit and backfillMaxPages bound one gap backfill.
	backfillPageLimit = 1000
	backfillMaxPages  = 10
)

// txWatch counts a program's transactions from logsSubscribe (one
// mentions address per subscription) and backfills reconnect gaps with
// getSignaturesForAddress.
type txWatch struct {
	w   *Watchers
	cfg ProgramConfig
	id  solanago.PublicKey

	mu           sync.Mutex
	samples      []txSample
	seen         map[solanago.Signature]struct{}
	seenOrder    []solanago.Signature
	lastSig      solanago.Signature
	firing       bool
	episodeStart time.Time
}

type txSample struct {
	at     time.Time
	failed bool
}

func newTxWatch(w *Watchers, cfg ProgramConfig, id solanago.PublicKey) *txWatch {
	return &txWatch{w: w, cfg: cfg, id: id, seen: map[solanago.Signature]struct{}{}}
}

func (t *txWatch) run(ctx context.Context) {
	log := t.w.log.With("program", t.cfg.Name)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := max(t.w.cfg.Tx.Window/10, 10*time.Millisecond)
		for sleep(ctx, every) {
			t.evaluate()
		}
	}()
	t.w.resubscribe(ctx, log, "logs", t.session)
}

// session connects, subscribes, backfills the gap since the last
// signature seen and then counts notifications until the stream breaks.
// streamed reports whether the subscription got as far as the stream.
func (t *txWatch) session(ctx context.Context, ep *endpoint) (streamed bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, t.w.cfg.Health.Timeout)
	client, err := ws.Connect(dctx, ep.cfg.WSURL)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	// Close the whole client, never Unsubscribe: solana-go's Unsubscribe
	// closes the stream channel while its reader may still send on it.
	defer client.Close()
	sub, err := client.LogsSubscribeMentions(t.id, rpc.CommitmentConfirmed)
	if err != nil {
		return false, fmt.Errorf("logsSubscribe: %w", err)
	}
	if err := t.backfill(ctx, ep); err != nil {
		return false, err
	}
	for {
		res, err := sub.Recv(ctx)
		if err != nil {
			return true, fmt.Errorf("receive: %w", err)
		}
		t.record(res.Value.Signature, res.Value.Err != nil)
	}
}

// backfill counts the transactions between the last signature seen and
// now, oldest first. Before the first signature there is nothing to fill.
func (t *txWatch) backfill(ctx context.Context, ep *endpoint) error {
	t.mu.Lock()
	until := t.lastSig
	t.mu.Unlock()
	if until.IsZero() {
		return nil
	}
	var all []*rpc.TransactionSignature
	var before solanago.Signature
	for page := 0; page < backfillMaxPages; page++ {
		limit := backfillPageLimit
		var out []*rpc.TransactionSignature
		_, err := t.w.timed(ep, "getSignaturesForAddress", func() (err error) {
			cctx, cancel := context.WithTimeout(ctx, t.w.cfg.Health.Timeout)
			defer cancel()
			out, err = ep.client.GetSignaturesForAddressWithOpts(cctx, t.id, &rpc.GetSignaturesForAddressOpts{
				Limit: &limit, Before: before, Until: until, Commitment: rpc.CommitmentConfirmed,
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("backfill getSignaturesForAddress: %w", err)
		}
		all = append(all, out...)
		if len(out) < limit {
			break
		}
		before = out[len(out)-1].Signature
		if page == backfillMaxPages-1 {
			t.w.log.Warn("backfill truncated", "program", t.cfg.Name, "signatures", len(all))
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		t.record(all[i].Signature, all[i].Err != nil)
	}
	if len(all) > 0 {
		t.w.log.Info("backfilled transactions after reconnect", "program", t.cfg.Name, "count", len(all))
	}
	return nil
}

// record counts one transaction once.
func (t *txWatch) record(sig solanago.Signature, failed bool) {
	t.mu.Lock()
	if _, dup := t.seen[sig]; dup {
		t.mu.Unlock()
		return
	}
	t.seen[sig] = struct{}{}
	t.seenOrder = append(t.seenOrder, sig)
	if len(t.seenOrder) > seenCap {
		delete(t.seen, t.seenOrder[0])
		t.seenOrder = t.seenOrder[1:]
	}
	t.lastSig = sig
	t.samples = append(t.samples, txSample{at: t.w.now(), failed: failed})
	t.mu.Unlock()

	t.w.m.txTotal.WithLabelValues(t.cfg.Name).Inc()
	if failed {
		t.w.m.txFailed.WithLabelValues(t.cfg.Name).Inc()
	}
	t.evaluate()
}

// evaluate fires when the failure rate over the window exceeds the
// threshold with at least min_samples transactions, and resolves when the
// rate is back at or under it (with min_samples) or no failure is left in
// the window.
func (t *txWatch) evaluate() {
	cfg := t.w.cfg.Tx
	now := t.w.now()
	t.mu.Lock()
	cut := 0
	for cut < len(t.samples) && now.Sub(t.samples[cut].at) > cfg.Window {
		cut++
	}
	t.samples = t.samples[cut:]
	total, failed := len(t.samples), 0
	for _, s := range t.samples {
		if s.failed {
			failed++
		}
	}
	rate := 0.0
	if total > 0 {
		rate = float64(failed) / float64(total)
	}
	var typ string
	switch {
	case !t.firing && total >= cfg.MinSamples && rate > cfg.Threshold:
		t.firing = true
		t.episodeStart = now
		typ = "solana.tx.failure_rate"
	case t.firing && (failed == 0 || (total >= cfg.MinSamples && rate <= cfg.Threshold)):
		t.firing = false
		typ = "solana.tx.failure_rate_recovered"
	}
	start := t.episodeStart
	t.mu.Unlock()
	if typ == "" {
		return
	}
	sig := signal.Signal{
		GroupKey:    "solana/tx/" + t.cfg.Name,
		Fingerprint: fingerprint("tx", t.cfg.ID, "failure_rate"),
		Status:      signal.Firing,
		Labels: map[string]string{
			"alertname": "SolanaTxFailureRate", "severity": "critical",
			"program": t.cfg.Name, "program_id": t.cfg.ID,
		},
		Annotations: map[string]string{
			"summary": fmt.Sprintf("%.0f%% of %s transactions failed over %s", rate*100, t.cfg.Name, cfg.Window),
		},
		StartsAt:     start.UTC(),
		GeneratorURL: explorerURL(t.cfg.ID),
		Fields: map[string]any{
			"failure_rate": rate, "failed": failed, "total": total,
			"window": cfg.Window.String(), "threshold": cfg.Threshold,
		},
	}
	if typ == "solana.tx.failure_rate_recovered" {
		sig.Status = signal.Resolved
		sig.EndsAt = now.UTC()
	}
	t.w.emit(typ, stableID(typ, t.cfg.ID, start.UTC().Format(time.RFC3339Nano)), t.cfg.ID, sig)
}

func explorerURL(address string) string {
	return "https://explorer.solana.com/address/" + address
}
