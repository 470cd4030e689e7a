// Package input defines what can change an incident. Every source — an
// Alertmanager notification, an on-chain watcher, a person in Slack or
// PagerDuty, a timer coming due — reaches the engine as events on the bus,
// and a Decoder registered for the event's type turns each event into
// Inputs. The engine applies inputs to incident records with one pure
// function, so adding a kind of input is one decoder plus one case there.
package input

import (
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/signal"
)

// Kind says what an input asks of an incident.
type Kind string

// Kinds of input.
const (
	// Signal is an alert or on-chain observation, firing or resolved. It
	// finds its incident by group key and runbook, and may open one.
	Signal Kind = "signal"
	// Ack acknowledges: someone has it. Escalation stops.
	Ack Kind = "ack"
	// Unack withdraws an acknowledgement; escalation resumes from the
	// level it had reached.
	Unack Kind = "unack"
	// Resolve resolves by hand, even while alerts still fire.
	Resolve Kind = "resolve"
	// Note adds a note to the timeline.
	Note Kind = "note"
	// Escalate jumps to the next escalation level now.
	Escalate Kind = "escalate"
	// EscalationDue is a timer firing: the pending escalation level is due.
	// It is fenced by Token: a timer whose token is no longer the
	// incident's does nothing.
	EscalationDue Kind = "escalation_due"
	// Silence asks for the incident's Alertmanager alerts to be silenced
	// for Duration. Asking again while a silence holds extends it; it
	// never makes a second one.
	Silence Kind = "silence"
	// Unsilence asks for the incident's silence to be expired now.
	Unsilence Kind = "unsilence"
	// SilenceCreated is the silence reconciler reporting that Alertmanager
	// holds the silence: Text is its id, Token the wish it fulfils.
	SilenceCreated Kind = "silence_created"
	// SilenceExpired is the silence reconciler reporting that Alertmanager
	// expired the silence: Text is its id, Token the wish it ended.
	SilenceExpired Kind = "silence_expired"
	// Request asks for remediation step Step to run, for the plan whose
	// hash is Hash (Text is the plan as the requester saw it). It runs
	// once the step's approval policy is met.
	Request Kind = "request"
	// Approve and Deny are an approver's vote on the request of Step, for
	// the plan with hash Hash; As is the policy's approver entry the voter
	// matched when voting (their user id, or a group of theirs).
	Approve Kind = "approve"
	Deny    Kind = "deny"
	// ApprovalExpired is a request's expiry timer firing, fenced by Token.
	ApprovalExpired Kind = "approval_expired"
	// ActionStarted and ActionResult are the action reconciler reporting
	// that the run of Step for plan Hash began, and its result (Token:
	// verified, verify_failed, failed, dry_run, unknown, void; Text: detail).
	ActionStarted Kind = "action_started"
	ActionResult  Kind = "action_result"
	// Freeze and Unfreeze turn the remediation kill switch on or off
	// (Text: the reason) when they address no incident (a person's
	// command); addressed to an open incident, they tell it.
	Freeze   Kind = "freeze"
	Unfreeze Kind = "unfreeze"
	// Refresh redraws the incident's card and changes nothing else: the
	// plans of its steps resolve again, for they follow the systems they
	// act on (the RPC view, a deployment's revisions), which change
	// without the incident changing. Sent when a card's button carried a
	// plan that no longer holds, or by `/incident refresh`.
	Refresh Kind = "refresh"
)

// Kinds lists every kind, for validation and help texts.
var Kinds = []Kind{Signal, Ack, Unack, Resolve, Note, Escalate, EscalationDue, Silence, Unsilence, SilenceCreated, SilenceExpired,
	Request, Approve, Deny, ApprovalExpired, ActionStarted, ActionResult, Freeze, Unfreeze, Refresh}

