package runbooks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/strictyaml"
)

// Problem is one error or warning about a runbook file, at a position.
type Problem struct {
	File string
	// Line is 1-based.
	Line int
	// Path is the YAML path: "remediation[1].action".
	Path string
	Msg  string
}

// Error formats the problem as "file:line: path: msg".
func (p *Problem) Error() string {
	if p.Path == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Path, p.Msg)
}

// Warnings are problems that do not stop a runbook from loading.
type Warnings []*Problem

// String lists the warnings one per line.
func (w Warnings) String() string {
	var b strings.Builder
	for _, p := range w {
		b.WriteString(p.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

// collector gathers problems for one file.
type collector struct {
	file  string
	root  *yaml.Node
	errs  []*Problem
	warns []*Problem
}

func (c *collector) problem(path, format string, args ...any) *Problem {
	line := 1
	if n := locate(c.root, path); n != nil && n.Line > 0 {
		line = n.Line
	}
	return &Problem{File: c.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (c *collector) fail(path, format string, args ...any) {
	c.errs = append(c.errs, c.problem(path, format, args...))
}

func (c *collector) warn(path, format string, args ...any) {
	c.warns = append(c.warns, c.problem(path, format, args...))
}

// add records strictyaml errors.
func (c *collector) add(err error) {
	for _, e := range strictyaml.Flatten(err) {
		line := e.Line
		if line == 0 {
			line = 1
			if n := locate(c.root, e.Path); n != nil && n.Line > 0 {
				line = n.Line
			}
		}
		c.errs = append(c.errs, &Problem{File: c.file, Line: line, Path: e.Path, Msg: e.Msg})
	}
}

var pathSegment = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)

// locate finds the node at a YAML path like "causes[0].remediation[1].action",
// or the deepest node on the way there.
func locate(n *yaml.Node, path string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
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
					next = n.Content[j+1]
					break
				}
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// syntaxProblem turns a yaml.v3 parse error into a positioned problem.
func syntaxProblem(file string, err error) *Problem {
	line, msg := strictyaml.SyntaxError(err)
	return &Problem{File: file, Line: line, Msg: "invalid YAML: " + msg}
}
