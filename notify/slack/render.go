package slack

import (
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// RenderOptions tunes how much of an incident a card shows.
type RenderOptions struct {
	// MaxAlerts caps the alerts listed on the card; the rest are
	// summarised as "+N more". Zero means 8.
	MaxAlerts int
	// MaxProposals caps the remediation steps shown, each with its
	// buttons; fewer are shown when Slack's 50 blocks would not hold
	// them. Zero means 8 (every step of the shipped runbooks).
	MaxProposals int
	// MaxStormEntries caps the incidents a storm card lists; the rest
	// are counted by severity. Zero means DefaultMaxStormEntries.
	MaxStormEntries int
}

func (o RenderOptions) withDefaults() RenderOptions {
	if o.MaxAlerts <= 0 {
		o.MaxAlerts = 8
	}
	if o.MaxProposals <= 0 {
		o.MaxProposals = 8
	}
	return o
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func section(s string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(clamp(s, maxSectionText)), nil, nil)
}

func contextLine(s string) *slack.ContextBlock {
	return slack.NewContextBlock("", mrkdwn(clamp(s, maxSectionText)))
}

// date renders t in the reader's own time zone, with a UTC fallback.
func date(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// HeaderText is the card's header: severity emoji (a check mark once
// resolved), incident id and title, at most 150 characters.
func HeaderText(inc notify.Incident) string {
	emoji := notify.SeverityEmoji(inc.Severity)
	if inc.Status == notify.StatusResolved {
		emoji = notify.StatusEmoji(notify.StatusResolved)
	}
	title := oneLine(inc.Title)
	if title == "" {
		title = inc.Runbook
	}
	return notify.Truncate(strings.TrimSpace(emoji+" "+inc.ID+" · "+title), maxHeaderText)
}

// FallbackText is the plain text that notifications, screen readers and
// old clients show instead of the blocks.
func FallbackText(inc notify.Incident) string {
	if inc.Storm != nil {
		return stormFallbackText(inc)
	}
	s := fmt.Sprintf("%s [%s] %s %s: %s", notify.SeverityEmoji(inc.Severity), notify.StatusWord(inc.Status),
		inc.ID, inc.Severity, oneLine(inc.Title))
	if inc.Summary != "" {
		s += " — " + oneLine(inc.Summary)
	}
	return clamp(esc(notify.Truncate(s, maxFallbackText)), maxFallbackText)
}

// Blocks renders the incident's card as Block Kit blocks, within Slack's
// limits whatever the incident holds.
func Blocks(inc notify.Incident, opts RenderOptions) []slack.Block {
	opts = opts.withDefaults()
	if inc.Storm != nil {
		return stormBlocks(inc, opts)
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, HeaderText(inc), true, false)),
		section(statusText(inc)),
	}
	if s := strings.TrimSpace(inc.Summary); s != "" {
		blocks = append(blocks, section(escN(s, maxSectionText)))
	}
	if f := labelFields(inc.Labels); len(f) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(nil, f, nil))
	}
	if len(inc.Alerts) > 0 || inc.TruncatedAlerts > 0 {
		blocks = append(blocks, slack.NewDividerBlock(), section(alertsText(inc, opts.MaxAlerts)))
	}
	if len(inc.Joined) > 0 {
		blocks = append(blocks, contextLine("⇢ "+escN(strings.Join(inc.Joined, "; "), maxSectionText)))
	}
	if len(inc.Assessment) > 0 {
		blocks = append(blocks, slack.NewDividerBlock(), section(assessmentText(inc.Assessment)))
	}
	var tail []slack.Block
	if len(inc.Escalation) > 0 {
		tail = append(tail, slack.NewDividerBlock(), section(escalationText(inc.Escalation, inc.EscalationState)))
	}
	if a := actionsBlock(inc); a != nil {
		tail = append(tail, a)
	}
	if l := linksText(inc); l != "" {
		tail = append(tail, contextLine(l))
	}
	tail = append(tail, contextLine(footerText(inc)))
	if len(inc.Remediation) > 0 {
		// The steps get what the rest of the card leaves of Slack's 50
		// blocks: those that do not fit are counted, not cut off.
		if budget := maxBlocks - len(blocks) - len(tail) - 1; budget >= 2 {
			blocks = append(blocks, slack.NewDividerBlock())
			blocks = append(blocks, remediationBlocks(inc, opts.MaxProposals, budget)...)
		}
	}
	blocks = append(blocks, tail...)

	if len(blocks) > maxBlocks {
		// Cannot happen with the caps above; kept so that a future block
		// never makes Slack reject the whole card.
		blocks = append(blocks[:maxBlocks-2:maxBlocks-2], contextLine("… card shortened to fit Slack's limits"), blocks[len(blocks)-1])
	}
	return blocks
}

