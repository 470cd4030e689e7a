package slack

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

func stormOf(n int, long bool) notify.Incident {
	since := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	st := &notify.Storm{Channel: "#alerts", Since: since}
	for i := range n {
		sev := notify.SeverityWarning
		switch {
		case i%10 == 3:
			sev = notify.SeverityCritical
		case i%10 == 7:
			sev = notify.SeverityInfo
		}
		status := notify.StatusFiring
		if i%5 == 0 {
			status = notify.StatusResolved
		}
		title := fmt.Sprintf("DiskFull: node-%d is out of space", i)
		if long {
			title = strings.Repeat("<&>*_~`", 100)
		}
		st.Entries = append(st.Entries, notify.StormEntry{ID: fmt.Sprintf("INC-%06X", i), Severity: sev, Status: status,
			Title: title, At: since.Add(time.Duration(i) * time.Second)})
	}
	return notify.Incident{ID: "STORM-ABC123", Title: "Alert storm in #alerts", Severity: notify.SeverityCritical,
		Status: notify.StatusFiring, StartedAt: since, UpdatedAt: since.Add(time.Minute), Storm: st}
}

// TestStormCardFitsSlack: a storm card holds within Slack's 50 blocks and
// 3000 characters per text whatever the storm holds, lists as many
// incidents as it may, and counts the rest by severity.
func TestStormCardFitsSlack(t *testing.T) {
	for _, tt := range []struct {
		n      int
		long   bool
		listed int
	}{{5, false, 5}, {500, false, DefaultMaxStormEntries}, {500, true, -1}} {
		t.Run(fmt.Sprintf("%d_long=%v", tt.n, tt.long), func(t *testing.T) {
			inc := stormOf(tt.n, tt.long)
			blocks := Blocks(inc, RenderOptions{})
			checkLimits(t, blocks)
			b, _ := json.Marshal(blocks)
			text := string(b)
			listed := strings.Count(text, "INC-")
			if tt.listed >= 0 && listed != tt.listed {
				t.Errorf("%d incidents listed, want %d", listed, tt.listed)
			}
			if !strings.Contains(text, fmt.Sprintf("· %d incidents", tt.n)) {
				t.Errorf("the header does not count %d incidents", tt.n)
			}
			if more := tt.n - listed; more > 0 && !strings.Contains(text, fmt.Sprintf("and %d more: ", more)) {
				t.Errorf("the %d incidents not listed are not counted: %s", more, text)
			}
			if fb := FallbackText(inc); !strings.Contains(fb, "Alert storm in #alerts") {
				t.Errorf("fallback text %q", fb)
			}
		})
	}
}

// TestStormCardOver: once over, the card says so and for how long.
func TestStormCardOver(t *testing.T) {
	inc := stormOf(3, false)
	inc.Storm.Over, inc.Storm.Until = true, inc.Storm.Since.Add(12*time.Minute)
	b, _ := json.Marshal(Blocks(inc, RenderOptions{}))
	for _, want := range []string{"Alert storm over in #alerts · 3 incidents", "*Over*", "(12m)", "get their own card again"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("over card lacks %q: %s", want, b)
		}
	}
}
