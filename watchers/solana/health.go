package solana

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"

	"github.com/incidentbot/incidentbot/internal/sleep"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
)

// codeNodeUnhealthy is the JSON-RPC error a node answers getHealth with
// when it is behind or its health is unknown; the message varies by
// version, the code does not.
const codeNodeUnhealthy = -32005

// probeResult is one endpoint's answer in one probe round.
type probeResult struct {
	ok       bool
	reason   string
	slot     uint64
	haveSlot bool
	lag      uint64
	latency  time.Duration
	at       time.Time
}

func (w *Watchers) runHealth(ctx context.Context) {
	w.loadHealth(ctx)
	for {
		w.probeRound(ctx)
		if !sleep.For(ctx, w.cfg.Health.Interval) {
			return
		}
	}
}

// loadHealth takes the stored debounced states, if any, as the
// endpoints' own: this replica continues what the previous holder of the
// health watcher (or its own previous run) reported.
func (w *Watchers) loadHealth(ctx context.Context) {
	var stored map[string]endpointState
	if !w.loadStateRetrying(ctx, healthKey, &stored) {
		return
	}
	for _, ep := range w.endpoints {
		if st, ok := stored[ep.cfg.Name]; ok {
			ep.healthy, ep.episodeStart, ep.severity = st.Healthy, st.EpisodeStart, st.Severity
			ep.fails, ep.oks = 0, 0
		}
	}
}

// probeRound probes every endpoint at once, compares slots, updates the
// debounced states, the metrics and the ranked view, and emits the
// transitions.
func (w *Watchers) probeRound(ctx context.Context) {
	results := make([]probeResult, len(w.endpoints))
	var wg sync.WaitGroup
	for i, ep := range w.endpoints {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = w.probe(ctx, ep) }()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	var best uint64
	for _, r := range results {
		if r.haveSlot && r.slot > best {
			best = r.slot
		}
	}
	type transition struct {
		ep       *endpoint
		r        probeResult
		resolved bool
	}
	var transitions []transition
	for i, ep := range w.endpoints {
		r := &results[i]
		if r.haveSlot {
			r.lag = best - r.slot
			w.m.slotLag.WithLabelValues(ep.cfg.Name).Set(float64(r.lag))
			if r.ok && r.lag > w.cfg.Health.MaxSlotLag {
				r.ok = false
				r.reason = fmt.Sprintf("slot lag %d exceeds max_slot_lag %d (slot %d, best %d)", r.lag, w.cfg.Health.MaxSlotLag, r.slot, best)
			}
		}
		up := 0.0
		if r.ok {
			up = 1
		}
		w.m.rpcUp.WithLabelValues(ep.cfg.Name).Set(up)

		if r.ok {
			ep.fails = 0
			ep.oks++
			if !ep.healthy && ep.oks >= w.cfg.Health.HealthyAfter {
				ep.healthy = true
				transitions = append(transitions, transition{ep, *r, true})
			}
			continue
		}
		if ep.fails == 0 {
			ep.firstFailAt = r.at
		}
		ep.fails++
		ep.oks = 0
		if ep.healthy && ep.fails >= w.cfg.Health.UnhealthyAfter {
			ep.healthy = false
			ep.episodeStart = ep.firstFailAt
			transitions = append(transitions, transition{ep, *r, false})
		}
		w.log.Debug("rpc probe failed", "endpoint", ep.cfg.Name, "reason", r.reason, "consecutive_failures", ep.fails)
	}

	view := w.rank(results, best)
	w.mu.Lock()
	w.ranked = view.Endpoints
	w.mu.Unlock()
	if err := w.view.Put(ctx, view); err != nil {
		w.log.Warn("store rpc view", "err", err)
	}
	allDown := true
	for _, ep := range w.endpoints {
		allDown = allDown && !ep.healthy
	}
	for _, t := range transitions {
		if !t.resolved {
			t.ep.severity = severityOf(t.ep.cfg.Role, allDown)
		}
		w.emitRPC(t.ep, t.r, best, view, t.resolved, allDown)
	}
	if len(transitions) > 0 {
		st := map[string]endpointState{}
		for _, ep := range w.endpoints {
			st[ep.cfg.Name] = endpointState{Healthy: ep.healthy, EpisodeStart: ep.episodeStart.UTC(), Severity: ep.severity}
		}
		// Only the lease holder writes it; the last transition wins.
		w.then(saveLater(w, healthKey, st, func(map[string]endpointState) bool { return false }))
	}
}

// severityOf is the severity of an endpoint going unhealthy: a backup is
// a warning while another endpoint still serves, the primary is critical,
// and so is the last endpoint standing (none is left to switch to).
func severityOf(role string, allDown bool) string {
	if role == "primary" || allDown {
		return "critical"
	}
	return "warning"
}

func (w *Watchers) probe(ctx context.Context, ep *endpoint) probeResult {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Health.Timeout)
	defer cancel()
	r := probeResult{at: w.now()}
	_, herr := w.timed(ep, "getHealth", func() error {
		s, err := ep.client.GetHealth(ctx)
		if err == nil && s != rpc.HealthOk {
			err = fmt.Errorf("getHealth answered %q", s)
		}
		return err
	})
	var slot uint64
	lat, serr := w.timed(ep, "getSlot", func() (err error) {
		slot, err = ep.client.GetSlot(ctx, rpc.CommitmentConfirmed)
		return err
	})
	r.latency = lat
	if serr == nil {
		r.slot, r.haveSlot = slot, true
	}
	switch {
	case herr != nil:
		r.reason = w.describe("getHealth", herr, ctx)
	case serr != nil:
		r.reason = w.describe("getSlot", serr, ctx)
	default:
		r.ok = true
	}
	return r
}