// Actor is who caused an input.
type Actor struct {
	// ID is the user's id in the system it came from (Slack U0123, a
	// PagerDuty user id); empty for the bot itself.
	ID string `json:"id,omitempty"`
	// Name is the display name shown on the card.
	Name string `json:"name,omitempty"`
	// Via names the system: "slack", "pagerduty", "cli", "incidentbot".
	Via string `json:"via"`
	// Transport is how the request reached the bot within that system,
	// for the audit trail: "http" or "socket" (Slack Socket Mode).
	Transport string `json:"transport,omitempty"`
}

// String renders an actor for cards and logs: "Ada (slack)".
func (a Actor) String() string {
	name := a.Name
	if name == "" {
		name = a.ID
	}
	if name == "" {
		name = "someone"
	}
	if a.Via == "" {
		return name
	}
	return name + " (" + a.Via + ")"
}

// Bot is the actor for what incidentbot does by itself.
var Bot = Actor{Name: "incidentbot", Via: "incidentbot"}

// Input is one thing that happened to an incident.
type Input struct {
	Kind Kind
	// ID identifies the input for deduplication: a command applied twice
	// has one effect. Decoders derive it from the event id.
	ID string
	// At is when the input happened (the click, the timer's due time, the
	// alert's notification). Order-independent merging compares it.
	At time.Time
	// Signal is set for Kind Signal.
	Signal signal.Signal
	// Truncated is how many alerts the source left out of the notification
	// that carried Signal (Alertmanager's truncatedAlerts).
	Truncated int
	// Incident addresses an existing incident by its id (INC-…), for every
	// kind but Signal. Lookups are case-insensitive.
	Incident string
	// Actor is who caused it.
	Actor Actor
	// Text is a note's text or a resolution's comment.
	Text string
	// Token fences a timer: EscalationDue applies only while the incident
	// still holds this token. For SilenceCreated and SilenceExpired it
	// names the silence wish they answer.
	Token string
	// Duration is how long a Silence should hold.
	Duration time.Duration
	// Step is the remediation step's id in the runbook (Request, Approve,
	// Deny, ApprovalExpired); Hash the hash of the plan it is about; As the
	// approver entry a voter matched.
	Step string
	Hash string
	As   string
	// Before and Target are set on an ActionResult whose run changed
	// something that can be restored: the state before (Outcome.Before,
	// as the action encodes it) and what the run touched.
	Before string
	Target string
}

// Validate reports what an input is missing.
func (in Input) Validate() error {
	switch in.Kind {
	case Signal:
		return in.Signal.Validate()
	case Freeze, Unfreeze:
		// With an incident, it tells that incident; without, it is the
		// kill switch itself, for every replica and incident.
		return nil
	case Ack, Unack, Resolve, Escalate:
	case Note:
		if in.Text == "" {
			return fmt.Errorf("note for %s: text is empty", in.Incident)
		}
	case EscalationDue:
		if in.Token == "" {
			return fmt.Errorf("escalation timer for %s: token is empty", in.Incident)
		}
	case Silence:
		if in.Duration <= 0 {
			return fmt.Errorf("silence for %s: duration %s is not positive", in.Incident, in.Duration)
		}
	case Unsilence, Refresh:
	case SilenceCreated, SilenceExpired:
		if in.Text == "" || in.Token == "" {
			return fmt.Errorf("%s for %s: silence id or token is empty", in.Kind, in.Incident)
		}
	case Request, Approve, Deny, ActionStarted, ActionResult:
		if in.Step == "" || in.Hash == "" {
			return fmt.Errorf("%s for %s: step or plan hash is empty", in.Kind, in.Incident)
		}
	case ApprovalExpired:
		if in.Step == "" || in.Token == "" {
			return fmt.Errorf("approval timer for %s: step or token is empty", in.Incident)
		}
	default:
		return fmt.Errorf("unknown input kind %q", in.Kind)
	}
	if in.Incident == "" {
		return fmt.Errorf("%s: no incident id", in.Kind)
	}
	return nil
}

// Decoder turns one event into inputs. An event that can never be decoded
// returns an error marked with bus.Poison.
type Decoder func(ev bus.Event) ([]Input, error)
