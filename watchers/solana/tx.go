package solana

import (
	"context"
	"fmt"
	"sync"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/ws"

	"github.com/incidentbot/incidentbot/internal/sleep"
	"github.com/incidentbot/incidentbot/signal"
)

const (
	// seenCap bounds the signatures remembered to drop duplicates between
	// the live stream and a backfill.
	seenCap = 10000
	// backfillPageLimit and backfillMaxPages bound one gap backfill.
	backfillPageLimit = 1000
	backfillMaxPages  = 10
	// pollSettle is how old a transaction must be before the poll counts
	// it rather than waiting for the subscription to deliver it.
	pollSettle = 15 * time.Second
)

// txWatch counts a program's transactions from logsSubscribe (one
// mentions address per subscription) and backfills reconnect gaps with
// getSignaturesForAddress. A periodic getSignaturesForAddress poll is the
// safety net for a subscription that never delivers: solana-go drops a
// subscription the node rejects without a word, and a stream can stall
// with its connection still open. Every path records through record, which
// counts a signature once.
type txWatch struct {
	w   *Watchers
	cfg ProgramConfig
	id  solanago.PublicKey

	mu           sync.Mutex
	samples      []txSample
	seen         map[solanago.Signature]struct{}
	seenOrder    []solanago.Signature
	lastSig      solanago.Signature // newest recorded, from any path
	pollMark     solanago.Signature // newest the poll has accounted for
	polled       bool               // the poll has taken its baseline
	firing       bool
	episodeStart time.Time
	episodeTip   solanago.Signature // the newest transaction when the rate crossed
	runSince     time.Time          // when this run (this hold of the lease) began
}

type txSample struct {
	at     time.Time
	failed bool
	sig    solanago.Signature
}

func newTxWatch(w *Watchers, cfg ProgramConfig, id solanago.PublicKey) *txWatch {
	return &txWatch{w: w, cfg: cfg, id: id, seen: map[solanago.Signature]struct{}{}}
}

func (t *txWatch) run(ctx context.Context) {
	log := t.w.log.With("program", t.cfg.Name)
	t.load(ctx)
	if ctx.Err() != nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		every := max(t.w.cfg.Tx.Window/10, 10*time.Millisecond)
		for sleep.For(ctx, every) {
			t.evaluate()
		}
	}()
	go func() {
		defer wg.Done()
		for {
			if err := t.poll(ctx); err != nil && ctx.Err() == nil {
				log.Warn("poll transactions", "err", t.w.sanitize(err.Error()))
			}
			if !sleep.For(ctx, t.w.cfg.Tx.PollInterval) {
				return
			}
		}
	}()
	t.w.resubscribe(ctx, log, "logs", t.session)
}

// load takes the stored episode, if any: a replica taking the watcher
// over resolves the episode its previous holder opened (same id) rather
// than opening a second one or leaving it open.
func (t *txWatch) load(ctx context.Context) {
	var st txState
	ok := t.w.loadStateRetrying(ctx, txKey(t.cfg.ID), &st)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runSince = t.w.now()
	if !ok {
		return
	}
	tip, err := solanago.SignatureFromBase58(st.Tip)
	if st.Firing && err != nil {
		t.w.log.Warn("ignore unreadable transaction episode", "program", t.cfg.Name, "err", err)
		return
	}
	t.firing, t.episodeStart, t.episodeTip = st.Firing, st.EpisodeStart, tip
}

// poll counts the transactions since the previous poll that no other path
// has counted. The first poll only takes a baseline: history from before
// the watcher started is not counted.
func (t *txWatch) poll(ctx context.Context) error {
	ep := t.w.pick(false)
	t.mu.Lock()
	mark, polled := t.pollMark, t.polled
	t.mu.Unlock()
	var sigs []*rpc.TransactionSignature
	var err error
	if polled {
		sigs, err = t.since(ctx, ep, mark, backfillMaxPages)
	} else {
		sigs, err = t.since(ctx, ep, solanago.Signature{}, 1)
	}
	if err != nil {
		return err
	}
	if !polled {
		t.mu.Lock()
		t.polled = true
		if len(sigs) > 0 {
			t.pollMark = sigs[0].Signature
		}
		t.mu.Unlock()
		return nil
	}
	// Leave the newest transactions to the stream for a moment: a poll
	// that beats a healthy subscription to them is not a miss.
	now := t.w.now()
	for len(sigs) > 0 && sigs[0].BlockTime != nil && now.Sub(sigs[0].BlockTime.Time()) < pollSettle {
		sigs = sigs[1:]
	}
	if n := t.recordAll(sigs, "poll"); n > 0 {
		t.w.log.Warn("poll counted transactions the logs subscription did not deliver", "program", t.cfg.Name, "count", n, "endpoint", ep.cfg.Name)
	}
	if len(sigs) > 0 {
		t.mu.Lock()
		t.pollMark = sigs[0].Signature
		t.mu.Unlock()
	}
	return nil
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
	sigs, err := t.since(ctx, ep, until, backfillMaxPages)
	if err != nil {
		return err
	}
	if n := t.recordAll(sigs, "reconnect"); n > 0 {
		t.w.log.Info("backfilled transactions after reconnect", "program", t.cfg.Name, "count", n)
	}
	return nil
}

