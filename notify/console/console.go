// Package console is the sink used when Slack or PagerDuty are not
// configured: it prints what would have been posted or paged as readable
// text, so `make run` without tokens still shows the whole flow. It
// implements notify.Chat and notify.Pager.
package console

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/incidentbot/incidentbot/notify"
)

// Console writes cards, replies and pages to an io.Writer. It is safe for
// concurrent use: each card or page is written in one piece, framed and set
// apart by blank lines from whatever else shares the terminal (the log),
// with the time it was printed.
type Console struct {
	mu  sync.Mutex
	w   io.Writer
	seq int
	// Observer, when set, is told the outcome of every call.
	Observer notify.Observer
	// Now stamps each card, reply and page; time.Now when nil.
	Now func() time.Time
}

// rule closes a card; wide enough to tell a card from a log line at a glance.
var rule = strings.Repeat("━", 78)

// stamp is the time printed on a card, reply or page.
func (c *Console) stamp() string {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	return now().UTC().Format("2006-01-02 15:04:05 UTC")
}

// frame prints a card between a header line and a closing rule.
func (c *Console) frame(ref notify.CardRef, what string, inc notify.Incident) error {
	head := fmt.Sprintf("┏━━ %s ━━ card %s %s (%s) ", c.stamp(), ref.Channel, ref.TS, what)
	if n := 80 - utf8.RuneCountInString(head); n > 0 {
		head += strings.Repeat("━", n)
	}
	return c.write("\n%s\n%s┗%s\n\n", head, Card(inc), rule)
}

var (
	_ notify.Chat  = (*Console)(nil)
	_ notify.Pager = (*Console)(nil)
)

// New returns a Console writing to w.
func New(w io.Writer) *Console { return &Console{w: w} }

// PostCard prints the card and returns a ref such as
// {Channel: "#incidents", TS: "console-1"}. The tag is not printed.
func (c *Console) PostCard(ctx context.Context, channel string, inc notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	start := time.Now()
	c.mu.Lock()
	c.seq++
	ref := notify.CardRef{Channel: channel, TS: fmt.Sprintf("console-%d", c.seq)}
	err := c.frame(ref, "new", inc)
	c.mu.Unlock()
	c.Observer.Observe("console", "post_card", start, err)
	if err != nil {
		return notify.CardRef{}, err
	}
	return ref, nil
}

// FindCard always reports that no card was found: the console keeps no
// record of what it printed, and printing a card again after a crash is
// harmless.
func (c *Console) FindCard(ctx context.Context, channel string, tag notify.CardTag, since time.Time) (notify.CardRef, bool, error) {
	return notify.CardRef{}, false, nil
}

// UpdateCard prints the card again, marked as an edit of ref.
func (c *Console) UpdateCard(ctx context.Context, ref notify.CardRef, inc notify.Incident) error {
	start := time.Now()
	c.mu.Lock()
	err := c.frame(ref, "updated", inc)
	c.mu.Unlock()
	c.Observer.Observe("console", "update_card", start, err)
	return err
}

// Reply prints u as a reply in ref's thread.
func (c *Console) Reply(ctx context.Context, ref notify.CardRef, inc notify.Incident, u notify.Update) error {
	start := time.Now()
	text := strings.TrimSpace(u.Text)
	if u.Kind != "" {
		text = "[" + u.Kind + "] " + text
	}
	for _, m := range u.Mention {
		text += " @" + m
	}
	c.mu.Lock()
	err := c.write("  ↳ %s · reply to card %s %s · %s: %s\n", c.stamp(), ref.Channel, ref.TS, inc.ID, indent(text, "    "))
	c.mu.Unlock()
	c.Observer.Observe("console", "reply", start, err)
	return err
}

