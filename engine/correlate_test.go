package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/signal"
)

// withShipped runs the env on the shipped runbooks, on a clock ahead of the
// bus's, so that escalation timers (real message schedules) stay pending.
func withShipped(t *testing.T, overrides ...string) func(*env) {
	return func(e *env) {
		e.cat = shippedCatalog(t, overrides...)
		e.clock = &clock{t: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Minute)}
		// A replica that finds another's lease on a delivery retries when
		// the lease ends: keep leases short.
		e.cfg.EffectTimeout = 200 * time.Millisecond
	}
}

func shippedCatalog(t *testing.T, overrides ...string) engine.Catalog {
	t.Helper()
	set, _, err := runbooks.LoadOver(actions.Default(), overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return app.Catalog{Set: set}
}

// rpcDown is the course's RPCEndpointDown for an endpoint as Alertmanager
// sends it (the course's group_by: alertname, severity), firing or, with
// ends set, resolved.
func rpcDown(t *testing.T, endpoint string, starts, ends time.Time) bus.Event {
	t.Helper()
	status := "firing"
	if !ends.IsZero() {
		status = "resolved"
	}
	alert := map[string]any{"status": status, "startsAt": starts, "endsAt": ends,
		"labels":      map[string]string{"alertname": "RPCEndpointDown", "severity": "critical", "endpoint": endpoint, "job": "incidentbot", "instance": "10.0.4.9:8080"},
		"annotations": map[string]string{"summary": "Solana RPC endpoint is unreachable", "description": "Cannot connect to Solana RPC endpoint"}}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "incidentbot",
		"groupKey": `{}:{alertname="RPCEndpointDown", severity="critical"}`, "alerts": []any{alert},
		"groupLabels": map[string]string{"alertname": "RPCEndpointDown", "severity": "critical"}})
	m, err := alertmanager.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: m.EventID(), Source: "alertmanager", Type: alertmanager.EventType, Time: starts, Subject: m.GroupKey, Data: body}
}

// rpcUnhealthy is the watchers' event for a primary endpoint, with the
// labels, group key and fingerprint they publish (watchers/solana/health.go).
func rpcUnhealthy(t *testing.T, endpoint string, starts, ends time.Time) bus.Event {
	t.Helper()
	s := signal.Signal{GroupKey: "solana/rpc/" + endpoint, Fingerprint: "rpc-" + endpoint, Status: signal.Firing,
		Labels:      map[string]string{"alertname": "SolanaRPCUnhealthy", "severity": "critical", "endpoint": endpoint, "role": "primary"},
		Annotations: map[string]string{"summary": "Solana RPC endpoint " + endpoint + " (primary) is unhealthy"},
		StartsAt:    starts, Fields: map[string]any{"endpoint": endpoint, "slot_lag": 187}}
	typ := "solana.rpc.unhealthy"
	if !ends.IsZero() {
		typ, s.Status, s.EndsAt = "solana.rpc.recovered", signal.Resolved, ends
	}
	data, _ := json.Marshal(s)
	return bus.Event{ID: typ + ":" + endpoint + ":" + starts.Format(time.RFC3339Nano), Source: "solana", Type: typ, Time: starts, Subject: endpoint, Data: data}
}

func (e *env) records(t *testing.T) []*engine.Record {
	t.Helper()
	m, err := e.eng.Incidents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*engine.Record
	for _, r := range m {
		out = append(out, r)
	}
	return out
}