// since lists the program's signatures newer than until (all of them when
// until is zero), newest first, in at most maxPages pages.
func (t *txWatch) since(ctx context.Context, ep *endpoint, until solanago.Signature, maxPages int) ([]*rpc.TransactionSignature, error) {
	var all []*rpc.TransactionSignature
	var before solanago.Signature
	limit := backfillPageLimit
	if maxPages == 1 {
		limit = 1
	}
	for page := 0; page < maxPages; page++ {
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
			return nil, fmt.Errorf("getSignaturesForAddress: %w", err)
		}
		all = append(all, out...)
		if len(out) < limit {
			return all, nil
		}
		before = out[len(out)-1].Signature
	}
	if maxPages > 1 {
		t.w.log.Warn("signature listing truncated; older transactions in the gap are not counted", "program", t.cfg.Name, "signatures", len(all))
	}
	return all, nil
}

// recordAll records signatures listed newest first, oldest first, and
// reports how many were new.
func (t *txWatch) recordAll(sigs []*rpc.TransactionSignature, via string) int {
	n := 0
	for i := len(sigs) - 1; i >= 0; i-- {
		if t.record(sigs[i].Signature, sigs[i].Err != nil) {
			n++
		}
	}
	if n > 0 {
		t.w.m.txRecovered.WithLabelValues(t.cfg.Name, via).Add(float64(n))
	}
	return n
}

// record counts one transaction once and reports whether it was new.
func (t *txWatch) record(sig solanago.Signature, failed bool) bool {
	t.mu.Lock()
	if _, dup := t.seen[sig]; dup {
		t.mu.Unlock()
		return false
	}
	t.seen[sig] = struct{}{}
	t.seenOrder = append(t.seenOrder, sig)
	if len(t.seenOrder) > seenCap {
		delete(t.seen, t.seenOrder[0])
		t.seenOrder = t.seenOrder[1:]
	}
	t.lastSig = sig
	t.samples = append(t.samples, txSample{at: t.w.now(), failed: failed, sig: sig})
	t.mu.Unlock()

	t.w.m.txTotal.WithLabelValues(t.cfg.Name).Inc()
	if failed {
		t.w.m.txFailed.WithLabelValues(t.cfg.Name).Inc()
	}
	t.evaluate()
	return true
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
		t.episodeTip = t.samples[len(t.samples)-1].sig
		typ = "solana.tx.failure_rate"
	// An empty window resolves only once this run has watched a whole
	// window: a replica that took over an open episode starts with none.
	case t.firing && ((failed == 0 && now.Sub(t.runSince) >= cfg.Window) || (total >= cfg.MinSamples && rate <= cfg.Threshold)):
		t.firing = false
		typ = "solana.tx.failure_rate_recovered"
	}
	start, tip, firing := t.episodeStart, t.episodeTip, t.firing
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
		Annotations:  programAnnotations(t.cfg),
		StartsAt:     start.UTC(),
		GeneratorURL: explorerURL(t.cfg.ID),
		Fields: map[string]any{
			"failure_rate": rate, "failed": failed, "total": total,
			"window": cfg.Window.String(), "threshold": cfg.Threshold,
		},
	}
	sig.Annotations["summary"] = fmt.Sprintf("%.0f%% of %s transactions failed over %s", rate*100, t.cfg.Name, cfg.Window)
	if typ == "solana.tx.failure_rate_recovered" {
		sig.Status = signal.Resolved
		sig.EndsAt = now.UTC()
	}
	// The episode is named by the transaction that tipped the rate over
	// the threshold (the newest in the window then), an on-chain fact
	// replicas share: fed the same transactions, they publish one id. It
	// is not always the same one: each replica cuts its window by its own
	// arrival times and may count a transaction the other has not yet
	// (or has already dropped), and then names another. The bus then
	// keeps both events; they carry one fingerprint and group key, so they
	// are one alert of one incident, not a second page.
	st := txState{Firing: firing, EpisodeStart: start.UTC(), Tip: tip.String()}
	t.w.emit(typ, stableID(typ, t.cfg.ID, tip.String()), t.cfg.ID, sig,
		saveLater(t.w, txKey(t.cfg.ID), st, func(txState) bool { return false }))
}

func explorerURL(address string) string {
	return "https://explorer.solana.com/address/" + address
}
