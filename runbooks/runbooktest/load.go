package runbooktest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/strictyaml"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

// DefaultStart is the fake clock at 0s when a test file sets no start.
var DefaultStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// maxFileSize bounds a test file and each payload file it names.
const maxFileSize = 4 << 20

// File is a loaded, validated test file.
type File struct {
	// Path is the file as named on the command line.
	Path string
	// Tests are its tests, in file order.
	Tests []*Test

	runbookFiles   []string
	shipped        bool
	rpc            rpcview.Reader
	start          time.Time
	reopenWindow   time.Duration
	defaultChannel string
}

// Test is one test of a file.
type Test struct {
	Name string
	// Line is where the test starts.
	Line    int
	inputs  []*testInput
	expects []*expectation
}

// testInput is one input: an event, or a command (sent at run time, when
// the incident it names exists).
type testInput struct {
	line int
	at   time.Duration
	ev   *bus.Event
	cmd  *command.Command
}

// expectation is what must hold at one time.
type expectation struct {
	line      int
	at        time.Duration
	incidents *[]*incidentWant
	listLine  int
	unmatched *[]string
	umLine    int
}

// incidentWant is one expected incident with the lines of its keys.
type incidentWant struct {
	incidentSpec
	line  int
	lines map[string]int
	next  *nextWant
}

// nextWant is the expected next escalation; none when no level is armed.
type nextWant struct {
	none  bool
	level string
	at    time.Duration
}

// Load reads and validates a test file; payload files it names are read
// relative to it.
func Load(path string) (*File, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, &runbooks.Problem{File: path, Line: 1, Msg: err.Error()}
	}
	dir := filepath.Dir(path)
	return Parse(path, data, func(name string) ([]byte, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		return readLimited(name)
	})
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// Parse validates a test file's content; name is used in problems and
// read reads the payload files it names. Every problem is reported, as
// file:line: path: message, joined.
func Parse(name string, data []byte, read func(name string) ([]byte, error)) (*File, error) {
	l := &loader{file: name, read: read}
	if len(data) > maxFileSize {
		l.fail(nil, "", "file larger than %d bytes", maxFileSize)
		return nil, l.err()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.fail(nil, "", "empty test file")
		} else {
			l.problems = append(l.problems, syntaxProblem(name, err))
		}
		return nil, l.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		l.fail(&extra, "", "one test file holds one YAML document")
		return nil, l.err()
	}
	l.root = &doc
	var spec fileSpec
	for _, e := range strictyaml.Flatten(strictyaml.Decode(&doc, "", &spec)) {
		line := e.Line
		if line == 0 {
			line = at(&doc, e.Path).Line
		}
		l.problems = append(l.problems, &runbooks.Problem{File: name, Line: max(line, 1), Path: e.Path, Msg: e.Msg})
	}
	if len(l.problems) > 0 {
		return nil, l.err()
	}
	f := l.build(&spec)
	if err := l.err(); err != nil {
		return nil, err
	}
	return f, nil
}

type loader struct {
	file     string
	root     *yaml.Node
	read     func(string) ([]byte, error)
	problems []*runbooks.Problem
}

func (l *loader) fail(n *yaml.Node, path, format string, args ...any) {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	// A joined error is one problem on one line.
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	l.problems = append(l.problems, &runbooks.Problem{File: l.file, Line: line, Path: path, Msg: msg})
}

// failAt reports a problem at a YAML path of the file.
func (l *loader) failAt(path, format string, args ...any) {
	l.fail(at(l.root, path), path, format, args...)
}

func (l *loader) err() error {
	if len(l.problems) == 0 {
		return nil
	}
	es := make([]error, len(l.problems))
	for i, p := range l.problems {
		es[i] = p
	}
	return errors.Join(es...)
}

