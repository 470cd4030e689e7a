package notify

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Truncate shortens s to at most n characters (runes), ending with "…" when
// it cut something. It never splits a UTF-8 sequence; invalid bytes are
// replaced so the result is always valid UTF-8.
func Truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for j := range s {
		if count == n-1 {
			i = j
			break
		}
		count++
	}
	return s[:i] + "…"
}

// SeverityEmoji returns the emoji shown next to an incident of severity s.
func SeverityEmoji(s Severity) string {
	switch s {
	case SeverityCritical:
		return "🔴"
	case SeverityWarning:
		return "🟠"
	case SeverityInfo:
		return "🔵"
	default:
		return "⚪"
	}
}

// StatusEmoji returns the emoji for an incident or alert status.
func StatusEmoji(s Status) string {
	switch s {
	case StatusFiring:
		return "🔥"
	case StatusAcknowledged:
		return "👀"
	case StatusResolved:
		return "✅"
	default:
		return "❔"
	}
}

// StatusWord returns the status in capitals ("FIRING"), as shown on cards.
func StatusWord(s Status) string {
	if s == "" {
		return "UNKNOWN"
	}
	return strings.ToUpper(string(s))
}

// HumanDuration formats d for people: "45s", "12m", "1h05m", "2d03h".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// StepLines splits an assessment step's text into its lines, each with
// its spaces folded, empty ones dropped; at least one (maybe empty) line.
// Sinks render them apart: "Cause — X: symptoms" then "Check: command".
func StepLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// SortedKeys returns m's keys in order, for stable rendering.
func SortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// Counts returns how many of inc's alerts are firing and resolved.
func (inc Incident) Counts() (firing, resolved int) {
	for _, a := range inc.Alerts {
		if a.Status == StatusResolved {
			resolved++
		} else {
			firing++
		}
	}
	return firing, resolved
}

// Duration returns how long the incident has lasted: until ResolvedAt when
// resolved, else until UpdatedAt. It is zero when StartedAt is unknown.
func (inc Incident) Duration() time.Duration {
	if inc.StartedAt.IsZero() {
		return 0
	}
	end := inc.UpdatedAt
	if !inc.ResolvedAt.IsZero() {
		end = inc.ResolvedAt
	}
	if end.Before(inc.StartedAt) {
		return 0
	}
	return end.Sub(inc.StartedAt)
}
