// Package redact removes what may be a secret from URLs, and from text and
// errors that may carry URLs, before they reach any output: a log line, an
// error, a metric label, the CLI, a stored record. It works by structure,
// not by exact string, so a URL that a library normalised (re-escaped,
// stripped of a slash) is redacted as surely as the configured one:
//
//   - userinfo (user and password) is dropped;
//   - every query value is dropped, and a query key that looks like a token;
//   - a path segment that looks like a token (an API key in the path, as
//     Alchemy's /v2/<key>, QuickNode's /<token>/ or a UUID), and any segment
//     after one named like key, token or secret, is dropped;
//   - the fragment is dropped.
//
// The scheme, host, port and ordinary path segments stay, so an operator can
// still tell which endpoint a line is about. The secret package is the other
// half: a value known to be secret prints as <secret>.
package redact

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Mask replaces what was removed.
const Mask = "<redacted>"

// URL returns raw with its secrets replaced by Mask. It never fails: a URL
// that does not parse is cut up the same way, by its delimiters.
func URL(raw string) string {
	s := strings.TrimSpace(raw)
	var b strings.Builder
	rest := s
	if i := strings.Index(s, "://"); i > 0 && schemeRE.MatchString(s[:i]) {
		b.WriteString(s[:i+3])
		rest = s[i+3:]
	} else if strings.HasPrefix(s, "//") {
		b.WriteString("//")
		rest = s[2:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, rest := rest[:end], rest[end:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		b.WriteString(Mask + "@")
		authority = authority[at+1:]
	}
	b.WriteString(authority)
	path, query, fragment := rest, "", ""
	hasQuery, hasFragment := false, false
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, fragment, hasFragment = path[:i], path[i+1:], true
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query, hasQuery = path[:i], path[i+1:], true
	}
	b.WriteString(redactPath(path))
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(redactQuery(query))
	}
	if hasFragment && fragment != "" {
		b.WriteString("#" + Mask)
	}
	return b.String()
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*$`)

// redactPath masks the segments of an escaped path that look like tokens,
// and every segment after one whose name says a key follows.
func redactPath(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, "/")
	keyNext := false
	for i, seg := range segs {
		if seg == "" {
			continue
		}
		dec := unescape(seg)
		if keyNext || looksLikeToken(dec) {
			segs[i] = Mask
		}
		keyNext = namesSecret(dec)
	}
	return strings.Join(segs, "/")
}

// redactQuery keeps the keys of a raw query and masks every value, and a
// key that looks like a token itself (?<token>).
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	items := strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' })
	for i, it := range items {
		k, _, hasValue := strings.Cut(it, "=")
		if looksLikeToken(unescape(k)) {
			k = Mask
		}
		if hasValue {
			items[i] = k + "=" + Mask
		} else {
			items[i] = k
		}
	}
	return strings.Join(items, "&")
}

func unescape(s string) string {
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	return s
}

var uuidRE = regexp.MustCompile(`(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$`)

// looksLikeToken reports whether s could be an API key: a UUID, a long
// string, or a shorter one mixing letters and digits. Words such as v2,
// rpc, solana or mainnet-beta are not.
func looksLikeToken(s string) bool {
	if len(s) >= 24 || uuidRE.MatchString(s) {
		return true
	}
	if len(s) < 10 {
		return false
	}
	var letters, digits int
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters++
		}
	}
	return letters > 0 && digits > 0
}

// namesSecret reports whether a path segment announces a key in the next
// one (/token/<t>, /api-key/<k>).
func namesSecret(s string) bool {
	s = strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
	switch s {
	case "key", "apikey", "token", "accesstoken", "secret", "password", "auth", "xtoken", "authtoken":
		return true
	}
	return false
}

// urlInText finds URLs in free text: a scheme, "://", and everything up to
// white space or a quote.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// Text returns s with every URL in it redacted (see URL).
func Text(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		trimmed := strings.TrimRight(m, ".,;:)]}!")
		return URL(trimmed) + m[len(trimmed):]
	})
}

// Error returns err with every URL in its text redacted, or err itself when
// its text carries none. A *url.Error repeats its URL raw, with or without
// a scheme; each one in err's chain is found and its URL redacted in the
// text. The result unwraps to err, so errors.Is and errors.As still match
// it; print the result, never what it unwraps to.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	out := msg
	for _, ue := range urlErrors(err, nil) {
		red := URL(ue.URL)
		out = strings.ReplaceAll(out, strconv.Quote(ue.URL), strconv.Quote(red))
		out = strings.ReplaceAll(out, ue.URL, red)
	}
	out = Text(out)
	if out == msg {
		return err
	}
	return &redacted{msg: out, err: err}
}

// urlErrors collects the *url.Error values in err's tree.
func urlErrors(err error, acc []*url.Error) []*url.Error {
	if err == nil || len(acc) > 32 {
		return acc
	}
	if ue, ok := err.(*url.Error); ok && ue.URL != "" {
		acc = append(acc, ue)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		acc = urlErrors(u.Unwrap(), acc)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			acc = urlErrors(e, acc)
		}
	}
	return acc
}

// redacted is an error whose text was redacted.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Errorf is fmt.Errorf whose text is redacted (see Error).
func Errorf(format string, args ...any) error { return Error(fmt.Errorf(format, args...)) }

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts every URL
// in a log line: in strings, errors and values that print themselves (a
// *url.URL prints its password). Set it on the process's handler so that
// no log line, whoever writes it, carries a URL's secret.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "://") {
			a.Value = slog.StringValue(Text(s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			if r := Error(v); r != v {
				a.Value = slog.StringValue(r.Error())
			}
		case fmt.Stringer:
			if s, ok := stringOf(v); ok && strings.Contains(s, "://") {
				a.Value = slog.StringValue(Text(s))
			}
		}
	}
	return a
}

// stringOf calls String, which may panic on a nil pointer.
func stringOf(v fmt.Stringer) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	return v.String(), true
}
