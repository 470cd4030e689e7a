package actions

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"gopkg.in/yaml.v3"
)

// Template is a string that may hold Go text/template expressions over
// PlanData ({{ .Labels.namespace }}). Its syntax is checked when the
// runbook loads; it is rendered when a plan is made.
type Template struct {
	raw string
	t   *template.Template
}

// maxTemplateOutput bounds a rendered template.
const maxTemplateOutput = 64 << 10

// Funcs are the functions templates may call besides text/template's own.
var Funcs = template.FuncMap{
	"default": func(def string, v any) string {
		if s := fmt.Sprint(v); v != nil && s != "" && s != "<no value>" {
			return s
		}
		return def
	},
	"lower":     strings.ToLower,
	"upper":     strings.ToUpper,
	"trimSpace": strings.TrimSpace,
	"percent": func(v any) string {
		switch f := v.(type) {
		case float64:
			return fmt.Sprintf("%.1f%%", f*100)
		case float32:
			return fmt.Sprintf("%.1f%%", f*100)
		case int64: // a rate of exactly 0 or 1, see DataFromSignal
			return fmt.Sprintf("%.1f%%", float64(f)*100)
		case int:
			return fmt.Sprintf("%.1f%%", float64(f)*100)
		}
		return fmt.Sprint(v)
	},
}

// ParseTemplate checks s's template syntax.
func ParseTemplate(s string) (Template, error) {
	if !strings.Contains(s, "{{") {
		return Template{raw: s}, nil
	}
	t, err := template.New("").Option("missingkey=zero").Funcs(Funcs).Parse(s)
	if err != nil {
		return Template{}, fmt.Errorf("invalid template: %s", strings.TrimPrefix(err.Error(), "template: :"))
	}
	return Template{raw: s, t: t}, nil
}

// MustTemplate is ParseTemplate for literals known to be valid; it panics
// otherwise.
func MustTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// UnmarshalStrictYAML decodes and parses a template string.
func (t *Template) UnmarshalStrictYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!bool" {
		return errors.New("expected a string")
	}
	p, err := ParseTemplate(n.Value)
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// String is the template's source text.
func (t Template) String() string { return t.raw }

// IsZero reports whether the template is empty.
func (t Template) IsZero() bool { return t.raw == "" }

// Static reports whether the template has no expressions, so its value is
// known at load time.
func (t Template) Static() bool { return t.t == nil }

// Render executes the template with data. A missing map key renders as
// the empty string ("<no value>" never reaches a plan).
func (t Template) Render(data any) (string, error) {
	if t.t == nil {
		return t.raw, nil
	}
	var b limitedBuffer
	if err := t.t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %q: %s", t.raw, strings.TrimPrefix(err.Error(), "template: :"))
	}
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxTemplateOutput {
		return 0, errors.New("output too long")
	}
	return b.Buffer.Write(p)
}

// Ref is one value a template reads from the signal: a label, an
// annotation or a field ({{ .Labels.program_id }} reads label program_id).
type Ref struct {
	// Kind is "label", "annotation" or "field".
	Kind string
	Key  string
}

// refKinds maps the PlanData maps to the kind of value they hold.
var refKinds = map[string]string{"Labels": "label", "Annotations": "annotation", "Fields": "field"}

// Refs lists the labels, annotations and fields the template reads, in
// the order they appear, once each.
func (t Template) Refs() []Ref {
	if t.t == nil || t.t.Tree == nil {
		return nil
	}
	var out []Ref
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe) // inside, dot is the value, not the signal
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.ElseList)
		case *parse.FieldNode:
			if len(n.Ident) >= 2 {
				if kind, ok := refKinds[n.Ident[0]]; ok {
					r := Ref{Kind: kind, Key: n.Ident[1]}
					if !slices.Contains(out, r) {
						out = append(out, r)
					}
				}
			}
		}
	}
	walk(t.t.Tree.Root)
	return out
}
