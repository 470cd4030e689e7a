package slack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
)

// maxListed caps the incidents list shows.
const maxListed = 25

var severityRank = map[notify.Severity]int{notify.SeverityCritical: 3, notify.SeverityWarning: 2, notify.SeverityInfo: 1}

// list answers the open incidents, worst and oldest first.
func (h *Handler) list(ctx context.Context) Reply {
	all, err := h.o.Incidents.Incidents(ctx)
	if err != nil {
		h.log.Error("slack list: read incidents", "err", err)
		return Reply{Text: "⚠️ Could not read the incidents: " + esc(err.Error())}
	}
	var open []*engine.Record
	for _, r := range all {
		if r.Open() {
			open = append(open, r)
		}
	}
	if len(open) == 0 {
		return Reply{Text: "✅ No open incidents."}
	}
	slices.SortFunc(open, func(a, b *engine.Record) int {
		if d := severityRank[b.Severity] - severityRank[a.Severity]; d != 0 {
			return d
		}
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	now := h.o.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d open incident(s)*\n", len(open))
	for i, r := range open {
		if i == maxListed {
			fmt.Fprintf(&b, "_+%d more_\n", len(open)-maxListed)
			break
		}
		fmt.Fprintf(&b, "%s `%s` *%s* · %s · %s", notify.SeverityEmoji(r.Severity), r.ID, esc(string(r.Severity)),
			esc(title(r)), notify.HumanDuration(now.Sub(r.StartedAt)))
		if r.Ack != nil {
			b.WriteString(" · acked by " + esc(r.Ack.By.String()))
		} else {
			b.WriteString(" · not acknowledged")
		}
		b.WriteString("\n")
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

// show answers one incident.
func (h *Handler) show(ctx context.Context, id string) Reply {
	r, reply, ok := h.get(ctx, id)
	if !ok {
		return reply
	}
	now := h.o.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s* · %s\n", notify.SeverityEmoji(r.Severity), r.ID, esc(title(r)))
	fmt.Fprintf(&b, "*%s* · %s · started %s (%s ago) · runbook `%s`\n", statusWord(r), esc(string(r.Severity)),
		when(r.StartedAt), notify.HumanDuration(now.Sub(r.StartedAt)), esc(r.Runbook))
	if r.Ack != nil {
		fmt.Fprintf(&b, "Acknowledged by %s %s\n", esc(r.Ack.By.String()), when(r.Ack.At))
	}
	if !r.Open() {
		fmt.Fprintf(&b, "Resolved%s\n", resolvedBy(r))
	}
	firing, resolved := 0, 0
	for _, a := range r.Alerts {
		if a.Status == signal.Firing {
			firing++
		} else {
			resolved++
		}
	}
	fmt.Fprintf(&b, "Alerts: %d firing, %d resolved", firing, resolved)
	if r.Reopened > 0 {
		fmt.Fprintf(&b, " · reopened %d×", r.Reopened)
	}
	b.WriteString("\n")
	tl := r.Timeline
	if len(tl) > 5 {
		tl = tl[len(tl)-5:]
	}
	if len(tl) > 0 {
		b.WriteString("*Latest*\n")
		for _, u := range tl {
			fmt.Fprintf(&b, "• %s %s\n", when(u.At), esc(notify.Truncate(u.Text, 300)))
		}
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

// title is a short name for an incident from its record: the
// representative alert's name and summary.
func title(r *engine.Record) string {
	better := func(a, b *engine.AlertState) bool {
		if af, bf := a.Status == signal.Firing, b.Status == signal.Firing; af != bf {
			return af
		}
		if !a.StartsAt.Equal(b.StartsAt) {
			return a.StartsAt.Before(b.StartsAt)
		}
		return a.Fingerprint < b.Fingerprint
	}
	var rep *engine.AlertState
	for _, a := range r.Alerts {
		if rep == nil || better(a, rep) {
			rep = a
		}
	}
	if rep == nil {
		return r.Runbook
	}
	name := rep.Labels["alertname"]
	if name == "" {
		name = rep.Type
	}
	if s := rep.Annotations["summary"]; s != "" {
		name += " — " + s
	}
	return notify.Truncate(strings.Join(strings.Fields(name), " "), 120)
}

// rpc answers the watchers' ranked view of the RPC endpoints. URLs are
// left out: they often carry API keys.
func (h *Handler) rpc(ctx context.Context) Reply {
	if h.o.RPC == nil {
		return Reply{Text: "Not configured on this bot: " + hintRPC + "."}
	}
	v, err := h.o.RPC.View(ctx)
	if errors.Is(err, rpcview.ErrNoView) {
		return Reply{Text: "No RPC view yet: no Solana watcher has reported."}
	}
	if err != nil {
		return Reply{Text: "⚠️ Could not read the RPC view: " + esc(err.Error())}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*RPC endpoints*, best first (as of %s)\n", when(v.UpdatedAt))
	for i, e := range v.Endpoints {
		mark := "✅"
		if !e.Healthy {
			mark = "❌"
		}
		fmt.Fprintf(&b, "%d. %s *%s* (%s) · slot %d, %d behind · %s", i+1, mark, esc(e.Name), esc(string(e.Role)), e.Slot, e.SlotLag, e.Latency.Round(time.Millisecond))
		if e.LastError != "" {
			b.WriteString(" · " + esc(notify.Truncate(e.LastError, 120)))
		}
		b.WriteString("\n")
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

func (h *Handler) flags(ctx context.Context) Reply {
	if h.o.Flags == nil {
		return Reply{Text: "Not configured on this bot: " + hintFlags + "."}
	}
	fs, err := h.o.Flags.Flags(ctx)
	if err != nil {
		return Reply{Text: "⚠️ Could not read the feature flags: " + esc(err.Error())}
	}
	if len(fs) == 0 {
		return Reply{Text: "No feature flags."}
	}
	var b strings.Builder
	b.WriteString("*Feature flags* (read-only here)\n")
	for _, f := range fs {
		state := "🔴 off"
		if f.Enabled {
			state = "🟢 on"
		}
		fmt.Fprintf(&b, "• `%s` %s\n", esc(f.Name), state)
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

func (h *Handler) report(ctx context.Context, id string) Reply {
	if h.o.Reporter == nil {
		return Reply{Text: "Not configured on this bot: " + hintReporter + "."}
	}
	rec, r, ok := h.get(ctx, id)
	if !ok {
		return r
	}
	text, err := h.o.Reporter.Report(ctx, rec.ID)
	if err != nil {
		return Reply{Text: "⚠️ Could not build the report of *" + rec.ID + "*: " + esc(err.Error())}
	}
	return Reply{Text: text}
}
