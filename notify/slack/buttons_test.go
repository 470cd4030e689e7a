package slack

import (
	"testing"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// buttons lists the action ids of the card's buttons.
func buttons(inc notify.Incident) []string {
	var ids []string
	for _, b := range Blocks(inc, RenderOptions{}) {
		if a, ok := b.(*slack.ActionBlock); ok {
			for _, e := range a.Elements.ElementSet {
				btn := e.(*slack.ButtonBlockElement)
				if btn.Value != ButtonValue(inc.ID, inc.Version) {
					panic("button value " + btn.Value)
				}
				ids = append(ids, btn.ActionID)
			}
		}
	}
	return ids
}

// TestButtonsFollowTheIncident: an open incident has every button, an
// acknowledged one no Acknowledge, a resolved one none; each carries the
// incident id and the card version.
func TestButtonsFollowTheIncident(t *testing.T) {
	inc := notify.Incident{ID: "INC-7F3A2C", Version: 4, Status: notify.StatusFiring, Title: "t"}
	for _, tt := range []struct {
		status notify.Status
		want   []string
	}{
		{notify.StatusFiring, []string{ActionAck, ActionResolve, ActionSilence, ActionEscalate}},
		{notify.StatusAcknowledged, []string{ActionResolve, ActionSilence, ActionEscalate}},
		{notify.StatusResolved, nil},
	} {
		inc.Status = tt.status
		if got := buttons(inc); len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
			t.Errorf("%s: buttons %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestButtonValue(t *testing.T) {
	for _, tt := range []struct {
		in      string
		id      string
		version int64
		ok      bool
	}{
		{ButtonValue("INC-7F3A2C", 12), "INC-7F3A2C", 12, true},
		{"INC-2041", "INC-2041", 0, true},
		{"INC-1@x", "", 0, false},
		{"INC-1@-2", "", 0, false},
		{"@3", "", 0, false},
		{"", "", 0, false},
	} {
		id, v, ok := ParseButtonValue(tt.in)
		if id != tt.id || v != tt.version || ok != tt.ok {
			t.Errorf("ParseButtonValue(%q) = %q %d %v, want %q %d %v", tt.in, id, v, ok, tt.id, tt.version, tt.ok)
		}
	}
}
