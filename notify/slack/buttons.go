package slack

import (
	"strconv"
	"strings"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// Action ids of the card's buttons. handlers/slack routes a click on them;
// each button's value is ButtonValue(incident id, card version).
const (
	ActionAck      = "incident_ack"
	ActionResolve  = "incident_resolve"
	ActionSilence  = "incident_silence_1h"
	ActionEscalate = "incident_escalate"
)

// ActionsBlockID is the block id of the card's row of buttons.
const ActionsBlockID = "incident_actions"

// ButtonValue is what a card button carries: the incident id and the
// version of the card it was rendered on, "INC-7F3A2C@12".
func ButtonValue(id string, version int64) string {
	return id + "@" + strconv.FormatInt(version, 10)
}

// ParseButtonValue reads a ButtonValue. A value without a version (a card
// rendered before buttons carried one) has version 0.
func ParseButtonValue(v string) (id string, version int64, ok bool) {
	id, ver, found := strings.Cut(strings.TrimSpace(v), "@")
	if id == "" {
		return "", 0, false
	}
	if !found {
		return id, 0, true
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id, n, true
}

// actionsBlock is the card's buttons for an open incident: Acknowledge
// (until someone has), Resolve, Silence 1h and Escalate. A resolved
// incident has none.
func actionsBlock(inc notify.Incident) *slack.ActionBlock {
	if inc.Status == notify.StatusResolved || inc.ID == "" {
		return nil
	}
	value := ButtonValue(inc.ID, inc.Version)
	button := func(id, text, style string) slack.BlockElement {
		b := slack.NewButtonBlockElement(id, value, slack.NewTextBlockObject(slack.PlainTextType, text, true, false))
		b.Style = slack.Style(style)
		return b
	}
	var elems []slack.BlockElement
	if inc.Status != notify.StatusAcknowledged {
		elems = append(elems, button(ActionAck, "Acknowledge", "primary"))
	}
	elems = append(elems,
		button(ActionResolve, "Resolve", ""),
		button(ActionSilence, "Silence 1h", ""),
		button(ActionEscalate, "Escalate", "danger"))
	return slack.NewActionBlock(ActionsBlockID, elems...)
}
