package runbooktest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/runbooks"
)

// Result is the outcome of a test file.
type Result struct {
	File *File
	// Passed counts the tests that passed.
	Passed int
	// Failures are the tests that failed, in file order.
	Failures []Failure
	// Runbooks are the runbooks whose incidents the tests opened, sorted.
	Runbooks []string
}

// Failure is a failed test and every difference found in it.
type Failure struct {
	Test string
	// Line is where the test starts.
	Line     int
	Problems []Problem
}

// Problem is one difference between what a test expects and what the bot
// decided, or an input the bot could not take (which ends the test).
type Problem struct {
	// Line is the test file's line the expectation or input is written on.
	Line int
	// At is the test time it was checked at.
	At time.Duration
	// What says what differs: `incident 1 (INC-0001) runbook`.
	What string
	// Diff lists the expected lines prefixed "- ", what the bot decided
	// prefixed "+ ", and lines both share prefixed "  ".
	Diff []string
}

// Run runs every test of f, each on a fresh simulator. The error is for a
// file whose runbooks cannot be loaded; failed tests are in the Result.
func Run(ctx context.Context, f *File) (*Result, error) {
	reg := actions.Default()
	var set *runbooks.Set
	var err error
	if f.shipped {
		set, _, err = runbooks.LoadOver(reg, f.runbookFiles...)
	} else {
		set, _, err = runbooks.LoadFiles(reg, f.runbookFiles...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: load runbooks: %w", f.Path, err)
	}
	cat := app.Catalog{Set: set, DefaultChannel: f.defaultChannel, RPC: f.rpc}
	res := &Result{File: f}
	for _, t := range f.Tests {
		probs, opened, err := runTest(ctx, f, t, cat, set)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: test %q: %w", f.Path, t.Line, t.Name, err)
		}
		for _, r := range opened {
			if !slices.Contains(res.Runbooks, r) {
				res.Runbooks = append(res.Runbooks, r)
			}
		}
		if len(probs) == 0 {
			res.Passed++
			continue
		}
		res.Failures = append(res.Failures, Failure{Test: t.Name, Line: t.Line, Problems: probs})
	}
	slices.Sort(res.Runbooks)
	return res, nil
}

// runTest runs one test; it returns its problems and the runbooks whose
// incidents it opened.
func runTest(ctx context.Context, f *File, t *Test, cat app.Catalog, set *runbooks.Set) ([]Problem, []string, error) {
	sim, err := engine.NewSimulator(engine.Config{ReopenWindow: f.reopenWindow}, cat, app.Decoders(), f.start)
	if err != nil {
		return nil, nil, err
	}
	opened := func() []string {
		var out []string
		for _, i := range sim.Incidents() {
			out = append(out, i.Record.Runbook)
		}
		return out
	}
	send := command.NewSender(sim, sim)
	var probs []Problem
	ins, exps := t.inputs, t.expects
	for len(ins) > 0 || len(exps) > 0 {
		if len(ins) > 0 && (len(exps) == 0 || ins[0].at <= exps[0].at) {
			in := ins[0]
			ins = ins[1:]
			if err := sim.Advance(ctx, f.start.Add(in.at)); err != nil {
				return nil, nil, err
			}
			if p := apply(ctx, sim, send, in); p != nil {
				// What follows an input the bot refused means nothing.
				return append(probs, *p), opened(), nil
			}
			continue
		}
		e := exps[0]
		exps = exps[1:]
		if err := sim.Advance(ctx, f.start.Add(e.at)); err != nil {
			return nil, nil, err
		}
		probs = append(probs, check(sim, e, set, f.start)...)
	}
	return probs, opened(), nil
}

// apply feeds one input to the simulator: an event as its source would
// publish it, a command as Slack would send it.
func apply(ctx context.Context, sim *engine.Simulator, send *command.Sender, in *testInput) *Problem {
	refused := func(what string, err error) *Problem {
		return &Problem{Line: in.line, At: in.at, What: what + " refused", Diff: []string{"+ " + err.Error()}}
	}
	if in.ev != nil {
		if err := sim.Deliver(ctx, *in.ev); err != nil {
			return refused(in.ev.Type, err)
		}
		return nil
	}
	c := *in.cmd
	if c.Incident == "" {
		incs := sim.Incidents()
		if len(incs) != 1 {
			var ids []string
			for _, i := range incs {
				ids = append(ids, i.Record.ID)
			}
			return &Problem{Line: in.line, At: in.at, What: fmt.Sprintf("%s: %d incidents exist; say which with incident: (%s)", c.Verb, len(incs), strings.Join(ids, ", "))}
		}
		c.Incident = incs[0].Record.ID
	}
	if _, err := send.Send(ctx, c); err != nil {
		return refused(string(c.Verb)+" "+c.Incident, err)
	}
	return nil
}

