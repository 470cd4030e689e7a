package alertmanager_test

import (
	"bytes"
	"testing"

	"github.com/incidentbot/incidentbot/handlers/alertmanager"
)

func TestDecodeFixtures(t *testing.T) {
	cases := map[string]struct {
		alerts, firing int
		truncated      uint64
	}{
		"webhook.firing.single.json":             {1, 1, 0},
		"webhook.resolved.single.json":           {1, 0, 0},
		"webhook.firing.grouped.json":            {5, 5, 0},
		"webhook.firing.partially_resolved.json": {5, 3, 0},
		"webhook.resolved.grouped.json":          {5, 0, 0},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := alertmanager.Decode(fixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Alerts) != want.alerts || len(m.Alerts.Firing()) != want.firing || m.TruncatedAlerts != want.truncated {
				t.Fatalf("got %d alerts, %d firing, %d truncated", len(m.Alerts), len(m.Alerts.Firing()), m.TruncatedAlerts)
			}
			for _, s := range m.Signals() {
				if err := s.Validate(); err != nil {
					t.Fatalf("signal %s: %v", s.Fingerprint, err)
				}
				if s.GroupKey != m.GroupKey {
					t.Fatalf("signal group %q, want %q", s.GroupKey, m.GroupKey)
				}
			}
		})
	}
}

func TestFiringAndResolvedHaveDistinctIDs(t *testing.T) {
	f, _ := alertmanager.Decode(fixture(t, "webhook.firing.single.json"))
	r, _ := alertmanager.Decode(fixture(t, "webhook.resolved.single.json"))
	if f.EventID() == r.EventID() {
		t.Fatal("firing and resolved notifications share an id")
	}
	if f.Alerts[0].Fingerprint != r.Alerts[0].Fingerprint {
		t.Fatal("fixture fingerprints differ")
	}
}

func TestMissingFingerprintIsComputed(t *testing.T) {
	// Remove the fingerprint; the computed one must equal Alertmanager's.
	body := fixture(t, "webhook.firing.single.json")
	m0, _ := alertmanager.Decode(body)
	want := m0.Alerts[0].Fingerprint
	stripped := bytes.Replace(body, []byte(`"fingerprint": "`+want+`"`), []byte(`"fingerprint": ""`), 1)
	m, err := alertmanager.Decode(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Alerts[0].Fingerprint; got != want {
		t.Fatalf("computed fingerprint %s, want %s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"webhook.firing.single.json", "webhook.firing.grouped.json", "webhook.resolved.grouped.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"version":"4","groupKey":"k","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2025-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := alertmanager.Decode(body)
		if err != nil {
			if m != nil {
				t.Fatal("error with a message")
			}
			return
		}
		// Accepted payloads are usable downstream: stable ids, valid signals.
		if m.EventID() != m.EventID() {
			t.Fatal("event id not deterministic")
		}
		for _, s := range m.Signals() {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted payload yields invalid signal: %v", err)
			}
		}
	})
}
