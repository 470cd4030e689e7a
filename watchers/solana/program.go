package solana

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	solanago "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/ws"

	"github.com/incidentbot/incidentbot/signal"
)

// programWatch follows one program's ProgramData account through an
// account subscription, with a periodic poll as a safety net.
//
// solana.program.upgraded is a point event: it is published firing and
// stays firing until a human resolves the incident; the watcher never
// resolves it. solana.program.authority_changed is likewise firing only.
type programWatch struct {
	w        *Watchers
	cfg      ProgramConfig
	id, pda  solanago.PublicKey
	expected *solanago.PublicKey // nil: immutable expected
	pollNow  chan struct{}

	mu         sync.Mutex
	have       bool
	ctxSlot    uint64
	last       ProgramData
	alertedFor string // authority last alerted on, "" when as expected
}

func newProgramWatch(w *Watchers, cfg ProgramConfig, id solanago.PublicKey) (*programWatch, error) {
	pda, err := ProgramDataAddress(id)
	if err != nil {
		return nil, fmt.Errorf("program %q: %w", cfg.Name, err)
	}
	p := &programWatch{w: w, cfg: cfg, id: id, pda: pda, pollNow: make(chan struct{}, 1)}
	if cfg.ExpectedAuthority != Immutable {
		k := solanago.MustPublicKeyFromBase58(cfg.ExpectedAuthority) // validated
		p.expected = &k
	}
	return p, nil
}

// run starts from the stored baseline, then follows the account through
// the subscription and the poll until ctx ends.
func (p *programWatch) run(ctx context.Context) {
	p.load(ctx)
	if ctx.Err() != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.runSubscription(ctx) }()
	go func() { defer wg.Done(); p.runPoll(ctx) }()
	wg.Wait()
}