// check compares what the bot decided with an expectation.
func check(sim *engine.Simulator, e *expectation, set *runbooks.Set, start time.Time) []Problem {
	var probs []Problem
	add := func(line int, what string, want, got []string) {
		probs = append(probs, Problem{Line: line, At: e.at, What: what, Diff: diff(want, got)})
	}
	if e.unmatched != nil {
		var got []string
		for _, a := range sim.Audit() {
			if a.Kind == "signal.unmatched" {
				got = append(got, a.Detail)
			}
		}
		want := slices.Sorted(slices.Values(*e.unmatched))
		slices.Sort(got)
		if !slices.Equal(want, got) {
			add(e.umLine, "unmatched", want, got)
		}
	}
	if e.incidents == nil {
		return probs
	}
	got := sim.Incidents()
	want := *e.incidents
	if len(want) != len(got) {
		var w, g []string
		for i, iw := range want {
			w = append(w, fmt.Sprintf("%d. %s (line %d)", i+1, iw.brief(), iw.line))
		}
		for i, ig := range got {
			g = append(g, fmt.Sprintf("%d. %s", i+1, describe(ig)))
		}
		add(e.listLine, fmt.Sprintf("incidents: %d expected, %d opened", len(want), len(got)), w, g)
		return probs
	}
	for i, w := range want {
		ps := compare(e, i, w, got[i], set, start)
		slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
		probs = append(probs, ps...)
	}
	return probs
}

// compare checks the keys an incident expectation gives.
func compare(e *expectation, i int, w *incidentWant, g engine.SimIncident, set *runbooks.Set, start time.Time) []Problem {
	var probs []Problem
	rec := g.Record
	name := fmt.Sprintf("incident %d (%s)", i+1, rec.ID)
	field := func(key string, want, got []string) {
		if !slices.Equal(want, got) {
			probs = append(probs, Problem{Line: w.lines[key], At: e.at, What: name + " " + key, Diff: diff(want, got)})
		}
	}
	scalar := func(key, want, got string) {
		if want != "" {
			field(key, []string{want}, []string{got})
		}
	}
	rel := func(t time.Time) string { return since(t.Sub(start)) }
	if w.Runbook != "" && set.Get(w.Runbook) == nil {
		var names []string
		for _, r := range set.All() {
			names = append(names, r.Name)
		}
		probs = append(probs, Problem{Line: w.lines["runbook"], At: e.at, What: fmt.Sprintf("runbook %q is not loaded%s", w.Runbook, closest(w.Runbook, names))})
	}
	scalar("id", w.ID, rec.ID)
	scalar("runbook", w.Runbook, rec.Runbook)
	scalar("severity", w.Severity, string(rec.Severity))
	scalar("status", w.Status, string(rec.Status))
	channel := g.Channel
	if channel == "" {
		channel = g.Route.Channel
	}
	scalar("channel", w.Channel, channel)
	scalar("title", w.Title, g.Card.Title)
	var pager []string
	paged := false
	for _, p := range g.Pages {
		pager = append(pager, string(p.Action))
		paged = paged || p.Action == notify.PageTrigger
	}
	if w.Page != nil {
		field("page", []string{fmt.Sprint(*w.Page)}, []string{fmt.Sprint(paged)})
	}
	if w.Pager != nil {
		field("pager", *w.Pager, pager)
	}
	if w.Reopened != nil {
		field("reopened", []string{fmt.Sprint(*w.Reopened)}, []string{fmt.Sprint(rec.Reopened)})
	}
	if w.Alerts != nil {
		var names []string
		for _, a := range g.Card.Alerts {
			names = append(names, a.Name)
		}
		slices.Sort(names)
		field("alerts", slices.Sorted(slices.Values(*w.Alerts)), names)
	}
	if len(w.Card) > 0 {
		card := console.Card(g.Card)
		if missing := lacking(w.Card, card); len(missing) > 0 {
			field("card", missing, indentLines(card))
		}
	}
	if len(w.Thread) > 0 {
		var replies []string
		for _, c := range g.Chat {
			if c.Op == "reply" {
				replies = append(replies, c.Update.Text)
			}
		}
		if missing := lacking(w.Thread, strings.Join(replies, "\n")); len(missing) > 0 {
			field("thread", missing, replies)
		}
	}
	if w.Steps != nil {
		var want, got []string
		for _, s := range *w.Steps {
			want = append(want, stepLine(s.ID, s.Plan, s.Error))
		}
		for k, p := range g.Card.Remediation {
			// A step matches when its plan or error contains what the
			// expectation says; it is then shown as expected.
			if k < len(*w.Steps) {
				s := (*w.Steps)[k]
				if s.ID == p.ID && strings.Contains(p.Plan, s.Plan) && strings.Contains(p.Error, s.Error) && (s.Error == "" || p.Plan == "") && (s.Plan == "" || p.Error == "") {
					got = append(got, stepLine(s.ID, s.Plan, s.Error))
					continue
				}
			}
			got = append(got, stepLine(p.ID, p.Plan, p.Error))
		}
		field("steps", want, got)
	}
	if w.Escalations != nil {
		var want, got []string
		for _, l := range *w.Escalations {
			want = append(want, l.Level+" at "+since(time.Duration(l.At)))
		}
		for _, l := range g.Escalations {
			got = append(got, l.Level.Name+" at "+rel(l.At))
		}
		field("escalations", want, got)
	}
	if w.next != nil {
		want := "none"
		if !w.next.none {
			want = w.next.level + " at " + since(w.next.at)
		}
		got := "none"
		if l, due, ok := g.NextEscalation(); ok {
			got = l.Name + " at " + rel(due)
		}
		field("next_escalation", []string{want}, []string{got})
	}
	return probs
}

