package console_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
)

// TestStormCard: the console prints a storm card as the list of its
// incidents, the first 50, and counts the rest by severity.
func TestStormCard(t *testing.T) {
	since := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	st := &notify.Storm{Channel: "#alerts", Since: since, Unlisted: map[notify.Severity]int{notify.SeverityInfo: 4}}
	for i := range 60 {
		sev := notify.SeverityWarning
		if i < 2 {
			sev = notify.SeverityCritical
		}
		st.Entries = append(st.Entries, notify.StormEntry{ID: fmt.Sprintf("INC-%06d", i), Severity: sev, Status: notify.StatusFiring, Title: "disk full"})
	}
	out := console.Card(notify.Incident{ID: "STORM-ABC123", Storm: st})
	for _, want := range []string{"🌩 STORM-ABC123 · alert storm in #alerts · ongoing since 03:00:00 UTC",
		"64 incidents: 2 critical, 58 warning, 4 info", "INC-000049", "… and 14 more: 10 warning, 4 info"} {
		if !strings.Contains(out, want) {
			t.Errorf("storm card lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "INC-000050") {
		t.Errorf("more than 50 incidents listed:\n%s", out)
	}
}
