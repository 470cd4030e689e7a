package slack

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/incidentbot/incidentbot/notify"
)

// Block Kit limits (docs.slack.dev/reference/block-kit/blocks).
const (
	maxHeaderText   = 150
	maxSectionText  = 3000
	maxFieldText    = 2000
	maxFields       = 10
	maxBlocks       = 50
	maxContextElems = 10
	maxFallbackText = 3000
)

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// esc escapes Slack's mrkdwn control characters in user-provided text and
// makes it valid UTF-8.
func esc(s string) string {
	return mrkdwnEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// escN truncates s to n characters, then escapes it, so an entity such as
// "&amp;" is never cut in half.
func escN(s string, n int) string { return esc(notify.Truncate(s, n)) }

// oneLine folds newlines so a value stays on its line of a list.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// code renders s as inline code; backticks cannot be escaped in mrkdwn, so
// they are replaced with a look-alike.
func code(s string) string {
	return "`" + strings.ReplaceAll(esc(s), "`", "ˋ") + "`"
}

// codeBlock renders s as a preformatted block.
func codeBlock(s string) string {
	return "```" + strings.ReplaceAll(esc(s), "```", "ˋˋˋ") + "```"
}

// safeURL reports whether raw is an absolute http(s) URL and returns it in
// a form that cannot break out of a mrkdwn link: the characters that end
// or split a link are percent-encoded, & is escaped as Slack expects.
func safeURL(raw string) (string, bool) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	r := strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C", " ", "%20", "\n", "", "\r", "", "\t", "")
	return r.Replace(raw), true
}

// link renders <url|text>, or just the escaped text when the URL is not a
// usable http(s) URL. An empty text shows the URL.
func link(rawURL, text string) string {
	u, ok := safeURL(rawURL)
	text = oneLine(text)
	if !ok {
		if text == "" {
			return esc(rawURL)
		}
		return esc(text)
	}
	if text == "" {
		return "<" + u + ">"
	}
	return "<" + u + "|" + escN(text, 200) + ">"
}

// clamp cuts already-rendered mrkdwn to n characters without leaving half
// a link or half an entity behind: it prefers a line boundary.
func clamp(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	cut := notify.Truncate(s, n-1)
	cut = strings.TrimSuffix(cut, "…")
	if i := strings.LastIndexByte(cut, '\n'); i > len(cut)/2 {
		cut = cut[:i]
	}
	if lt, gt := strings.LastIndexByte(cut, '<'), strings.LastIndexByte(cut, '>'); lt > gt {
		cut = cut[:lt]
	}
	if amp, semi := strings.LastIndexByte(cut, '&'), strings.LastIndexByte(cut, ';'); amp > semi {
		cut = cut[:amp]
	}
	return cut + "…"
}

// lines joins head and as many whole lines as fit in limit characters,
// ending with more(n) for the n lines that did not fit.
func lines(head string, ls []string, limit int, more func(n int) string) string {
	out := head
	for i, l := range ls {
		next := joinLine(out, l)
		room := limit
		if i < len(ls)-1 {
			room -= 80 // keep room for the "+N more" line
		}
		if utf8.RuneCountInString(next) > room {
			return clamp(joinLine(out, more(len(ls)-i)), limit)
		}
		out = next
	}
	return clamp(out, limit)
}

func joinLine(a, b string) string {
	if a == "" {
		return b
	}
	return a + "\n" + b
}