// describe turns a call error into a short, secret-free reason.
func (w *Watchers) describe(method string, err error, ctx context.Context) string {
	var rpcErr *jsonrpc.RPCError
	switch {
	case errors.As(err, &rpcErr) && rpcErr.Code == codeNodeUnhealthy:
		s := fmt.Sprintf("%s: node unhealthy (%d): %s", method, rpcErr.Code, rpcErr.Message)
		if m, ok := rpcErr.Data.(map[string]any); ok {
			if n, ok := m["numSlotsBehind"].(json.Number); ok {
				s += fmt.Sprintf(" (numSlotsBehind %s)", n)
			}
		}
		return s
	case errors.As(err, &rpcErr):
		return fmt.Sprintf("%s: rpc error %d: %s", method, rpcErr.Code, rpcErr.Message)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s: no answer within %s", method, w.cfg.Health.Timeout)
	}
	msg := w.sanitize(err.Error())
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return method + ": " + msg
}

// rank builds the view: healthy first, then by slot lag, latency, name.
// An endpoint counts as healthy in the view only when its debounced state
// is healthy and its last probe succeeded: the switch action must not
// pick a backup that just failed.
func (w *Watchers) rank(results []probeResult, best uint64) rpcview.View {
	v := rpcview.View{UpdatedAt: w.now().UTC()}
	for i, ep := range w.endpoints {
		r := results[i]
		e := rpcview.Endpoint{
			Name: ep.cfg.Name, URL: ep.redacted, Role: rpcview.Role(ep.cfg.Role),
			Healthy: ep.healthy && r.ok, Slot: r.slot, SlotLag: r.lag, Latency: r.latency,
			CheckedAt: r.at.UTC(),
		}
		if !r.haveSlot {
			e.SlotLag = best
		}
		if !r.ok {
			e.LastError = r.reason
		}
		v.Endpoints = append(v.Endpoints, e)
	}
	sort.SliceStable(v.Endpoints, func(i, j int) bool {
		a, b := v.Endpoints[i], v.Endpoints[j]
		if a.Healthy != b.Healthy {
			return a.Healthy
		}
		if a.SlotLag != b.SlotLag {
			return a.SlotLag < b.SlotLag
		}
		if a.Latency != b.Latency {
			return a.Latency < b.Latency
		}
		return a.Name < b.Name
	})
	return v
}

// emitRPC publishes an endpoint's transition. The recovered event carries
// the severity its unhealthy event had.
func (w *Watchers) emitRPC(ep *endpoint, r probeResult, best uint64, view rpcview.View, resolved, allDown bool) {
	name := ep.cfg.Name
	fields := map[string]any{
		"endpoint":             name,
		"url":                  ep.redacted,
		"reason":               r.reason,
		"consecutive_failures": ep.fails,
		"slot":                 r.slot,
		"best_slot":            best,
		"slot_lag":             r.lag,
		"all_endpoints_down":   allDown,
	}
	for _, e := range view.Endpoints {
		if e.Role == rpcview.RoleBackup && e.Healthy && e.Name != name {
			fields["healthiest_backup"] = map[string]string{"name": e.Name, "url": e.URL}
			break
		}
	}
	sig := signal.Signal{
		GroupKey:    "solana/rpc/" + name,
		Fingerprint: fingerprint("rpc", name, "unhealthy"),
		Status:      signal.Firing,
		Labels: map[string]string{
			"alertname": "SolanaRPCUnhealthy", "severity": ep.severity,
			"endpoint": name, "role": ep.cfg.Role,
		},
		Annotations: map[string]string{
			"summary": fmt.Sprintf("Solana RPC endpoint %s (%s) is unhealthy", name, ep.cfg.Role),
		},
		StartsAt: ep.episodeStart.UTC(),
		Fields:   fields,
	}
	if allDown {
		sig.Annotations["summary"] += "; no healthy endpoint is left"
	}
	typ := "solana.rpc.unhealthy"
	if resolved {
		typ = "solana.rpc.recovered"
		sig.Status = signal.Resolved
		sig.EndsAt = r.at.UTC()
		sig.Annotations["summary"] = fmt.Sprintf("Solana RPC endpoint %s (%s) recovered", name, ep.cfg.Role)
		fields["reason"] = "healthy again"
	}
	// Health is not an on-chain fact: a replica probes from where it runs
	// and judges by its own rounds. One replica at a time runs the health
	// watcher (a lease, see Share) and stores each episode; the id is the
	// episode's start, which a replica taking over reads from the watch
	// state, so a re-published transition carries the same id and the bus
	// keeps one. Without the lease (replicas that do not share a bus),
	// each replica would publish its own events for one outage; they carry
	// one fingerprint and group key, so they are one alert of one incident.
	w.emit(typ, stableID(typ, name, ep.episodeStart.UTC().Format(time.RFC3339Nano)), name, sig, nil)
}