func (l *loader) build(sp *fileSpec) *File {
	f := &File{Path: l.file, shipped: true, start: DefaultStart, reopenWindow: time.Hour, defaultChannel: sp.DefaultChannel}
	if sp.ShippedRunbooks != nil {
		f.shipped = *sp.ShippedRunbooks
	}
	for i, p := range sp.RunbookFiles {
		if strings.TrimSpace(p) == "" {
			l.failAt(strictyaml.Index("runbook_files", i), "empty path")
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(l.file), p)
		}
		f.runbookFiles = append(f.runbookFiles, p)
	}
	if !f.shipped && len(sp.RunbookFiles) == 0 {
		l.failAt("shipped_runbooks", "false, but no runbook_files: no runbook to test")
	}
	if sp.Start != "" {
		t, err := time.Parse(time.RFC3339, sp.Start)
		if err != nil {
			l.failAt("start", "%q is not an RFC 3339 time like 2025-01-01T00:00:00Z", sp.Start)
		}
		f.start = t.UTC()
	}
	if sp.ReopenWindow != nil {
		f.reopenWindow = time.Duration(*sp.ReopenWindow)
		if f.reopenWindow <= 0 {
			l.failAt("reopen_window", "must be positive")
		}
	}
	if sp.RPCView != nil {
		f.rpc = l.view(sp.RPCView, f.start)
	}
	if len(sp.Tests) == 0 {
		l.failAt("tests", "no tests")
	}
	for i, ts := range sp.Tests {
		f.Tests = append(f.Tests, l.test(f, fmt.Sprintf("tests[%d]", i), ts))
	}
	return f
}

func (l *loader) test(f *File, p string, ts testSpec) *Test {
	t := &Test{Name: ts.Name, Line: at(l.root, p).Line}
	if strings.TrimSpace(ts.Name) == "" {
		l.failAt(p+".name", "empty name")
	}
	if len(ts.Inputs) == 0 {
		l.failAt(p+".inputs", "no inputs")
	}
	if len(ts.Expect) == 0 {
		l.failAt(p+".expect", "nothing expected")
	}
	var prev time.Duration
	for i, is := range ts.Inputs {
		ip := strictyaml.Index(p+".inputs", i)
		if d := time.Duration(is.At); d < prev {
			l.failAt(ip+".at", "%s is before the previous input (%s): list inputs in time order", d, prev)
		} else {
			prev = d
		}
		if in := l.input(f, ip, is); in != nil {
			t.inputs = append(t.inputs, in)
		}
	}
	prev = 0
	for i, es := range ts.Expect {
		ep := strictyaml.Index(p+".expect", i)
		if d := time.Duration(es.At); d < prev {
			l.failAt(ep+".at", "%s is before the previous expectation (%s): list them in time order", d, prev)
		} else {
			prev = d
		}
		t.expects = append(t.expects, l.expect(ep, es))
	}
	return t
}

// staticView is the RPC view a test file gives.
type staticView rpcview.View

func (v staticView) View(context.Context) (rpcview.View, error) { return rpcview.View(v), nil }