// TestCorrelatedSourcesOneIncident: the course's RPCEndpointDown and the
// watchers' event for the same endpoint are one incident and one page,
// whichever arrives first; the card and thread say which joined; the
// incident resolves when both have.
func TestCorrelatedSourcesOneIncident(t *testing.T) {
	for _, order := range []string{"alert first", "watcher first"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t, withShipped(t))
			start := e.clock.Now().Add(-2 * time.Minute)
			alert, event := rpcDown(t, "primary", start, time.Time{}), rpcUnhealthy(t, "primary", start.Add(time.Minute), time.Time{})
			first, second, joined := alert, event, "joined from SolanaRPCUnhealthy (Solana watchers, runbook solana-rpc-unhealthy)"
			opener := "rpc-endpoint-down"
			if order == "watcher first" {
				first, second = event, alert
				joined, opener = "joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)", "solana-rpc-unhealthy"
			}
			e.deliver(t, first)
			e.clock.Add(time.Minute)
			e.deliver(t, second)
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Runbook != opener || len(recs[0].Alerts) != 2 {
				t.Fatalf("%d incidents, want one of %s with both alerts: %+v", len(recs), opener, recs)
			}
			if got := e.rec.pageActions(); len(got) != 1 || !strings.HasPrefix(got[0], "trigger:") {
				t.Fatalf("pages %v, want one trigger", got)
			}
			if n := e.rec.count("post"); n != 1 {
				t.Fatalf("%d cards, want 1", n)
			}
			last := e.rec.calls[len(e.rec.calls)-1]
			if last.op != "reply" || last.update.Kind != "joined" || !strings.Contains(fmt.Sprint(last.inc.Joined), joined) {
				t.Fatalf("last chat call %s %+v, card joined %q; want the joined reply and %q", last.op, last.update, last.inc.Joined, joined)
			}

			e.clock.Add(10 * time.Minute)
			e.deliver(t, rpcDown(t, "primary", start, e.clock.Now()))
			if r := e.records(t)[0]; r.Status != notify.StatusFiring {
				t.Fatalf("after the alert resolved: %s, want firing while the watcher's event fires", r.Status)
			}
			e.deliver(t, rpcUnhealthy(t, "primary", start.Add(time.Minute), e.clock.Now()))
			if r := e.records(t)[0]; r.Status != notify.StatusResolved {
				t.Fatalf("after both resolved: %s", r.Status)
			}
			if got := e.rec.pageActions(); len(got) != 2 || !strings.HasPrefix(got[1], "resolve:") {
				t.Fatalf("pages %v, want trigger, resolve", got)
			}
		})
	}
}

// TestCorrelatedSourcesAcrossReplicas: two replicas take the alert and the
// watcher's event at once; for each endpoint there is still one incident
// and one page, and another endpoint is another incident.
func TestCorrelatedSourcesAcrossReplicas(t *testing.T) {
	e := newEnv(t, withShipped(t))
	e.start(t) // a second replica on the same consumers
	start := e.clock.Now()
	const endpoints = 4
	var wg sync.WaitGroup
	for i := range endpoints {
		ep := fmt.Sprintf("ep-%d", i)
		for _, ev := range []bus.Event{rpcDown(t, ep, start, time.Time{}), rpcUnhealthy(t, ep, start, time.Time{})} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.bus.Publish(context.Background(), ev); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	e.idle(t)
	recs := e.records(t)
	if len(recs) != endpoints {
		t.Fatalf("%d incidents, want %d (one per endpoint)", len(recs), endpoints)
	}
	for _, r := range recs {
		if len(r.Alerts) != 2 {
			t.Errorf("%s: %d alerts, want the alert and the event", r.ID, len(r.Alerts))
		}
	}
	if n := len(e.rec.pageActions()); n != endpoints {
		t.Fatalf("%d pages, want %d", n, endpoints)
	}
}

// TestIncidentOpenedBeforeCorrelationKeepsItsAlerts: an RPCEndpointDown
// incident opened by a release whose runbook did not correlate still
// resolves when its alert does, under the release that correlates.
func TestIncidentOpenedBeforeCorrelationKeepsItsAlerts(t *testing.T) {
	shipped, err := os.ReadFile("../runbooks/shipped/rpc-endpoint-down.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, _, ok := strings.Cut(string(shipped), "correlate:")
	_, after, ok2 := strings.Cut(string(shipped), "detection:")
	if !ok || !ok2 {
		t.Fatal("shipped rpc-endpoint-down has no correlate section")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rpc.yaml"), []byte(before+"detection:"+after), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withShipped(t, dir))
	start := e.clock.Now()
	e.deliver(t, rpcDown(t, "primary", start, time.Time{}))

	e.cat = shippedCatalog(t)
	upgraded := e.newEngine(t)
	e.clock.Add(5 * time.Minute)
	if err := upgraded.Handle(context.Background(), &bus.Delivery{Event: rpcDown(t, "primary", start, e.clock.Now()), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	recs := e.records(t)
	if len(recs) != 1 || recs[0].Status != notify.StatusResolved {
		t.Fatalf("incidents %+v, want the one incident resolved", recs)
	}
	if got := e.rec.pageActions(); len(got) != 2 || !strings.HasPrefix(got[1], "resolve:") {
		t.Fatalf("pages %v, want trigger, resolve", got)
	}
}