func statusText(inc notify.Incident) string {
	parts := []string{notify.StatusEmoji(inc.Status) + " *" + notify.StatusWord(inc.Status) + "*"}
	switch inc.Status {
	case notify.StatusAcknowledged:
		if inc.AcknowledgedBy != "" {
			parts[0] += " by " + escN(oneLine(inc.AcknowledgedBy), 80)
		}
	case notify.StatusResolved:
		if d := inc.Duration(); d > 0 {
			parts[0] += " after " + notify.HumanDuration(d)
		}
		if inc.ResolvedBy != "" {
			parts[0] += " by " + escN(oneLine(inc.ResolvedBy), 120)
		}
	}
	if inc.Severity != "" {
		parts = append(parts, "*"+esc(string(inc.Severity))+"*")
	}
	if !inc.StartedAt.IsZero() {
		parts = append(parts, "started "+date(inc.StartedAt))
	}
	if inc.Status == notify.StatusResolved && !inc.ResolvedAt.IsZero() {
		parts = append(parts, "resolved "+date(inc.ResolvedAt))
	}
	if inc.Reopened > 0 {
		parts = append(parts, fmt.Sprintf("🔁 reopened %d×", inc.Reopened))
	}
	if inc.Freeze != "" {
		parts = append(parts, "🧊 "+escN(oneLine(inc.Freeze), 300))
	}
	if inc.Breaker != "" {
		parts = append(parts, "🔌 "+escN(oneLine(inc.Breaker), 300))
	}
	if inc.Silence != "" {
		parts = append(parts, "🔕 "+escN(oneLine(inc.Silence), 200))
	}
	s := strings.Join(parts, " · ")

	var meta []string
	if inc.Source != "" {
		meta = append(meta, "source "+code(notify.Truncate(inc.Source, 80)))
	}
	if inc.Runbook != "" {
		meta = append(meta, "runbook "+code(notify.Truncate(inc.Runbook, 120)))
	}
	if len(meta) > 0 {
		s += "\n" + strings.Join(meta, " · ")
	}
	return s
}

func labelFields(labels map[string]string) []*slack.TextBlockObject {
	keys := notify.SortedKeys(labels)
	var fields []*slack.TextBlockObject
	for i, k := range keys {
		if len(fields) == maxFields-1 && len(keys)-i > 1 {
			fields = append(fields, mrkdwn(fmt.Sprintf("_+%d more labels_", len(keys)-i)))
			break
		}
		fields = append(fields, mrkdwn(clamp("*"+escN(k, 100)+"*\n"+escN(oneLine(labels[k]), 500), maxFieldText)))
	}
	return fields
}

func alertsText(inc notify.Incident, maxAlerts int) string {
	firing, resolved := inc.Counts()
	head := fmt.Sprintf("*Alerts* · %d firing, %d resolved", firing, resolved)
	shown := inc.Alerts
	hidden := 0
	if len(shown) > maxAlerts {
		hidden = len(shown) - maxAlerts
		shown = shown[:maxAlerts]
	}
	var ls []string
	for _, a := range shown {
		ls = append(ls, alertLine(a, inc.Labels))
	}
	if hidden > 0 {
		ls = append(ls, fmt.Sprintf("_+%d more alerts_", hidden))
	}
	if inc.TruncatedAlerts > 0 {
		ls = append(ls, fmt.Sprintf("⚠️ Alertmanager left out %d more alerts from its notification (max_alerts): the list is not complete", inc.TruncatedAlerts))
	}
	return lines(head, ls, maxSectionText, func(n int) string { return fmt.Sprintf("_+%d more lines_", n) })
}

func alertLine(a notify.Alert, common map[string]string) string {
	name := a.Name
	if name == "" {
		name = a.Fingerprint
	}
	s := notify.StatusEmoji(a.Status) + " *" + escN(oneLine(name), 100) + "*"
	if a.Summary != "" {
		s += " — " + escN(oneLine(a.Summary), 300)
	}
	// The labels that set this alert apart from the others.
	var own []string
	for _, k := range notify.SortedKeys(a.Labels) {
		if k == "alertname" {
			continue
		}
		if v, ok := common[k]; ok && v == a.Labels[k] {
			continue
		}
		own = append(own, k+"="+a.Labels[k])
	}
	if len(own) > 4 {
		own = append(own[:4], "…")
	}
	if len(own) > 0 {
		s += " " + code(notify.Truncate(strings.Join(own, " "), 200))
	}
	if a.Status == notify.StatusResolved && !a.EndsAt.IsZero() {
		s += " · resolved " + date(a.EndsAt)
	} else if !a.StartsAt.IsZero() {
		s += " · since " + date(a.StartsAt)
	}
	if a.GeneratorURL != "" {
		if _, ok := safeURL(a.GeneratorURL); ok {
			s += " · " + link(a.GeneratorURL, "source")
		}
	}
	return s
}

