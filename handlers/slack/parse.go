package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Verb is what an /incident command asks for.
type Verb string

// Verbs of /incident.
const (
	VerbHelp      Verb = "help"
	VerbList      Verb = "list"
	VerbShow      Verb = "show"
	VerbAck       Verb = "ack"
	VerbUnack     Verb = "unack"
	VerbResolve   Verb = "resolve"
	VerbNote      Verb = "note"
	VerbEscalate  Verb = "escalate"
	VerbSilence   Verb = "silence"
	VerbUnsilence Verb = "unsilence"
	VerbRPC       Verb = "rpc"
	VerbFlags     Verb = "flags"
	VerbReport    Verb = "report"
	VerbRun       Verb = "run"
	VerbApprove   Verb = "approve"
	VerbDeny      Verb = "deny"
	VerbFreeze    Verb = "freeze"
	VerbUnfreeze  Verb = "unfreeze"
	VerbRefresh   Verb = "refresh"
)

// usage is one line per verb, in the order help shows them.
var usage = []struct {
	verb Verb
	args string
	what string
}{
	{VerbList, "", "open incidents: id, severity, title, age, who acknowledged"},
	{VerbShow, "ID", "one incident: status, alerts, who did what"},
	{VerbAck, "ID", "acknowledge: you have it, escalation stops"},
	{VerbUnack, "ID", "withdraw the acknowledgement, escalation resumes"},
	{VerbResolve, "ID [note]", "resolve by hand, with an optional note"},
	{VerbNote, "ID TEXT", "add a note to the incident's thread"},
	{VerbEscalate, "ID", "call the next escalation level now"},
	{VerbSilence, "ID DURATION", "silence the incident's alerts in Alertmanager, e.g. 1h"},
	{VerbUnsilence, "ID", "expire that silence"},
	{VerbRPC, "", "the Solana RPC endpoints, best first"},
	{VerbFlags, "", "feature flags and their state (read-only)"},
	{VerbReport, "ID", "the incident's timeline with time to acknowledge and resolve"},
	{VerbRun, "ID STEP", "request a remediation step (its id in the runbook) for the plan shown now"},
	{VerbApprove, "ID STEP", "approve the pending request of a step"},
	{VerbDeny, "ID STEP", "deny the pending request of a step"},
	{VerbRefresh, "ID", "redraw the incident's card, its steps planned again as things are now"},
	{VerbFreeze, "[reason]", "kill switch: no remediation runs anywhere until unfreeze"},
	{VerbUnfreeze, "", "lift the kill switch"},
	{VerbHelp, "", "this list"},
}

// aliases map other words people type to verbs.
var aliases = map[string]Verb{
	"acknowledge": VerbAck, "unacknowledge": VerbUnack, "ls": VerbList, "?": VerbHelp,
	"comment": VerbNote, "mute": VerbSilence, "unmute": VerbUnsilence,
}

// Request is a parsed /incident command.
type Request struct {
	Verb Verb
	// Incident is the id as typed (lookups ignore case and the INC- prefix).
	Incident string
	// Text is a note's text or a resolution's note.
	Text string
	// Duration is how long to silence.
	Duration time.Duration
	// Step is a remediation step's id (run, approve, deny).
	Step string
}

// String renders the request back as command text.
func (r Request) String() string {
	parts := []string{string(r.Verb)}
	if r.Incident != "" {
		parts = append(parts, r.Incident)
	}
	if r.Duration > 0 {
		parts = append(parts, formatDuration(r.Duration))
	}
	if r.Step != "" {
		parts = append(parts, r.Step)
	}
	if r.Text != "" {
		parts = append(parts, r.Text)
	}
	return strings.Join(parts, " ")
}

// maxText bounds a note; Slack's own limit for a command's text is lower.
const maxText = 3000

// maxSilence bounds what the parser accepts; the silencer applies its own,
// lower, limit.
const maxSilence = 30 * 24 * time.Hour

