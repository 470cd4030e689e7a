package runbooks

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/watchers/solana/watchtest"
)

var update = flag.Bool("update", false, "rewrite tests/testdata from the watchers' output and the PrometheusRule")

// testdataStart is when the inputs in tests/testdata start: the default
// start of a runbook test file (runbooktest.DefaultStart).
var testdataStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// testdataEnd is when the resolved inputs in tests/testdata end.
var testdataEnd = testdataStart.Add(10 * time.Minute)

// checkTestInputs keeps the inputs of the shipped runbook tests real:
// tests/testdata/watchers holds what the watchers published in each
// scenario (scenario k at minute k from the start, and the fake nodes'
// addresses stable), and
// tests/testdata/alertmanager what Alertmanager sends for each alert of
// the course's PrometheusRule, firing and resolved. go test -update
// rewrites them.
func checkTestInputs(t *testing.T, caps []watchtest.Captured, alerts map[string]signal.Signal) {
	want := map[string][]byte{}
	// Scenario k happens at minute k from the start: an event that opens
	// an episode starts then, one that ends it ends then, and keeps the
	// start of the episode it ends.
	scenario := map[string]time.Time{}
	episode := map[int64]time.Time{}
	for _, c := range caps {
		if _, ok := scenario[c.Scenario]; !ok {
			scenario[c.Scenario] = testdataStart.Add(time.Duration(len(scenario)) * time.Minute)
		}
		if c.Signal.Status == signal.Firing {
			episode[c.Signal.StartsAt.UnixNano()] = scenario[c.Scenario]
		}
	}
	times := func(c watchtest.Captured) (starts, ends time.Time) {
		starts, ok := episode[c.Signal.StartsAt.UnixNano()]
		if !ok {
			starts = scenario[c.Scenario]
		}
		if !c.Signal.EndsAt.IsZero() {
			ends = scenario[c.Scenario]
		}
		return starts, ends
	}
	for _, c := range caps {
		name := "watchers/" + slug(c.Scenario) + ".json"
		if _, dup := want[name]; dup || strings.HasPrefix(c.Scenario, "all endpoints healthy") {
			name = "watchers/" + slug(c.Scenario) + "-" + c.Signal.Labels["endpoint"] + ".json"
		}
		starts, ends := times(c)
		want[name] = watcherInput(t, c, starts, ends)
	}
	for name, sig := range alerts {
		want["alertmanager/"+name+".firing.json"] = alertmanagerInput(t, sig, time.Time{})
		want["alertmanager/"+name+".resolved.json"] = alertmanagerInput(t, sig, testdataEnd)
	}
	dir := filepath.Join("tests", "testdata")
	if *update {
		for _, sub := range []string{"watchers", "alertmanager"} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v (go test ./runbooks -run TestShippedRunbooksOnRealInputs -update writes it)", err)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s is not what the source sends now (-update rewrites it):\n%s\nwant:\n%s", name, got, want[name])
		}
	}
	for _, sub := range []string{"watchers", "alertmanager"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.json"))
		for _, f := range files {
			if rel, _ := filepath.Rel(dir, f); want[filepath.ToSlash(rel)] == nil {
				t.Errorf("%s: no source sends it (-update removes it)", f)
			}
		}
	}
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// watcherInput is a captured event's data with the times given and the
// fake nodes' random addresses named by endpoint.
func watcherInput(t *testing.T, c watchtest.Captured, starts, ends time.Time) []byte {
	s := c.Signal
	s.StartsAt, s.EndsAt = starts, ends
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.View.Endpoints {
		b = bytes.ReplaceAll(b, []byte(`"`+e.URL+`"`), []byte(`"https://`+e.Name+`.rpc.example"`))
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// alertmanagerInput is the webhook body Alertmanager sends for a course
// alert, grouped as the course's route groups (alertname, severity):
// firing, or resolved at ends.
func alertmanagerInput(t *testing.T, sig signal.Signal, ends time.Time) []byte {
	status := "firing"
	if !ends.IsZero() {
		status = "resolved"
	}
	ls := model.LabelSet{}
	for k, v := range sig.Labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	group := map[string]string{"alertname": sig.Labels["alertname"], "severity": sig.Labels["severity"]}
	body := map[string]any{
		"version": "4", "status": status, "receiver": "incidentbot", "truncatedAlerts": 0,
		"groupKey":    `{}:{alertname="` + group["alertname"] + `", severity="` + group["severity"] + `"}`,
		"groupLabels": group, "commonLabels": sig.Labels, "commonAnnotations": sig.Annotations,
		"externalURL": "http://alertmanager.monitoring.svc:9093",
		"alerts": []map[string]any{{"status": status, "labels": sig.Labels, "annotations": sig.Annotations,
			"startsAt": testdataStart, "endsAt": ends, "generatorURL": sig.GeneratorURL, "fingerprint": ls.Fingerprint().String()}},
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