// view builds the RPC view, ranked as the watchers rank it: healthy first,
// then by slot lag, then by name.
func (l *loader) view(sp *rpcViewSpec, start time.Time) rpcview.Reader {
	v := rpcview.View{UpdatedAt: start}
	for i, e := range sp.Endpoints {
		p := strictyaml.Index("rpc_view.endpoints", i)
		if e.Role != string(rpcview.RolePrimary) && e.Role != string(rpcview.RoleBackup) {
			l.failAt(p+".role", "%q: want primary or backup", e.Role)
		}
		healthy := e.Healthy == nil || *e.Healthy
		v.Endpoints = append(v.Endpoints, rpcview.Endpoint{Name: e.Name, URL: e.URL, Role: rpcview.Role(e.Role), Healthy: healthy,
			SlotLag: e.SlotLag, CheckedAt: start})
	}
	slices.SortStableFunc(v.Endpoints, func(a, b rpcview.Endpoint) int {
		switch {
		case a.Healthy != b.Healthy && a.Healthy:
			return -1
		case a.Healthy != b.Healthy:
			return 1
		case a.SlotLag != b.SlotLag:
			return cmp.Compare(a.SlotLag, b.SlotLag)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return staticView(v)
}

// input validates one input and builds its event or command.
func (l *loader) input(f *File, p string, is inputSpec) *testInput {
	in := &testInput{line: at(l.root, p).Line, at: time.Duration(is.At)}
	when := f.start.Add(in.at)
	var kinds []string
	if is.Alerts != nil {
		kinds = append(kinds, "alerts")
	}
	if is.Alertmanager.Kind != 0 {
		kinds = append(kinds, "alertmanager")
	}
	if is.Event != nil {
		kinds = append(kinds, "event")
	}
	cmds := map[input.Kind]*commandSpec{input.Ack: is.Ack, input.Unack: is.Unack, input.Resolve: is.Resolve, input.Note: is.Note, input.Escalate: is.Escalate}
	for _, v := range command.Verbs {
		// "ack:" alone is an ack with the defaults.
		if cmds[v] == nil && strictyaml.Lookup(at(l.root, p), string(v)) != nil {
			cmds[v] = &commandSpec{}
		}
		if cmds[v] != nil {
			kinds = append(kinds, string(v))
		}
	}
	switch len(kinds) {
	case 0:
		l.failAt(p, "no input: give one of alerts, alertmanager, event, ack, unack, resolve, note, escalate")
		return nil
	case 1:
	default:
		l.failAt(p, "%s in one input: give one per input", strings.Join(kinds, " and "))
		return nil
	}
	if is.GroupKey != "" && kinds[0] != "alerts" {
		l.failAt(p+".group_key", "only with alerts")
	}
	var body []byte
	switch kinds[0] {
	case "alerts":
		body = l.alerts(p, is, when, f.start)
	case "alertmanager":
		body = l.payload(p+".alertmanager", &is.Alertmanager)
	case "event":
		in.ev = l.event(p+".event", is.Event, when, in.line)
		if in.ev == nil {
			return nil
		}
		return in
	default:
		verb := input.Kind(kinds[0])
		cs := cmds[verb]
		cp := p + "." + kinds[0]
		c := &command.Command{Verb: verb, Incident: cs.Incident, Text: cs.Text, At: when,
			By: input.Actor{Name: cs.By, Via: cs.Via}, RequestID: fmt.Sprintf("test:%s:%d", filepath.Base(l.file), in.line)}
		if c.By.Name == "" {
			c.By.Name = "tester"
		}
		if c.By.Via == "" {
			c.By.Via = "slack"
		}
		if verb == input.Note && strings.TrimSpace(cs.Text) == "" {
			l.failAt(cp+".text", "a note needs text")
		}
		if cs.Incident != "" && !strings.HasPrefix(strings.ToUpper(cs.Incident), "INC-") {
			l.failAt(cp+".incident", "%q is not an incident id like INC-0001", cs.Incident)
		}
		in.cmd = c
		return in
	}
	if body == nil {
		return nil
	}
	m, err := alertmanager.Decode(body)
	if err != nil {
		l.failAt(p+"."+kinds[0], "%v", err)
		return nil
	}
	in.ev = &bus.Event{ID: m.EventID(), Source: "alertmanager", Type: alertmanager.EventType, Time: when, Subject: m.GroupKey,
		DataContentType: "application/json", Data: body}
	return in
}

// amAlert is one alert of an Alertmanager webhook body.
type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alerts builds the webhook body Alertmanager would send for the alerts,
// grouped as the course's route groups them (alertname, severity).
func (l *loader) alerts(p string, is inputSpec, when, start time.Time) []byte {
	if len(is.Alerts) == 0 {
		l.failAt(p+".alerts", "no alerts")
		return nil
	}
	var out []amAlert
	status := "resolved"
	ok := true
	for i, as := range is.Alerts {
		ap := strictyaml.Index(p+".alerts", i)
		a := amAlert{Status: as.Status, Labels: as.Labels, Annotations: as.Annotations, StartsAt: when, GeneratorURL: as.GeneratorURL}
		if a.Status == "" {
			a.Status = "firing"
		}
		switch {
		case a.Status != "firing" && a.Status != "resolved":
			l.failAt(ap+".status", "%q: want firing or resolved", a.Status)
			ok = false
		case as.Labels["alertname"] == "":
			l.failAt(ap+".labels", "no alertname label")
			ok = false
		}
		if as.StartsAt != nil {
			a.StartsAt = start.Add(time.Duration(*as.StartsAt))
		}
		switch {
		case a.Status == "resolved" && as.EndsAt != nil:
			a.EndsAt = start.Add(time.Duration(*as.EndsAt))
		case a.Status == "resolved":
			a.EndsAt = when
		case as.EndsAt != nil:
			l.failAt(ap+".ends_at", "only for a resolved alert")
			ok = false
		}
		if a.Status == "firing" {
			status = "firing"
		}
		out = append(out, a)
	}
	if !ok {
		return nil
	}
	gk := is.GroupKey
	group := map[string]string{"alertname": out[0].Labels["alertname"]}
	if sev := out[0].Labels["severity"]; sev != "" {
		group["severity"] = sev
	}
	if gk == "" {
		gk = `{}:{alertname=` + strconv.Quote(group["alertname"])
		if sev, ok := group["severity"]; ok {
			gk += `, severity=` + strconv.Quote(sev)
		}
		gk += "}"
	}
	body, err := json.Marshal(map[string]any{"version": alertmanager.SupportedVersion, "status": status, "receiver": "incidentbot",
		"groupKey": gk, "groupLabels": group, "alerts": out, "truncatedAlerts": 0})
	if err != nil {
		l.failAt(p+".alerts", "encode: %v", err)
		return nil
	}
	return body
}

// payload reads an inline payload or {file: path} as JSON.
func (l *loader) payload(p string, n *yaml.Node) []byte {
	if f := fileRef(n); f != nil {
		if f.Kind != yaml.ScalarNode || f.Tag == "!!null" || f.Value == "" {
			l.fail(f, p+".file", "expected a file path")
			return nil
		}
		b, err := l.read(f.Value)
		if err != nil {
			l.fail(f, p+".file", "%v", err)
			return nil
		}
		return b
	}
	b, err := nodeJSON(n)
	if err != nil {
		l.fail(n, p, "%v", err)
		return nil
	}
	return b
}

// fileRef returns the value of file in a mapping that holds only file.
func fileRef(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "file" {
		return n.Content[1]
	}
	return nil
}

// nodeJSON encodes a YAML node (a mapping, as written inline) as JSON.
func nodeJSON(n *yaml.Node) ([]byte, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("expected a mapping (the payload inline) or {file: PATH}")
	}
	if hasAlias(n) {
		return nil, errors.New("YAML aliases are not supported")
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("payload is not JSON: %w", err)
	}
	return b, nil
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		return true
	}
	return slices.ContainsFunc(n.Content, hasAlias)
}

// event builds an on-chain event: its signal from a file or inline, with
// starts_at defaulting to the input's time.
func (l *loader) event(p string, es *eventSpec, when time.Time, line int) *bus.Event {
	ok := true
	if !slices.Contains(solana.EventTypes, es.Type) {
		l.failAt(p+".type", "unknown event type %q%s (known: %s)", es.Type, closest(es.Type, solana.EventTypes), strings.Join(solana.EventTypes, ", "))
		ok = false
	}
	var data []byte
	switch {
	case es.File != "" && es.Signal.Kind != 0:
		l.failAt(p, "file and signal: give one")
		return nil
	case es.File != "":
		b, err := l.read(es.File)
		if err != nil {
			l.failAt(p+".file", "%v", err)
			return nil
		}
		data = b
	case es.Signal.Kind != 0:
		b, err := nodeJSON(&es.Signal)
		if err != nil {
			l.fail(&es.Signal, p+".signal", "%v", err)
			return nil
		}
		data = b
	default:
		l.failAt(p, "no signal: give file or signal")
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		l.failAt(p, "signal is not a JSON object: %v", err)
		return nil
	}
	if _, set := m["starts_at"]; !set {
		m["starts_at"] = when
		data, _ = json.Marshal(m)
	}
	sig, err := signal.Decode(data)
	if err != nil {
		l.failAt(p, "%v", err)
		return nil
	}
	if !ok {
		return nil
	}
	id := es.ID
	if id == "" {
		id = fmt.Sprintf("test:%s:%d", filepath.Base(l.file), line)
	}
	source, _, _ := strings.Cut(es.Type, ".")
	return &bus.Event{ID: id, Source: source, Type: es.Type, Time: when, Subject: sig.GroupKey, DataContentType: "application/json", Data: data}
}

var (
	severities = []string{string(notify.SeverityCritical), string(notify.SeverityWarning), string(notify.SeverityInfo)}
	statuses   = []string{string(notify.StatusFiring), string(notify.StatusAcknowledged), string(notify.StatusResolved)}
	pageActs   = []string{string(notify.PageTrigger), string(notify.PageAcknowledge), string(notify.PageResolve)}
)

func (l *loader) expect(p string, es expectSpec) *expectation {
	e := &expectation{line: at(l.root, p).Line, at: time.Duration(es.At), unmatched: es.Unmatched}
	if es.Incidents == nil && es.Unmatched == nil {
		l.failAt(p, "asserts nothing: give incidents or unmatched")
	}
	if es.Unmatched != nil {
		e.umLine = at(l.root, p+".unmatched").Line
	}
	if es.Incidents == nil {
		return e
	}
	e.listLine = at(l.root, p+".incidents").Line
	list := []*incidentWant{}
	for i, is := range *es.Incidents {
		ip := strictyaml.Index(p+".incidents", i)
		n := at(l.root, ip)
		w := &incidentWant{incidentSpec: is, line: n.Line, lines: map[string]int{}}
		if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				w.lines[n.Content[j].Value] = n.Content[j].Line
			}
		}
		oneOf := func(key, v string, allowed []string) {
			if v != "" && !slices.Contains(allowed, v) {
				l.failAt(ip+"."+key, "%q: want %s", v, strings.Join(allowed, ", "))
			}
		}
		oneOf("severity", is.Severity, severities)
		oneOf("status", is.Status, statuses)
		if is.Pager != nil {
			for j, a := range *is.Pager {
				if !slices.Contains(pageActs, a) {
					l.failAt(strictyaml.Index(ip+".pager", j), "%q: want %s", a, strings.Join(pageActs, ", "))
				}
			}
		}
		if is.Steps != nil {
			for j, s := range *is.Steps {
				if s.Plan != "" && s.Error != "" {
					l.failAt(strictyaml.Index(ip+".steps", j), "plan and error: a step renders one or the other")
				}
			}
		}
		if is.NextEscalation.Kind != 0 {
			w.next = l.next(ip+".next_escalation", &is.NextEscalation)
		}
		if len(w.lines) == 0 {
			l.failAt(ip, "asserts nothing about the incident: give at least its runbook")
		}
		list = append(list, w)
	}
	e.incidents = &list
	return e
}