func assessmentText(steps []notify.Step) string {
	var ls []string
	for i, st := range steps {
		// Each line of a step on its own line, indented under its
		// number: a cause's check below its symptoms.
		text := notify.StepLines(st.Text)
		l := fmt.Sprintf("%d. ", i+1)
		if st.Link != "" {
			l += link(st.Link, notify.Truncate(text[0], 200))
		} else {
			l += escN(text[0], 300)
		}
		for _, more := range text[1:] {
			l += "\n      " + escN(more, 300)
		}
		ls = append(ls, l)
	}
	return lines("*Assessment*", ls, maxSectionText, func(n int) string { return fmt.Sprintf("_+%d more steps in the runbook_", n) })
}

// remediationBlocks renders the steps in at most budget blocks (at least
// 2): per step its plan, its policy, where its request stands and its
// buttons.
func remediationBlocks(inc notify.Incident, maxProposals, budget int) []slack.Block {
	ps := inc.Remediation
	blocks := []slack.Block{section("*Remediation* · buttons below, or `/incident run ID STEP` requests a step; approvers `/incident approve|deny ID STEP`")}
	shown := 0
	for i, p := range ps {
		if i >= maxProposals {
			break
		}
		step := proposalBlocks(inc, i, p)
		// Room for this step, and for the line counting those left out.
		room := budget - len(blocks)
		if i < len(ps)-1 {
			room--
		}
		if len(step) > room {
			break
		}
		blocks = append(blocks, step...)
		shown++
	}
	if n := len(ps) - shown; n > 0 {
		blocks = append(blocks, contextLine(fmt.Sprintf("_+%d more proposals in the runbook: `/incident run ID STEP`_", n)))
	}
	return blocks
}

// proposalBlocks is one step: its plan, policy, status and buttons.
func proposalBlocks(inc notify.Incident, i int, p notify.Proposal) []slack.Block {
	title := oneLine(p.Title)
	if title == "" {
		title = p.ID
	}
	s := fmt.Sprintf("*%d. %s*", i+1, escN(title, 150))
	if p.Action != "" {
		s += " · " + code(notify.Truncate(p.Action, 80))
	}
	switch {
	case p.Error != "":
		s += "\n⚠️ plan unavailable: " + escN(oneLine(p.Error), 500)
	case strings.TrimSpace(p.Plan) != "":
		s += "\n" + codeBlock(notify.Truncate(strings.TrimSpace(p.Plan), 2500))
	}
	blocks := []slack.Block{section(s)}

	var policy string
	if p.Automatic {
		policy = "⚙️ runs without approval when requested"
	} else {
		policy = "🔐 needs approval"
	}
	if p.Approval != "" {
		policy += ": " + escN(oneLine(p.Approval), 300)
	}
	if p.ID != "" {
		policy += " · step " + code(notify.Truncate(p.ID, 80))
	}
	if p.Hash != "" {
		policy += " · plan " + code(p.Hash[:min(len(p.Hash), shortHash)])
	}
	blocks = append(blocks, contextLine(policy))
	if p.Status != "" {
		blocks = append(blocks, contextLine("📋 "+escN(oneLine(p.Status), 600)))
	}
	if a := stepActions(inc, p); a != nil {
		blocks = append(blocks, a)
	}
	return blocks
}

func escalationText(levels []notify.EscalationLevel, state string) string {
	var ls []string
	for _, l := range levels {
		when := "immediately"
		if l.After > 0 {
			when = "after " + notify.HumanDuration(l.After)
		}
		s := "• *" + escN(oneLine(l.Name), 100) + "* — " + when
		if l.Who != "" {
			s += " → " + escN(oneLine(l.Who), 200)
		}
		ls = append(ls, s)
	}
	title := "*Escalation*"
	if state != "" {
		title += " · " + esc(oneLine(state))
	}
	return lines(title, ls, maxSectionText, func(n int) string { return fmt.Sprintf("_+%d more levels_", n) })
}

func linksText(inc notify.Incident) string {
	var parts []string
	if inc.RunbookURL != "" {
		parts = append(parts, "📖 "+link(inc.RunbookURL, "Runbook"))
	}
	for _, l := range inc.Links {
		if l.URL == "" {
			continue
		}
		parts = append(parts, "🔗 "+link(l.URL, l.Text))
	}
	return strings.Join(parts, " · ")
}

func footerText(inc notify.Incident) string {
	s := "incidentbot · " + esc(inc.ID)
	if inc.Version > 0 {
		s += fmt.Sprintf(" · v%d", inc.Version)
	}
	if !inc.UpdatedAt.IsZero() {
		s += " · updated " + date(inc.UpdatedAt)
	}
	return s
}
