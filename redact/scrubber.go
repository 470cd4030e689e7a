package redact

import (
	"net/url"
	"slices"
	"strings"
)

// Scrubber redacts text that may carry known URLs (configured RPC
// endpoints, say) in any form: every URL in the text by structure (see
// URL), and then each secret part of the known URLs — password, query
// values, token-like path segments — wherever it still appears, raw,
// unescaped or escaped, for the library that quoted only a piece of a URL.
// It is safe for concurrent use.
type Scrubber struct {
	parts []string
}

// minPart is the shortest secret part a Scrubber replaces on its own:
// shorter ones (a user name "u", a value "1") would mask ordinary words.
const minPart = 6

// NewScrubber returns a Scrubber for the secrets in urls.
func NewScrubber(urls ...string) *Scrubber {
	seen := map[string]bool{}
	add := func(p string) {
		for _, v := range []string{p, unescape(p), url.PathEscape(unescape(p)), url.QueryEscape(unescape(p))} {
			if len(v) >= minPart && !seen[v] {
				seen[v] = true
			}
		}
	}
	for _, raw := range urls {
		for _, p := range secretParts(raw) {
			add(p)
		}
	}
	s := &Scrubber{}
	for p := range seen {
		s.parts = append(s.parts, p)
	}
	// Longest first, so that a part containing another goes whole.
	slices.SortFunc(s.parts, func(a, b string) int { return len(b) - len(a) })
	return s
}

// String returns text with the URLs in it and the known secrets redacted.
func (s *Scrubber) String(text string) string {
	text = Text(text)
	for _, p := range s.parts {
		text = strings.ReplaceAll(text, p, Mask)
	}
	return text
}

// secretParts lists the parts of raw that may be secret, in raw's own
// escaping: the password, and the user name, path segments, query keys and
// values that look like tokens or follow a name like api-key.
func secretParts(raw string) []string {
	var out []string
	s := strings.TrimSpace(raw)
	if i := strings.Index(s, "://"); i > 0 {
		s = s[i+3:]
	}
	end := strings.IndexAny(s, "/?#")
	if end < 0 {
		end = len(s)
	}
	authority, rest := s[:end], s[end:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, pass, _ := strings.Cut(authority[:at], ":")
		if looksLikeToken(unescape(user)) {
			out = append(out, user)
		}
		out = append(out, pass)
	}
	path, query := rest, ""
	if i := strings.IndexByte(path, '#'); i >= 0 {
		out = append(out, path[i+1:])
		path = path[:i]
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	keyNext := false
	for _, seg := range strings.Split(path, "/") {
		dec := unescape(seg)
		if seg != "" && (keyNext || looksLikeToken(dec)) {
			out = append(out, seg)
		}
		keyNext = namesSecret(dec)
	}
	for _, it := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(it, "=")
		if looksLikeToken(unescape(k)) {
			out = append(out, k)
		}
		// Values only when they may be secret: ?commitment=confirmed
		// must not mask the word everywhere.
		if v != "" && (namesSecret(unescape(k)) || looksLikeToken(unescape(v)) || len(v) >= 16) {
			out = append(out, v)
		}
	}
	return out
}
