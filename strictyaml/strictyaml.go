// Package strictyaml decodes yaml.v3 nodes into tagged Go structs strictly:
// unknown keys, duplicate keys, wrong kinds and aliases are errors, and
// every error carries the YAML line and the YAML path (keys as written in
// the file, never Go type names). Actions decode their parameters with it
// and the runbook loader decodes whole runbooks with it, so a typo anywhere
// in a runbook is reported the same way.
package strictyaml

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem found while decoding, at a position in the YAML.
type Error struct {
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Path is the YAML path, e.g. "remediation[1].params.replicas".
	Path string
	Msg  string
}

// Error formats the problem as "line N: path: msg".
func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
}

// At returns an Error positioned at node n.
func At(n *yaml.Node, path, format string, args ...any) *Error {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// Flatten returns every *Error inside err (walking errors.Join trees).
// Errors that are not *Error are returned as an Error with line 0 and
// their text as message.
func Flatten(err error) []*Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && err == error(e) {
		return []*Error{e}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, x := range j.Unwrap() {
			out = append(out, Flatten(x)...)
		}
		return out
	}
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return []*Error{{Msg: err.Error()}}
}

// Join returns the errors joined with errors.Join, or nil when there are none.
func Join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	es := make([]error, len(errs))
	for i, e := range errs {
		es[i] = e
	}
	return errors.Join(es...)
}

// Unmarshaler is implemented by types that decode themselves from a node
// (durations, templates, matchers). The returned error's text becomes the
// message of an Error positioned at the node.
type Unmarshaler interface {
	UnmarshalStrictYAML(n *yaml.Node) error
}

// Duration is a time.Duration written as a Go duration string ("90s",
// "15m", "1h30m") or with a day suffix ("1d").
type Duration time.Duration

// UnmarshalStrictYAML parses the duration.
func (d *Duration) UnmarshalStrictYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return fmt.Errorf("expected a duration like 30s, 15m or 1h, got %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration, also accepting a whole number of
// days ("2d"). Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("invalid duration %q: want a duration like 30s, 15m, 1h30m or 2d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a duration like 30s, 15m, 1h30m or 2d", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative; want a duration like 30s", s)
	}
	return v, nil
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// Decode decodes n into out (a non-nil pointer) and returns every problem
// found, joined. path is the YAML path of n ("" at the document root).
//
// Struct fields are matched by their `yaml:"name"` tag (fields without a
// tag or tagged "-" are skipped); a field tagged `required:"true"` must be
// present. A field of type yaml.Node receives the node as is, for decoding
// later (action parameters).
func Decode(n *yaml.Node, path string, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return &Error{Path: path, Msg: "internal: decode target is not a pointer"}
	}
	d := decoder{}
	d.value(n, path, v.Elem())
	return Join(d.errs)
}

type decoder struct {
	errs []*Error
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, At(n, path, format, args...))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		}
		return "a string"
	}
	return "something else"
}

func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "YAML aliases are not supported")
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(Unmarshaler).UnmarshalStrictYAML(n); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				d.errs = append(d.errs, Flatten(err)...)
				return
			}
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	if v.Type() == durationType {
		var dd Duration
		if err := dd.UnmarshalStrictYAML(n); err != nil {
			d.fail(n, path, "%s", err.Error())
			return
		}
		v.SetInt(int64(dd))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(n, path, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", kindName(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			d.fail(n, path, "internal: map keys must be strings")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!null" {
				d.fail(k, path, "keys must be strings")
				continue
			}
			if seen[k.Value] {
				d.fail(k, join(path, k.Value), "duplicate key")
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(val, join(path, k.Value), e)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!bool" {
			d.fail(n, path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			// YAML 1.1 spellings yaml.v3 still tags !!bool are not accepted.
			d.fail(n, path, "expected true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "expected an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		// int is kept within 32 bits so a value means the same everywhere.
		if err != nil || v.OverflowInt(i) || (v.Kind() == reflect.Int && (i > math.MaxInt32 || i < math.MinInt32)) {
			d.fail(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "expected a non-negative integer, got %s", kindName(n))
			return
		}
		u, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || v.OverflowUint(u) {
			d.fail(n, path, "expected a non-negative integer, got %s", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.fail(n, path, "expected a number, got %s", kindName(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			d.fail(n, path, "invalid number %q", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "internal: cannot decode into %s", v.Kind())
	}
}

type field struct {
	name     string
	index    int
	required bool
}

// Fields lists the YAML keys of struct type t, in declaration order.
func Fields(t reflect.Type) []string {
	var out []string
	for _, f := range fieldsOf(t) {
		out = append(out, f.name)
	}
	return out
}

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" || !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			continue
		}
		out = append(out, field{name: name, index: i, required: sf.Tag.Get("required") == "true"})
	}
	return out
}

func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	fs := fieldsOf(v.Type())
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be strings")
			continue
		}
		kp := join(path, k.Value)
		if seen[k.Value] {
			d.fail(k, kp, "duplicate key")
			continue
		}
		seen[k.Value] = true
		j := slices.IndexFunc(fs, func(f field) bool { return f.name == k.Value })
		if j < 0 {
			d.fail(k, kp, "unknown key %q%s", k.Value, suggest(k.Value, fs))
			continue
		}
		d.value(val, kp, v.Field(fs[j].index))
	}
	for _, f := range fs {
		if f.required && !seen[f.name] {
			d.fail(n, join(path, f.name), "required")
		}
	}
}

// suggest names the closest known key, or lists the known keys.
func suggest(key string, fs []field) string {
	best, bestD := "", 3
	var names []string
	for _, f := range fs {
		names = append(names, f.name)
		if dd := Distance(key, f.name); dd < bestD {
			best, bestD = f.name, dd
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(names) == 0 {
		return " (no keys allowed)"
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// Distance is the Levenshtein distance, capped for long inputs (used for
// "did you mean" hints).
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// join appends key to a YAML path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Key appends key to a YAML path ("a.b" + "c" = "a.b.c").
func Key(path, key string) string { return join(path, key) }

// Index appends an index to a YAML path ("a" + 2 = "a[2]").
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// Lookup returns the value node of key in mapping n, or nil.
func Lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// SyntaxError reads a yaml.v3 parse error: the line it names (1 when it
// names none) and its message without the "yaml: " and "line N:" parts,
// for a problem placed at file:line.
func SyntaxError(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	line = 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if l, err := strconv.Atoi(m[1]); err == nil && l > 0 {
			line = l
		}
		msg = strings.TrimSpace(strings.TrimPrefix(strings.Replace(msg, m[0], "", 1), ":"))
	}
	return line, msg
}