func (l *loader) next(p string, n *yaml.Node) *nextWant {
	if n.Kind == yaml.ScalarNode && n.Value == "none" {
		return &nextWant{none: true}
	}
	if n.Kind != yaml.MappingNode {
		l.fail(n, p, "expected {level: NAME, at: DURATION} or none")
		return nil
	}
	var es escalationSpec
	if err := strictyaml.Decode(n, p, &es); err != nil {
		for _, e := range strictyaml.Flatten(err) {
			l.problems = append(l.problems, &runbooks.Problem{File: l.file, Line: max(e.Line, n.Line), Path: e.Path, Msg: e.Msg})
		}
		return nil
	}
	return &nextWant{level: es.Level, at: time.Duration(es.At)}
}

// at finds the node at a YAML path like "tests[0].inputs[2].at", or the
// deepest node on the way there.
func at(n *yaml.Node, path string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '[' }) {
		var next *yaml.Node
		if i, err := strconv.Atoi(strings.TrimSuffix(seg, "]")); err == nil && strings.HasSuffix(seg, "]") {
			if n.Kind == yaml.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		} else {
			next = strictyaml.Lookup(n, seg)
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// syntaxProblem positions a yaml.v3 parse error.
func syntaxProblem(file string, err error) *runbooks.Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ":"); ok {
			if v, err := strconv.Atoi(n); err == nil && v > 0 {
				line, msg = v, strings.TrimSpace(tail)
			}
		}
	}
	return &runbooks.Problem{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// closest suggests the known name nearest to s.
func closest(s string, names []string) string {
	best, bestD := "", 4
	for _, n := range names {
		if d := strictyaml.Distance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
