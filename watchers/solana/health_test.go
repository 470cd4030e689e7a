package solana

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

func TestRPCHealth(t *testing.T) {
	tests := []struct {
		name       string
		fault      func(primary, backup *solanatest.Server)
		restore    func(primary, backup *solanatest.Server)
		wantReason string
	}{
		{
			name:       "behind (-32005 with numSlotsBehind)",
			fault:      func(p, _ *solanatest.Server) { p.SetHealth(solanatest.HealthBehind, 187) },
			restore:    func(p, _ *solanatest.Server) { p.SetHealth(solanatest.HealthOK, 0) },
			wantReason: "node unhealthy (-32005): Node is behind by 187 slots",
		},
		{
			name:       "unknown (-32005, numSlotsBehind null)",
			fault:      func(p, _ *solanatest.Server) { p.SetHealth(solanatest.HealthUnknown, 0) },
			restore:    func(p, _ *solanatest.Server) { p.SetHealth(solanatest.HealthOK, 0) },
			wantReason: "node unhealthy (-32005): Node is unhealthy",
		},
		{
			name:       "stops answering",
			fault:      func(p, _ *solanatest.Server) { p.SetUnresponsive(true) },
			restore:    func(p, _ *solanatest.Server) { p.SetUnresponsive(false) },
			wantReason: "getHealth: no answer within",
		},
		{
			name:       "slot lag",
			fault:      func(_, b *solanatest.Server) { b.SetSlot(356102417 + 120) },
			restore:    func(_, b *solanatest.Server) { b.SetSlot(356102417) },
			wantReason: "slot lag 120 exceeds max_slot_lag 50",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, backup := solanatest.NewServer(), solanatest.NewServer()
			defer primary.Close()
			defer backup.Close()
			cfg := testConfig()
			cfg.Endpoints = []EndpointConfig{
				{Name: "primary", URL: primary.URL() + "/?api-key=SECRET", Role: "primary"},
				{Name: "backup", URL: backup.URL(), Role: "backup"},
			}
			h := start(t, cfg, nil)
			store := rpcview.Store{KV: h.kv}
			eventually(t, "both endpoints healthy in the view", func() bool {
				v, err := store.View(context.Background())
				return err == nil && len(v.Endpoints) == 2 && v.Endpoints[0].Healthy && v.Endpoints[1].Healthy
			})

			tt.fault(primary, backup)
			eventually(t, "unhealthy event", func() bool { return h.pub.count("solana.rpc.unhealthy") == 1 })
			if got := testutil.ToFloat64(h.w.m.rpcUp.WithLabelValues("primary")); got != 0 {
				t.Errorf("solana_rpc_up{endpoint=primary} = %v, want 0", got)
			}
			v, err := store.View(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if hb, ok := v.HealthiestBackup(); !ok || hb.Name != "backup" || v.Endpoints[0].Name != "backup" {
				t.Errorf("view = %+v, want backup ranked first and healthiest", v.Endpoints)
			}

			evs, sigs := h.pub.ofType("solana.rpc.unhealthy")
			ev, sig := evs[0], sigs[0]
			if ev.Source != "solana" || ev.Subject != "primary" {
				t.Errorf("envelope = %+v", ev)
			}
			wantLabels := map[string]string{"alertname": "SolanaRPCUnhealthy", "severity": "critical", "endpoint": "primary", "role": "primary"}
			for k, v := range wantLabels {
				if sig.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, sig.Labels[k], v)
				}
			}
			if sig.GroupKey != "solana/rpc/primary" || sig.Status != "firing" {
				t.Errorf("group key %q status %q", sig.GroupKey, sig.Status)
			}
			if r, _ := sig.Fields["reason"].(string); !strings.Contains(r, tt.wantReason) {
				t.Errorf("reason = %q, want it to contain %q", r, tt.wantReason)
			}
			if n, _ := sig.Fields["consecutive_failures"].(float64); n < 2 {
				t.Errorf("consecutive_failures = %v, want >= 2", sig.Fields["consecutive_failures"])
			}
			hb, _ := sig.Fields["healthiest_backup"].(map[string]any)
			if hb["name"] != "backup" || hb["url"] != backup.URL() {
				t.Errorf("healthiest_backup = %v", sig.Fields["healthiest_backup"])
			}
			for _, k := range []string{"endpoint", "url", "slot", "best_slot", "slot_lag"} {
				if _, ok := sig.Fields[k]; !ok {
					t.Errorf("field %s missing", k)
				}
			}

			tt.restore(primary, backup)
			eventually(t, "recovered event", func() bool { return h.pub.count("solana.rpc.recovered") == 1 })
			_, rsigs := h.pub.ofType("solana.rpc.recovered")
			rec := rsigs[0]
			if rec.Status != "resolved" || rec.Fingerprint != sig.Fingerprint || !rec.StartsAt.Equal(sig.StartsAt) || rec.EndsAt.IsZero() {
				t.Errorf("recovered = %+v, want resolved with the unhealthy fingerprint and start", rec)
			}
			if h.pub.count("solana.rpc.unhealthy") != 1 {
				t.Errorf("flapped: %d unhealthy events", h.pub.count("solana.rpc.unhealthy"))
			}
			h.pub.mu.Lock()
			for _, ev := range h.pub.events {
				if strings.Contains(string(ev.Data), "SECRET") {
					t.Errorf("event %s leaks the API key: %s", ev.Type, ev.Data)
				}
			}
			h.pub.mu.Unlock()
			raw, _ := json.Marshal(v)
			if strings.Contains(string(raw), "SECRET") {
				t.Errorf("rpc view leaks the API key")
			}
		})
	}
}

