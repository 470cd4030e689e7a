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

// Action ids of a remediation step's buttons. Each button's value is
// StepButtonValue(incident id, card version, step id, short plan hash).
const (
	// ActionStepRequest requests the step (labelled Run for a step that
	// needs no approval).
	ActionStepRequest = "step_request"
	ActionStepApprove = "step_approve"
	ActionStepDeny    = "step_deny"
)

// StepBlockPrefix starts the block id of a step's row of buttons; the
// step's id follows.
const StepBlockPrefix = "step_actions:"

// shortHash is how much of a plan hash a step button carries: what the
// card shows ("plan 1a2b3c4d5e6f").
const shortHash = 12

// Block Kit limits that apply to buttons.
const (
	maxBlockID       = 255
	maxButtonValue   = 2000
	maxConfirmTitle  = 100
	maxConfirmText   = 300
	maxConfirmButton = 30
)

// StepButtonValue is what a step button carries: the incident id and card
// version, the step id and the short hash of the plan the card showed,
// "INC-7F3A2C@12|switch-rpc|1a2b3c4d5e6f".
func StepButtonValue(id string, version int64, step, hash string) string {
	if len(hash) > shortHash {
		hash = hash[:shortHash]
	}
	return ButtonValue(id, version) + "|" + step + "|" + hash
}

// ParseStepButtonValue reads a StepButtonValue.
func ParseStepButtonValue(v string) (id string, version int64, step, hash string, ok bool) {
	parts := strings.Split(strings.TrimSpace(v), "|")
	if len(parts) != 3 || parts[1] == "" || len(parts[2]) < 8 {
		return "", 0, "", "", false
	}
	id, version, ok = ParseButtonValue(parts[0])
	if !ok {
		return "", 0, "", "", false
	}
	return id, version, parts[1], parts[2], true
}

// stepActions is a step's row of buttons, or nil when it has none: Request
// (Run when it needs no approval) when no request is live for the plan
// shown, Approve and Deny while one is pending; nothing while it is
// approved or running or once it ran, for a step whose plan is unavailable
// or has no hash, on a resolved incident or while remediation is frozen.
func stepActions(inc notify.Incident, p notify.Proposal) *slack.ActionBlock {
	if inc.Status == notify.StatusResolved || inc.ID == "" || inc.Freeze != "" ||
		p.ID == "" || p.Error != "" || p.Hash == "" {
		return nil
	}
	value := StepButtonValue(inc.ID, inc.Version, p.ID, p.Hash)
	blockID := StepBlockPrefix + p.ID
	if len(value) > maxButtonValue || len(blockID) > maxBlockID {
		return nil // a step id this long is refused by the runbook loader
	}
	title := oneLine(p.Title)
	if title == "" {
		title = p.ID
	}
	button := func(id, text, style string, confirm bool) slack.BlockElement {
		b := slack.NewButtonBlockElement(id, value, slack.NewTextBlockObject(slack.PlainTextType, text, true, false))
		b.Style = slack.Style(style)
		if confirm {
			plan := oneLine(p.Plan)
			if plan == "" {
				plan = title
			}
			b.Confirm = slack.NewConfirmationBlockObject(
				plain(text+" "+title+"?", maxConfirmTitle),
				plain("This will: "+plan, maxConfirmText),
				plain(text, maxConfirmButton),
				plain("Cancel", maxConfirmButton))
		}
		return b
	}
	switch p.State {
	case notify.StepNone, notify.StepDenied, notify.StepExpired, notify.StepVoid:
		if p.Automatic {
			return slack.NewActionBlock(blockID, button(ActionStepRequest, "Run", "primary", true))
		}
		return slack.NewActionBlock(blockID, button(ActionStepRequest, "Request", "", true))
	case notify.StepPending:
		return slack.NewActionBlock(blockID,
			button(ActionStepApprove, "Approve", "primary", true),
			button(ActionStepDeny, "Deny", "danger", false))
	}
	return nil
}

// plain is plain text cut to limit characters.
func plain(s string, limit int) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, notify.Truncate(s, limit), false, false)
}
