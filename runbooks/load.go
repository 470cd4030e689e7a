package runbooks

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/rules"
)

//go:embed shipped/*.yaml
var shipped embed.FS

// shippedPrefix is how shipped files are named in problems.
const shippedPrefix = "runbooks/"

// maxFileSize bounds one runbook file.
const maxFileSize = 1 << 20

// Set is a loaded, validated set of runbooks with an index to match
// signals against.
type Set struct {
	runbooks []*Runbook
	byName   map[string]*Runbook
	index    *rules.Index[*Runbook]
}

// Match returns the runbook for in: the best matching runbook, else the
// best matching fallback, else nil.
func (s *Set) Match(in rules.Input) *Runbook {
	e, ok := s.index.Match(in)
	if !ok {
		return nil
	}
	return e.Value
}

// All returns the runbooks in load order.
func (s *Set) All() []*Runbook { return slices.Clone(s.runbooks) }

// Get returns the runbook called name, or nil.
func (s *Set) Get(name string) *Runbook { return s.byName[name] }

// source is one runbook file's content.
type source struct {
	name string
	data []byte
}

// LoadDefault loads the shipped runbooks and, when overrideDir is not
// empty, the *.yaml/*.yml files in it: a runbook there with a shipped
// runbook's name replaces it, other names are added.
func LoadDefault(overrideDir string, reg *actions.Registry) (*Set, Warnings, error) {
	var over []source
	if overrideDir != "" {
		var err error
		if over, err = dirSources(overrideDir); err != nil {
			return nil, nil, err
		}
	}
	return loadOver(reg, over, nil)
}

// LoadOver loads the shipped runbooks with runbook files and directories
// over them, as LoadDefault does with runbooks.dir: `incidentbot check DIR`
// checks DIR the way serve would load it.
func LoadOver(reg *actions.Registry, paths ...string) (*Set, Warnings, error) {
	over, errs := pathSources(paths)
	return loadOver(reg, over, errs)
}

func loadOver(reg *actions.Registry, over []source, errs []*Problem) (*Set, Warnings, error) {
	base, err := shippedSources()
	if err != nil {
		return nil, nil, err
	}
	rbs, warns, perrs := parseAll(reg, base)
	orbs, owarns, oerrs := parseAll(reg, over)
	warns = append(warns, owarns...)
	errs = append(append(errs, perrs...), oerrs...)
	pos := map[string]int{}
	for i, r := range rbs {
		pos[r.Name] = i
	}
	for _, r := range orbs {
		if i, ok := pos[r.Name]; ok && strings.HasPrefix(rbs[i].File, shippedPrefix) {
			rbs[i] = r
			continue
		}
		pos[r.Name] = len(rbs)
		rbs = append(rbs, r)
	}
	return finish(rbs, warns, errs)
}

// LoadFiles loads runbook files and directories (their *.yaml and *.yml
// files, recursively) alone, without the shipped runbooks.
func LoadFiles(reg *actions.Registry, paths ...string) (*Set, Warnings, error) {
	srcs, errs := pathSources(paths)
	rbs, warns, perrs := parseAll(reg, srcs)
	return finish(rbs, warns, append(errs, perrs...))
}

// pathSources reads files and directories; each path that cannot be read
// is one problem.
func pathSources(paths []string) ([]source, []*Problem) {
	var srcs []source
	var errs []*Problem
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			// The problem names the file; say what is wrong with it once.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, &Problem{File: p, Line: 1, Msg: "cannot read: " + err.Error()})
			continue
		}
		if st.IsDir() {
			s, err := dirSources(p)
			if err != nil {
				errs = append(errs, &Problem{File: p, Line: 1, Msg: err.Error()})
			}
			srcs = append(srcs, s...)
			continue
		}
		s, err := readSource(p)
		if err != nil {
			errs = append(errs, &Problem{File: p, Line: 1, Msg: err.Error()})
			continue
		}
		srcs = append(srcs, s)
	}
	return srcs, errs
}

// Parse loads runbooks from one file's content; name is used in problems.
func Parse(reg *actions.Registry, name string, data []byte) ([]*Runbook, Warnings, error) {
	rbs, warns, errs := parseFile(reg, name, data)
	return rbs, warns, joinProblems(errs)
}

