package slack

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// Storm card limits: the incidents listed, and the blocks they may take,
// so that the card stays readable and within Slack's 50 blocks and 3000
// characters per section whatever the storm holds.
const (
	// DefaultMaxStormEntries is RenderOptions.MaxStormEntries' default.
	DefaultMaxStormEntries = 100
	maxStormSections       = 40
	maxStormTitle          = 100
)

// stormBlocks renders a channel's storm card: a header with the count,
// the state and counts by severity, then the incidents worst first, as
// many as fit, and how many more of each severity did not.
func stormBlocks(inc notify.Incident, opts RenderOptions) []slack.Block {
	st := inc.Storm
	limit := opts.MaxStormEntries
	if limit <= 0 {
		limit = DefaultMaxStormEntries
	}
	bySev, resolved := st.Counts()
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, StormHeaderText(inc), true, false)),
		section(stormStatusText(st, bySev, resolved)),
		slack.NewDividerBlock(),
	}
	var cur string
	shown := 0
	sections := 0
	for _, e := range st.Entries {
		if shown == limit {
			break
		}
		l := stormLine(e)
		next := joinLine(cur, l)
		if utf8.RuneCountInString(next) > maxSectionText {
			if sections == maxStormSections-1 {
				break
			}
			blocks = append(blocks, section(cur))
			sections++
			next = l
		}
		cur = next
		shown++
	}
	if cur != "" {
		blocks = append(blocks, section(cur))
	}
	if rest := st.Entries[shown:]; len(rest) > 0 || len(st.Unlisted) > 0 {
		more := map[notify.Severity]int{}
		n := len(rest)
		for sev, u := range st.Unlisted {
			more[sev] += u
			n += u
		}
		res := 0
		for _, e := range rest {
			more[e.Severity]++
			if e.Status == notify.StatusResolved {
				res++
			}
		}
		blocks = append(blocks, contextLine(fmt.Sprintf("… and %d more: %s · `/incident list` shows the open ones",
			n, esc(notify.CountsText(more, res)))))
	}
	blocks = append(blocks, contextLine(footerText(notify.Incident{ID: inc.ID, UpdatedAt: inc.UpdatedAt})))
	return blocks
}

// StormHeaderText is a storm card's header: "🌩 Alert storm in #alerts · 60
// incidents", with a check mark once it is over.
func StormHeaderText(inc notify.Incident) string {
	st := inc.Storm
	head := "🌩 Alert storm in " + oneLine(st.Channel)
	if st.Over {
		head = "✅ Alert storm over in " + oneLine(st.Channel)
	}
	return notify.Truncate(fmt.Sprintf("%s · %d incidents", head, st.Total()), maxHeaderText)
}

func stormStatusText(st *notify.Storm, bySev map[notify.Severity]int, resolved int) string {
	var b strings.Builder
	if st.Over {
		fmt.Fprintf(&b, "*Over* · %s to %s (%s)", date(st.Since), date(st.Until), notify.HumanDuration(st.Until.Sub(st.Since)))
	} else {
		fmt.Fprintf(&b, "🔥 *Ongoing* since %s", date(st.Since))
	}
	if c := notify.CountsText(bySev, resolved); c != "" {
		b.WriteString(" · " + esc(c))
	}
	if st.Over {
		b.WriteString("\nNew incidents in this channel get their own card again.")
	} else {
		b.WriteString("\nSo many incidents opened in this channel that they are listed here instead of getting a card each; " +
			"this card is edited as they change. `/incident show ID` shows one, and every command works by id.")
	}
	return b.String()
}

func stormLine(e notify.StormEntry) string {
	emoji := notify.SeverityEmoji(e.Severity)
	if e.Status == notify.StatusResolved {
		emoji = notify.StatusEmoji(notify.StatusResolved)
	}
	return fmt.Sprintf("%s *%s* · %s · %s", emoji, esc(e.ID), esc(strings.ToLower(notify.StatusWord(e.Status))),
		escN(oneLine(e.Title), maxStormTitle))
}

// stormFallbackText is a storm card's plain text.
func stormFallbackText(inc notify.Incident) string {
	bySev, resolved := inc.Storm.Counts()
	return clamp(esc(StormHeaderText(inc)+": "+notify.CountsText(bySev, resolved)), maxFallbackText)
}