// Page prints the page. The routing key is never printed, only which one
// PagerDuty would be sent: the configured default or the runbook's own, by
// its reference name.
func (c *Console) Page(ctx context.Context, p notify.Page) error {
	start := time.Now()
	routing := "the default PagerDuty service (pagerduty.routing_key)"
	if p.RoutingKeyRef != "" {
		routing = fmt.Sprintf("the runbook's own PagerDuty service: routing key %q (pagerduty.routing_keys; key not shown)", p.RoutingKeyRef)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n☎  %s ━━ PAGE %s · dedup_key=%s\n   to %s\n", c.stamp(), strings.ToUpper(string(p.Action)), p.DedupKey, routing)
	if p.Action == notify.PageTrigger {
		inc := p.Incident
		fmt.Fprintf(&b, "   %s %s %s: %s\n", notify.SeverityEmoji(inc.Severity), inc.Severity, inc.ID, oneLine(inc.Title))
		if inc.Summary != "" {
			fmt.Fprintf(&b, "   %s\n", oneLine(inc.Summary))
		}
	}
	b.WriteString("\n")
	c.mu.Lock()
	err := c.write("%s", b.String())
	c.mu.Unlock()
	c.Observer.Observe("console", "page_"+string(p.Action), start, err)
	return err
}

// write prints under c.mu; a failed write is a permanent error.
func (c *Console) write(format string, args ...any) error {
	if _, err := fmt.Fprintf(c.w, format, args...); err != nil {
		return &notify.Error{Op: "console write", Err: err}
	}
	return nil
}

// Card renders the incident as plain text, the console's card.
func Card(inc notify.Incident) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, "┃ "+format+"\n", args...) }
	if st := inc.Storm; st != nil {
		stormCard(inc, st, line)
		return b.String()
	}

	emoji := notify.SeverityEmoji(inc.Severity)
	if inc.Status == notify.StatusResolved {
		emoji = notify.StatusEmoji(notify.StatusResolved)
	}
	line("%s %s · %s", emoji, inc.ID, oneLine(inc.Title))
	status := fmt.Sprintf("%s %s · %s", notify.StatusEmoji(inc.Status), notify.StatusWord(inc.Status), inc.Severity)
	if inc.Status == notify.StatusAcknowledged && inc.AcknowledgedBy != "" {
		status += " · by " + inc.AcknowledgedBy
	}
	if inc.ResolvedBy != "" {
		status += " · resolved by " + inc.ResolvedBy
	}
	if inc.Freeze != "" {
		status += " · 🧊 " + inc.Freeze
	}
	if inc.Breaker != "" {
		status += " · 🔌 " + inc.Breaker
	}
	if inc.Silence != "" {
		status += " · 🔕 " + inc.Silence
	}
	if !inc.StartedAt.IsZero() {
		status += " · started " + inc.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if inc.Status == notify.StatusResolved {
		status += " · resolved after " + notify.HumanDuration(inc.Duration())
	}
	if inc.Reopened > 0 {
		status += fmt.Sprintf(" · reopened %d×", inc.Reopened)
	}
	line("%s", status)
	if inc.Summary != "" {
		line("%s", indent(inc.Summary, "┃ "))
	}
	if len(inc.Labels) > 0 {
		var ls []string
		for _, k := range notify.SortedKeys(inc.Labels) {
			ls = append(ls, k+"="+inc.Labels[k])
		}
		line("labels: %s", strings.Join(ls, " "))
	}
	if len(inc.Alerts) > 0 || inc.TruncatedAlerts > 0 {
		firing, resolved := inc.Counts()
		line("alerts: %d firing, %d resolved", firing, resolved)
		for i, a := range inc.Alerts {
			if i == 10 {
				line("  +%d more", len(inc.Alerts)-10)
				break
			}
			line("  %s %s — %s", notify.StatusEmoji(a.Status), a.Name, oneLine(a.Summary))
		}
		if inc.TruncatedAlerts > 0 {
			line("  ⚠ Alertmanager left out %d more alerts (max_alerts)", inc.TruncatedAlerts)
		}
	}
	for _, j := range inc.Joined {
		line("  ⇢ %s", j)
	}
	if len(inc.Assessment) > 0 {
		line("assessment:")
		for i, s := range inc.Assessment {
			// Each line of a step stands on its own line (a cause's
			// check below its symptoms), indented under the number.
			ls := notify.StepLines(s.Text)
			if s.Link != "" {
				ls[0] += " <" + s.Link + ">"
			}
			line("  %d. %s", i+1, ls[0])
			for _, l := range ls[1:] {
				line("     %s", l)
			}
		}
	}
	if len(inc.Remediation) > 0 {
		line("remediation (/incident run ID STEP requests a step):")
		for i, p := range inc.Remediation {
			line("  %d. %s [%s]", i+1, oneLine(p.Title), p.Action)
			switch {
			case p.Error != "":
				line("     ⚠ plan unavailable: %s", oneLine(p.Error))
			case p.Plan != "":
				line("     %s", indent(p.Plan, "┃      "))
			}
			policy := "needs approval"
			if p.Automatic {
				policy = "runs without approval when requested"
			}
			if p.Approval != "" {
				policy += ": " + oneLine(p.Approval)
			}
			line("     %s", policy)
			if p.Status != "" {
				line("     status: %s", oneLine(p.Status))
			}
		}
	}
	if len(inc.Escalation) > 0 {
		if inc.EscalationState != "" {
			line("escalation (%s):", inc.EscalationState)
		} else {
			line("escalation:")
		}
		for _, l := range inc.Escalation {
			when := "immediately"
			if l.After > 0 {
				when = "after " + notify.HumanDuration(l.After)
			}
			line("  %s — %s → %s", l.Name, when, l.Who)
		}
	}
	if inc.RunbookURL != "" {
		line("runbook: %s", inc.RunbookURL)
	}
	for _, l := range inc.Links {
		line("%s: %s", l.Text, l.URL)
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func indent(s, prefix string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

// maxStormLines caps the incidents a storm card prints; the rest are
// counted.
const maxStormLines = 50

// stormCard prints a channel's storm card: the counts, then the incidents
// worst first.
func stormCard(inc notify.Incident, st *notify.Storm, line func(string, ...any)) {
	bySev, resolved := st.Counts()
	state := "ongoing since " + st.Since.UTC().Format("15:04:05 UTC")
	if st.Over {
		state = "over: " + st.Since.UTC().Format("15:04:05") + "–" + st.Until.UTC().Format("15:04:05 UTC")
	}
	line("🌩 %s · alert storm in %s · %s", inc.ID, st.Channel, state)
	line("%d incidents: %s", st.Total(), notify.CountsText(bySev, resolved))
	shown := min(len(st.Entries), maxStormLines)
	for _, e := range st.Entries[:shown] {
		line("%s %s · %s · %s", notify.SeverityEmoji(e.Severity), e.ID, notify.StatusWord(e.Status), oneLine(e.Title))
	}
	if n := st.Total() - shown; n > 0 {
		rest := maps.Clone(st.Unlisted)
		if rest == nil {
			rest = map[notify.Severity]int{}
		}
		for _, e := range st.Entries[shown:] {
			rest[e.Severity]++
		}
		line("… and %d more: %s", n, notify.CountsText(rest, 0))
	}
}