// UsageError is input that is not a command; its message says what is
// wrong, and the reply adds the usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Parse reads the text after /incident. Empty text is help. Words are
// separated by any white space; a verb is matched without regard to case;
// the note of resolve and note is everything after the id, as typed.
func Parse(text string) (Request, error) {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	word, rest := cut(text)
	if word == "" {
		return Request{Verb: VerbHelp}, nil
	}
	lw := strings.ToLower(word)
	v, ok := aliases[lw]
	if !ok {
		v = Verb(lw)
	}
	r := Request{Verb: v}
	switch v {
	case VerbFreeze:
		if len(rest) > maxText {
			return Request{}, usagef("the reason is %d characters long; keep it under %d", len(rest), maxText)
		}
		r.Text = rest
		return r, nil
	case VerbHelp, VerbList, VerbRPC, VerbFlags, VerbUnfreeze:
		if rest != "" && v != VerbHelp {
			return Request{}, usagef("`%s` takes no arguments", v)
		}
		return r, nil
	case VerbShow, VerbAck, VerbUnack, VerbEscalate, VerbUnsilence, VerbReport, VerbResolve, VerbNote, VerbSilence, VerbRun, VerbApprove, VerbDeny, VerbRefresh:
	default:
		return Request{}, usagef("unknown command %q", clip(word, 40))
	}
	id, rest := cut(rest)
	if id == "" {
		return Request{}, usagef("`%s` needs an incident id, e.g. `%s INC-7F3A2C`", v, v)
	}
	if !validID(id) {
		return Request{}, usagef("%q is not an incident id (like INC-7F3A2C)", clip(id, 40))
	}
	r.Incident = id
	switch v {
	case VerbResolve:
		r.Text = rest
	case VerbNote:
		if rest == "" {
			return Request{}, usagef("`note` needs text: `note %s what you found`", id)
		}
		r.Text = rest
	case VerbSilence:
		d, more := cut(rest)
		if d == "" {
			return Request{}, usagef("`silence` needs a duration: `silence %s 1h`", id)
		}
		if more != "" {
			return Request{}, usagef("`silence` takes an id and a duration, nothing more")
		}
		dur, err := parseDuration(d)
		if err != nil {
			return Request{}, err
		}
		r.Duration = dur
	case VerbRun, VerbApprove, VerbDeny:
		step, more := cut(rest)
		if step == "" {
			return Request{}, usagef("`%s` needs a step id from the runbook: `%s %s disable-feature`", v, v, id)
		}
		if more != "" || !validStep(step) {
			return Request{}, usagef("`%s` takes an incident id and one step id (lower-case letters, digits, '_', '-')", v)
		}
		r.Step = step
	default:
		if rest != "" {
			return Request{}, usagef("`%s` takes only an incident id", v)
		}
	}
	if len(r.Text) > maxText {
		return Request{}, usagef("the text is %d characters long; keep it under %d", len(r.Text), maxText)
	}
	return r, nil
}

// cut splits off the first word; rest has no leading or trailing space.
func cut(s string) (word, rest string) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// validID accepts what engine ids can be: letters, digits, '-' and '_',
// at most 68 characters ("INC-" and 64).
func validID(id string) bool {
	if id == "" || len(id) > 68 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validStep accepts what runbook step ids can be, and their revert
// steps (revert-<id>).
func validStep(s string) bool {
	if len(s) > 64+len("revert-") {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseDuration reads 90m, 1h30m, 2h or 1d.
func parseDuration(s string) (time.Duration, error) {
	bad := usagef("%q is not a duration: want e.g. 30m, 1h, 1h30m or 1d", clip(s, 40))
	var d time.Duration
	if days, ok := strings.CutSuffix(strings.ToLower(s), "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 30 {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(strings.ToLower(s)); err != nil {
			return 0, bad
		}
	}
	if d < time.Minute {
		return 0, usagef("a silence shorter than a minute does nothing: want e.g. 30m or 1h")
	}
	if d > maxSilence {
		return 0, usagef("%s is too long a silence", formatDuration(d))
	}
	return d, nil
}

// formatDuration renders a duration as parseDuration reads it back:
// 1d, 1h30m, 45m.
func formatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	if d <= 0 || d%time.Minute != 0 {
		return d.String()
	}
	s := ""
	if h := d / time.Hour; h > 0 {
		s = strconv.Itoa(int(h)) + "h"
	}
	if m := (d % time.Hour) / time.Minute; m > 0 {
		s += strconv.Itoa(int(m)) + "m"
	}
	return s
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// Usage is the help text for a slash command named command ("/incident").
func Usage(command string) string {
	if command == "" {
		command = "/incident"
	}
	var b strings.Builder
	b.WriteString("*Usage:*\n")
	for _, u := range usage {
		line := command + " " + string(u.verb)
		if u.args != "" {
			line += " " + u.args
		}
		fmt.Fprintf(&b, "• `%s` — %s\n", line, u.what)
	}
	b.WriteString("IDs ignore case, and the INC- prefix may be left out.")
	return b.String()
}