// since writes a test time as a test file does: 0s, 90s, 31m, 1h30m.
func since(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func stepLine(id, plan, err string) string {
	switch {
	case err != "":
		return id + ": error " + err
	case plan != "":
		return id + ": " + plan
	}
	return id
}

// lacking returns the texts text does not contain.
func lacking(texts []string, text string) []string {
	var out []string
	for _, t := range texts {
		if !strings.Contains(text, t) {
			out = append(out, t)
		}
	}
	return out
}

func indentLines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// brief describes an expected incident by the keys it gives.
func (w *incidentWant) brief() string {
	var parts []string
	for _, kv := range [][2]string{{"", w.ID}, {"runbook ", w.Runbook}, {"", w.Severity}, {"", w.Status}, {"", w.Channel}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+kv[1])
		}
	}
	if w.Page != nil {
		parts = append(parts, map[bool]string{true: "pages", false: "no page"}[*w.Page])
	}
	return strings.Join(parts, ", ")
}

// describe is one line about an incident as the bot decided it.
func describe(g engine.SimIncident) string {
	r := g.Record
	page := "no page"
	for _, p := range g.Pages {
		if p.Action == notify.PageTrigger {
			page = "pages"
		}
	}
	var alerts []string
	for _, a := range g.Card.Alerts {
		alerts = append(alerts, a.Name)
	}
	return fmt.Sprintf("%s runbook %s, %s, %s, %s, %s [%s]", r.ID, r.Runbook, r.Severity, r.Status, g.Channel, page, strings.Join(alerts, ", "))
}

// diff is a line diff of want against got: "- " lines only expected, "+ "
// lines only got, "  " lines in both (a longest common subsequence).
func diff(want, got []string) []string {
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			out = append(out, "  "+want[i])
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+want[i])
			i++
		default:
			out = append(out, "+ "+got[j])
			j++
		}
	}
	if n == 0 && m == 0 {
		return nil
	}
	return out
}

// Report formats the failure for a terminal: the test, then each problem
// with its file:line and the diff under it.
func (f Failure) Report(file string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "FAIL %s:%d: %s\n", file, f.Line, f.Test)
	for _, p := range f.Problems {
		fmt.Fprintf(&b, "  %s:%d: at %s: %s\n", file, p.Line, since(p.At), p.What)
		for _, d := range p.Diff {
			fmt.Fprintf(&b, "      %s\n", d)
		}
	}
	return b.String()
}