func shippedSources() ([]source, error) {
	names, err := fs.Glob(shipped, "shipped/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list shipped runbooks: %w", err)
	}
	var out []source
	for _, n := range names {
		b, err := shipped.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read shipped runbook %s: %w", n, err)
		}
		out = append(out, source{name: shippedPrefix + n, data: b})
	}
	return out, nil
}

func dirSources(dir string) ([]source, error) {
	var out []source
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Skip hidden directories: a Kubernetes ConfigMap volume keeps
			// each key both as a top-level symlink and in ..<timestamp>/,
			// which would load every runbook twice.
			if p != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if path.Ext(p) != ".yaml" && path.Ext(p) != ".yml" {
			return nil
		}
		s, err := readSource(p)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read runbook directory %s: %w", dir, err)
	}
	return out, nil
}

func readSource(p string) (source, error) {
	f, err := os.Open(p)
	if err != nil {
		return source{}, fmt.Errorf("read runbook: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return source{}, fmt.Errorf("read runbook %s: %w", p, err)
	}
	return source{name: p, data: b}, nil
}

func parseAll(reg *actions.Registry, srcs []source) ([]*Runbook, []*Problem, []*Problem) {
	var rbs []*Runbook
	var warns, errs []*Problem
	seen := map[string]*Runbook{}
	for _, s := range srcs {
		r, w, e := parseFile(reg, s.name, s.data)
		warns = append(warns, w...)
		errs = append(errs, e...)
		for _, rb := range r {
			if prev, dup := seen[rb.Name]; dup {
				errs = append(errs, &Problem{File: rb.File, Line: rb.Line, Path: "name",
					Msg: fmt.Sprintf("duplicate runbook name %q (also defined at %s:%d)", rb.Name, prev.File, prev.Line)})
				continue
			}
			seen[rb.Name] = rb
			rbs = append(rbs, rb)
		}
	}
	return rbs, warns, errs
}

// finish checks the set as a whole and builds its index.
func finish(rbs []*Runbook, warns, errs []*Problem) (*Set, Warnings, error) {
	fallbacks := 0
	for _, r := range rbs {
		if r.Fallback {
			fallbacks++
		}
	}
	if len(rbs) > 0 && fallbacks == 0 {
		warns = append(warns, &Problem{File: rbs[0].File, Line: rbs[0].Line,
			Msg: "no fallback runbook: signals no runbook matches will not open an incident"})
	}
	warns = append(warns, shadowed(rbs)...)
	errs = append(errs, correlateSet(rbs)...)
	if err := joinProblems(errs); err != nil {
		return nil, warns, err
	}
	s := &Set{runbooks: rbs, byName: map[string]*Runbook{}}
	entries := make([]rules.Entry[*Runbook], len(rbs))
	for i, r := range rbs {
		s.byName[r.Name] = r
		entries[i] = rules.Entry[*Runbook]{Selector: r.Selector, Priority: r.Priority, Fallback: r.Fallback, Value: r}
	}
	s.index = rules.NewIndex(entries)
	return s, warns, nil
}

func joinProblems(ps []*Problem) error {
	if len(ps) == 0 {
		return nil
	}
	es := make([]error, len(ps))
	for i, p := range ps {
		es[i] = p
	}
	return errors.Join(es...)
}

// parseFile parses every YAML document of one file.
func parseFile(reg *actions.Registry, name string, data []byte) ([]*Runbook, []*Problem, []*Problem) {
	if len(data) > maxFileSize {
		return nil, nil, []*Problem{{File: name, Line: 1, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var rbs []*Runbook
	var warns, errs []*Problem
	docs := 0
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, syntaxProblem(name, err))
			break
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue
		}
		docs++
		c := &collector{file: name, root: &doc}
		r := build(c, reg, &doc)
		warns = append(warns, c.warns...)
		errs = append(errs, c.errs...)
		if r != nil && len(c.errs) == 0 {
			rbs = append(rbs, r)
		}
	}
	if docs == 0 && len(errs) == 0 {
		errs = append(errs, &Problem{File: name, Line: 1, Msg: "empty runbook file: no runbook in it"})
	}
	return rbs, warns, errs
}