// load takes the stored baseline, if any, as the last view handled, so
// that the first view after a restart is compared with what was last
// reported: a change made while the bot was down is reported once.
func (p *programWatch) load(ctx context.Context) {
	var st programState
	if !p.w.loadStateRetrying(ctx, programKey(p.cfg.ID), &st) {
		return
	}
	pd, err := st.programData()
	if err != nil {
		p.w.log.Warn("ignore unreadable program baseline; starting from a fresh one", "program", p.cfg.Name, "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.have, p.ctxSlot, p.last, p.alertedFor = true, st.ContextSlot, pd, st.AlertedFor
}

func (p *programWatch) runPoll(ctx context.Context) {
	t := time.NewTicker(p.w.cfg.ProgramPollInterval)
	defer t.Stop()
	for {
		if err := p.poll(ctx); err != nil && ctx.Err() == nil {
			p.w.log.Warn("poll programdata", "program", p.cfg.Name, "err", p.w.sanitize(err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.pollNow:
		}
	}
}

func (p *programWatch) poll(ctx context.Context) error {
	ep := p.w.pick(false)
	offset, length := uint64(0), uint64(programDataMetaLen)
	var out *rpc.GetAccountInfoResult
	_, err := p.w.timed(ep, "getAccountInfo", func() (err error) {
		cctx, cancel := context.WithTimeout(ctx, p.w.cfg.Health.Timeout)
		defer cancel()
		out, err = ep.client.GetAccountInfoWithOpts(cctx, p.pda, &rpc.GetAccountInfoOpts{
			Encoding:   solanago.EncodingBase64,
			Commitment: rpc.CommitmentConfirmed,
			DataSlice:  &rpc.DataSlice{Offset: &offset, Length: &length},
		})
		return err
	})
	if errors.Is(err, rpc.ErrNotFound) {
		return fmt.Errorf("programdata account %s not found (closed program?)", p.pda)
	}
	if err != nil {
		return fmt.Errorf("getAccountInfo %s: %w", p.pda, err)
	}
	if out.Value == nil || out.Value.Data == nil {
		return fmt.Errorf("getAccountInfo %s: empty account", p.pda)
	}
	p.observe(out.Context.Slot, out.Value.Data.GetBinary())
	return nil
}

func (p *programWatch) runSubscription(ctx context.Context) {
	p.w.resubscribe(ctx, p.w.log.With("program", p.cfg.Name), "programdata", p.session)
}

func (p *programWatch) session(ctx context.Context, ep *endpoint) (bool, error) {
	dctx, cancel := context.WithTimeout(ctx, p.w.cfg.Health.Timeout)
	client, err := ws.Connect(dctx, ep.cfg.WSURL)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer client.Close() // never Unsubscribe: see txWatch.session
	sub, err := client.AccountSubscribeWithOpts(p.pda, rpc.CommitmentConfirmed, solanago.EncodingBase64)
	if err != nil {
		return false, fmt.Errorf("accountSubscribe: %w", err)
	}
	// Catch up on whatever changed while disconnected.
	select {
	case p.pollNow <- struct{}{}:
	default:
	}
	for {
		res, err := sub.Recv(ctx)
		if err != nil {
			return true, fmt.Errorf("receive: %w", err)
		}
		if res.Value == nil || res.Value.Data == nil {
			continue
		}
		p.observe(res.Context.Slot, res.Value.Data.GetBinary())
	}
}

// observe handles one view of the ProgramData header seen at context slot
// ctxSlot; views older than the last one handled are ignored so that a
// lagging poll cannot undo a newer notification.
func (p *programWatch) observe(ctxSlot uint64, data []byte) {
	pd, err := DecodeProgramData(data)
	if err != nil {
		p.w.log.Warn("decode programdata", "program", p.cfg.Name, "err", err)
		return
	}
	p.mu.Lock()
	if p.have && ctxSlot < p.ctxSlot {
		p.mu.Unlock()
		return
	}
	first, prev, prevAlerted := !p.have, p.last, p.alertedFor
	p.have, p.ctxSlot, p.last = true, ctxSlot, pd
	upgraded := !first && pd.Slot != prev.Slot
	auth := pd.AuthorityString()
	var authChanged bool
	if p.matchesExpected(pd) {
		p.alertedFor = ""
	} else if auth != p.alertedFor {
		p.alertedFor = auth
		authChanged = true
	}
	changed := first || upgraded || auth != prev.AuthorityString() || p.alertedFor != prevAlerted
	st := programState{Slot: pd.Slot, Authority: auth, ContextSlot: ctxSlot, AlertedFor: p.alertedFor}
	p.mu.Unlock()

	queued := true
	if upgraded {
		queued = p.emitUpgraded(pd, prev) && queued
	}
	if authChanged {
		prevAuth := "unknown"
		if !first {
			prevAuth = prev.AuthorityString()
		}
		queued = p.emitAuthority(pd, prevAuth) && queued
	}
	// The baseline is stored behind the events: once they are on the bus.
	// An event that was not queued leaves the old baseline in place, so a
	// restart reports the change again.
	if changed && queued {
		p.w.then(saveLater(p.w, programKey(p.cfg.ID), st, func(stored programState) bool {
			return stored.ContextSlot > st.ContextSlot
		}))
	}
	// Last, so that a reader of the metric knows the events are queued.
	p.w.m.deploySlot.WithLabelValues(p.cfg.Name).Set(float64(pd.Slot))
}

func (p *programWatch) matchesExpected(pd ProgramData) bool {
	if p.expected == nil {
		return pd.Authority == nil
	}
	return pd.Authority != nil && *pd.Authority == *p.expected
}

func (p *programWatch) base(alertname string, now time.Time) signal.Signal {
	return signal.Signal{
		GroupKey: "solana/program/" + p.cfg.Name,
		Status:   signal.Firing,
		Labels: map[string]string{
			"alertname": alertname, "severity": "critical",
			"program": p.cfg.Name, "program_id": p.cfg.ID,
		},
		Annotations:  programAnnotations(p.cfg),
		StartsAt:     now.UTC(),
		GeneratorURL: explorerURL(p.cfg.ID),
	}
}

// programAnnotations are the annotations every event about a program
// carries: what the team configured for it.
func programAnnotations(cfg ProgramConfig) map[string]string {
	a := map[string]string{}
	if cfg.RollbackBuffer != "" {
		a["rollback_buffer"] = cfg.RollbackBuffer
	}
	return a
}

func (p *programWatch) emitUpgraded(pd, prev ProgramData) bool {
	const typ = "solana.program.upgraded"
	sig := p.base("SolanaProgramUpgraded", p.w.now())
	sig.Fingerprint = fingerprint("program", p.cfg.ID, "upgraded")
	sig.Annotations["summary"] = fmt.Sprintf("Program %s was upgraded at slot %d", p.cfg.Name, pd.Slot)
	sig.Fields = map[string]any{
		"slot": pd.Slot, "previous_slot": prev.Slot, "authority": pd.AuthorityString(),
		"programdata": p.pda.String(),
	}
	// Named by the program id and the new ProgramData slot: an upgrade
	// lands in one slot, so replicas and restarts name it alike.
	return p.w.emit(typ, stableID(typ, p.cfg.ID, strconv.FormatUint(pd.Slot, 10)), p.cfg.ID, sig, nil)
}

func (p *programWatch) emitAuthority(pd ProgramData, prevAuth string) bool {
	const typ = "solana.program.authority_changed"
	sig := p.base("SolanaProgramAuthorityChanged", p.w.now())
	sig.Fingerprint = fingerprint("program", p.cfg.ID, "authority")
	auth := pd.AuthorityString()
	summary := fmt.Sprintf("Program %s upgrade authority is %s, expected %s", p.cfg.Name, auth, p.cfg.ExpectedAuthority)
	if pd.Authority == nil {
		summary = fmt.Sprintf("Program %s upgrade authority was revoked (program is immutable), expected %s", p.cfg.Name, p.cfg.ExpectedAuthority)
	}
	sig.Annotations["summary"] = summary
	sig.Fields = map[string]any{
		"authority": auth, "expected_authority": p.cfg.ExpectedAuthority,
		"previous_authority": prevAuth, "slot": pd.Slot, "programdata": p.pda.String(),
	}
	// Named by the on-chain facts (program id, authority, ProgramData
	// slot), so every replica and every restart that sees this state names
	// it alike. The one change they cannot tell apart is an authority set
	// back to a key it had at the same ProgramData slot (A → B → A without
	// an upgrade in between): within the bus's duplicate window the second
	// report of A is dropped as a duplicate of the first.
	return p.w.emit(typ, stableID(typ, p.cfg.ID, auth, strconv.FormatUint(pd.Slot, 10)), p.cfg.ID, sig, nil)
}
