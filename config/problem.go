package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/strictyaml"
)

// Problem is one thing wrong with a configuration, reported where the
// value was set, in the runbooks' format: "bot.yaml:12: engine.reopen_window:
// must be a positive duration like 1h, got -5m". A value set by an
// environment variable or a flag names that instead of a file line.
type Problem struct {
	// File and Line locate the key in the configuration file; Line is 0
	// when the value did not come from the file.
	File string
	Line int
	// Origin names where a value that is not from the file was set: an
	// INCIDENTBOT_ variable or "command line". Empty for the file and for
	// defaults.
	Origin string
	// Path is the YAML path of the key, e.g. "engine.reopen_window".
	Path string
	Msg  string
	// Missing marks a file the configuration names (a *_file secret,
	// bus.creds_file) that does not exist on this host: the configuration
	// itself may be fine, the host lacks the file.
	Missing bool
}

// Error formats the problem as "file:line: path: message".
func (p *Problem) Error() string {
	parts := make([]string, 0, 3)
	switch {
	case p.File != "" && p.Line > 0:
		parts = append(parts, p.File+":"+strconv.Itoa(p.Line))
	case p.Origin != "":
		parts = append(parts, p.Origin)
	case p.File != "":
		parts = append(parts, p.File)
	}
	if p.Path != "" {
		parts = append(parts, p.Path)
	}
	return strings.Join(append(parts, p.Msg), ": ")
}

// Problems returns every *Problem in err, as Load and Validate return them.
func Problems(err error) []*Problem {
	if err == nil {
		return nil
	}
	var p *Problem
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Problem
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	if errors.As(err, &p) {
		return []*Problem{p}
	}
	return []*Problem{{Msg: err.Error()}}
}

// problemf makes an unplaced problem about path.
func problemf(path, format string, args ...any) *Problem {
	return &Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// join sorts the problems (file lines first, in order; then values from
// the environment and flags; then the rest by path) and joins them.
func join(ps []*Problem) error {
	if len(ps) == 0 {
		return nil
	}
	rank := func(p *Problem) int {
		switch {
		case p.Line > 0:
			return 0
		case p.Origin != "":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(ps, func(a, b *Problem) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.Path, b.Path))
	})
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// place gives each unplaced problem the origin of its value: the
// environment variable or flag that set it, else its line in the file
// (or the line of the nearest enclosing key the file has).
func place(ps []*Problem, file string, root *yaml.Node, origins map[string]string) {
	for _, p := range ps {
		if p.Line > 0 || p.Origin != "" {
			continue
		}
		if o, ok := origins[p.Path]; ok {
			p.Origin = o
			continue
		}
		if n := locate(root, p.Path); n != nil {
			p.File, p.Line = file, n.Line
		}
	}
}

var pathSegment = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)

// locate finds the node at a YAML path like "solana.endpoints[1].url", or
// the deepest node on the way there; nil when the file has not even the
// first key.
func locate(n *yaml.Node, path string) *yaml.Node {
	if n == nil || path == "" {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var found *yaml.Node
	for _, m := range pathSegment.FindAllStringSubmatch(path, -1) {
		var next *yaml.Node
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			if n.Kind == yaml.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		} else if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == m[1] {
					// The key's line: a mapping value starts below it.
					found, next = n.Content[j], n.Content[j+1]
					break
				}
			}
		}
		if next == nil {
			return found
		}
		if m[2] != "" {
			found = next
		}
		n = next
	}
	return found
}

// syntaxProblem turns a yaml.v3 parse error into a positioned problem.
func syntaxProblem(file string, err error) *Problem {
	line, msg := strictyaml.SyntaxError(err)
	return &Problem{File: file, Line: line, Msg: "invalid YAML: " + msg}
}
