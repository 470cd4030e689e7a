package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
)

const (
	paymentsKey = "0a1b2c3d4e5f60718293a4b5c6d7e8f9" // the real key behind the reference
	defaultKey  = "ffffeeeeddddccccbbbbaaaa99998888"
)

// paymentsRunbook pages the payments service by reference.
func paymentsRunbook(ref string) string {
	return `name: payments-down
title: Payments down
match:
  matchers: ['alertname="PaymentsDown"']
routing:
  critical:
    channel: "#payments"
    page: true
    pagerduty_key_ref: ` + ref + `
`
}

const paymentsAlert = `{"receiver": "incidentbot", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"PaymentsDown\"}",
  "groupLabels": {"alertname": "PaymentsDown"}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
  "alerts": [{"status": "firing", "labels": {"alertname": "PaymentsDown", "severity": "critical"},
    "annotations": {"summary": "payments are down"}, "startsAt": "2025-08-13T14:02:11Z", "endsAt": "0001-01-01T00:00:00Z",
    "fingerprint": "0123456789abcdef"}]}`

// keyRefSetup writes a runbook using ref, a Kubernetes-style Secret volume
// holding the payments key, and a configuration pointing at both and at
// pd; it returns the configuration's path.
func keyRefSetup(t *testing.T, ref, pdURL string) (cfgPath, runbookPath string) {
	t.Helper()
	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	keys := filepath.Join(dir, "pagerduty-keys")
	for _, d := range []string{rbDir, filepath.Join(keys, "..2026_11_30")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	runbookPath = filepath.Join(rbDir, "payments.yaml")
	files := map[string]string{
		runbookPath: paymentsRunbook(ref),
		filepath.Join(keys, "..2026_11_30", "payments"): paymentsKey + "\n",
	}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_11_30", filepath.Join(keys, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/payments", filepath.Join(keys, "payments")); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "bot.yaml")
	cfg := "listen: 127.0.0.1:0\nbus: {data_dir: " + filepath.Join(dir, "data") + "}\nrunbooks: {dir: " + rbDir + "}\n" +
		"pagerduty:\n  events_url: " + pdURL + "\n  routing_key: " + defaultKey + "\n  routing_keys_dir: " + keys + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, runbookPath
}

// TestPagerDutyKeyRefPagesWithTheRealKey: a runbook's pagerduty_key_ref
// names a key from the configuration's secrets; PagerDuty gets that key,
// and nothing prints it.
func TestPagerDutyKeyRefPagesWithTheRealKey(t *testing.T) {
	pd := testenv.StartPagerDuty(t)
	cfgPath, _ := keyRefSetup(t, "payments", pd.URL)

	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"check", "--config", cfgPath}, nil, &out, &errOut, nil); err != nil {
		t.Fatalf("check: %v\n%s", err, errOut.String())
	}
	payload := filepath.Join(t.TempDir(), "alert.json")
	os.WriteFile(payload, []byte(paymentsAlert), 0o600)
	out, errOut = lockedBuffer{}, lockedBuffer{}
	if err := run(context.Background(), []string{"replay", "--config", cfgPath, payload}, nil, &out, &errOut, nil); err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `PAGES PagerDuty (routing key "payments"`) {
		t.Errorf("replay does not name the reference:\n%s", out.String())
	}

	s, err := startServe(t, []string{"--config", cfgPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(s.stderr.String())
	if addr == nil {
		t.Fatalf("no addr in log:\n%s", s.stderr)
	}
	resp, err := http.Post("http://"+addr[1]+"/webhook/alertmanager", "application/json", bytes.NewReader([]byte(paymentsAlert)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(pd.Events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	evs := pd.Events()
	if len(evs) != 1 || evs[0].EventAction != "trigger" || evs[0].RoutingKey != paymentsKey {
		t.Fatalf("PagerDuty got %+v, want one trigger with the payments key", evs)
	}
	s.stop(t)
	for name, text := range map[string]string{"check": out.String() + errOut.String(), "serve": s.stdout.String() + s.stderr.String()} {
		if strings.Contains(text, paymentsKey) || strings.Contains(text, defaultKey) {
			t.Errorf("%s prints a routing key:\n%s", name, text)
		}
	}
}

// TestUnknownKeyRefIsRefusedAtLoad: check and serve both refuse a runbook
// whose reference names no configured key, at the reference's line.
func TestUnknownKeyRefIsRefusedAtLoad(t *testing.T) {
	cfgPath, rb := keyRefSetup(t, "payment", "http://127.0.0.1:1")
	want := rb + `:9: routing.critical.pagerduty_key_ref: no PagerDuty routing key "payment" is configured`
	for _, args := range [][]string{{"check", "--config", cfgPath}, {"serve", "--config", cfgPath}} {
		var out, errOut lockedBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := run(ctx, args, strings.NewReader(paymentsAlert), &out, &errOut, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error()+errOut.String(), want) {
			t.Errorf("%s: %v\n%s\nwant %s", args[0], err, errOut.String(), want)
		}
	}
	// Without the configuration, runbooks alone may name keys configured
	// elsewhere.
	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"check", filepath.Dir(rb)}, nil, &out, &errOut, nil); err != nil {
		t.Errorf("check of the runbooks alone: %v\n%s", err, errOut.String())
	}
}