func TestRPCHealthNoFlapping(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	cfg := testConfig()
	cfg.Health.UnhealthyAfter = 1000 // never reached in this test
	cfg.Endpoints = []EndpointConfig{{Name: "primary", URL: srv.URL(), Role: "primary"}}
	h := start(t, cfg, nil)
	for range 3 {
		srv.SetHealth(solanatest.HealthBehind, 200)
		eventually(t, "a failed probe", func() bool { return testutil.ToFloat64(h.w.m.rpcUp.WithLabelValues("primary")) == 0 })
		srv.SetHealth(solanatest.HealthOK, 0)
		eventually(t, "a good probe", func() bool { return testutil.ToFloat64(h.w.m.rpcUp.WithLabelValues("primary")) == 1 })
	}
	if n := h.pub.count("solana.rpc.unhealthy"); n != 0 {
		t.Errorf("%d unhealthy events for isolated failures, want 0", n)
	}
}

// TestRPCSeverityByRole: a backup going down is a warning while another
// endpoint serves; the primary going down is critical, and so is the last
// endpoint standing going down. The recovery carries its episode's
// severity.
func TestRPCSeverityByRole(t *testing.T) {
	type down struct {
		endpoint string
		severity string
		allDown  bool
	}
	tests := []struct {
		name  string
		roles map[string]string // endpoint name → role, in name order
		downs []down            // taken down one after another
	}{
		{"primary down", map[string]string{"a-primary": "primary", "b-backup": "backup"},
			[]down{{"a-primary", "critical", false}}},
		{"backup down", map[string]string{"a-primary": "primary", "b-backup": "backup"},
			[]down{{"b-backup", "warning", false}}},
		{"all down, primary first", map[string]string{"a-primary": "primary", "b-backup": "backup"},
			[]down{{"a-primary", "critical", false}, {"b-backup", "critical", true}}},
		{"all down, backup first", map[string]string{"a-primary": "primary", "b-backup": "backup"},
			[]down{{"b-backup", "warning", false}, {"a-primary", "critical", true}}},
		{"backups only", map[string]string{"a-backup": "backup", "b-backup": "backup", "c-backup": "backup"},
			[]down{{"a-backup", "warning", false}, {"b-backup", "warning", false}, {"c-backup", "critical", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			nodes := map[string]*solanatest.Server{}
			for _, name := range slices.Sorted(maps.Keys(tt.roles)) {
				n := solanatest.NewServer()
				defer n.Close()
				nodes[name] = n
				cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Name: name, URL: n.URL(), Role: tt.roles[name]})
			}
			h := start(t, cfg, nil)
			store := rpcview.Store{KV: h.kv}
			eventually(t, "all endpoints healthy in the view", func() bool {
				v, err := store.View(context.Background())
				return err == nil && len(v.Endpoints) == len(tt.roles) && !slices.ContainsFunc(v.Endpoints, func(e rpcview.Endpoint) bool { return !e.Healthy })
			})
			for i, d := range tt.downs {
				nodes[d.endpoint].SetHealth(solanatest.HealthUnknown, 0)
				eventually(t, d.endpoint+" unhealthy", func() bool { return h.pub.count("solana.rpc.unhealthy") == i+1 })
				evs, sigs := h.pub.ofType("solana.rpc.unhealthy")
				if evs[i].Subject != d.endpoint {
					t.Fatalf("event %d for %s, want %s", i, evs[i].Subject, d.endpoint)
				}
				s := sigs[i]
				if s.Labels["severity"] != d.severity || s.Labels["role"] != tt.roles[d.endpoint] || s.Fields["all_endpoints_down"] != d.allDown {
					t.Errorf("%s down: severity %q role %q all_endpoints_down %v; want %q, %q, %v",
						d.endpoint, s.Labels["severity"], s.Labels["role"], s.Fields["all_endpoints_down"], d.severity, tt.roles[d.endpoint], d.allDown)
				}
				if d.allDown != strings.Contains(s.Annotations["summary"], "no healthy endpoint is left") {
					t.Errorf("summary %q", s.Annotations["summary"])
				}
			}
			for _, d := range tt.downs {
				nodes[d.endpoint].SetHealth(solanatest.HealthOK, 0)
			}
			eventually(t, "all recovered", func() bool { return h.pub.count("solana.rpc.recovered") == len(tt.downs) })
			_, recs := h.pub.ofType("solana.rpc.recovered")
			for _, r := range recs {
				for _, d := range tt.downs {
					if r.Labels["endpoint"] == d.endpoint && r.Labels["severity"] != d.severity {
						t.Errorf("%s recovered with severity %q, its episode was %q", d.endpoint, r.Labels["severity"], d.severity)
					}
				}
			}
		})
	}
}
