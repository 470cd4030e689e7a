// Package notify holds the neutral incident model that every sink renders,
// and the small interfaces the engine uses to reach people: a Chat (Slack,
// or the console) that keeps one living card per incident plus a thread,
// and a Pager (PagerDuty Events v2, or the console) for critical pages.
package notify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Severity is an incident's severity. The course's routing: critical pages,
// warning goes to chat only, info is for the record.
type Severity string

// Severities.
const (
	SeverityCritical Severity = "critical"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// Status is where an incident is in its life.
type Status string

// Statuses.
const (
	StatusFiring       Status = "firing"
	StatusAcknowledged Status = "acknowledged"
	StatusResolved     Status = "resolved"
)

// Incident is the neutral view of one incident that sinks render. It is a
// snapshot: the engine builds a new one for every change.
type Incident struct {
	// ID is the short human id shown everywhere, e.g. "INC-7F3A2C".
	ID string
	// Key is the incident's stable record key, derived from its group key
	// (the Alertmanager group, or what a watcher watches) and its runbook.
	Key string
	// Version increases with every change to the incident; sinks may use
	// it to skip stale updates.
	Version  int64
	Title    string
	Summary  string
	Severity Severity
	Status   Status
	// Source is where the events came from: "alertmanager", "solana".
	Source string
	// Runbook is the name of the runbook that matched, RunbookURL an
	// optional link to its prose.
	Runbook    string
	RunbookURL string
	// Labels are the labels common to all alerts of the incident.
	Labels map[string]string
	// Alerts are the alerts (or on-chain events) the incident groups,
	// firing ones first.
	Alerts []Alert
	// Joined says, one line each, which alerts joined the incident from
	// another runbook of its correlation group: "joined from
	// RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)".
	Joined []string
	// TruncatedAlerts counts alerts Alertmanager left out of its
	// notification (max_alerts); shown so nobody thinks the list is whole.
	TruncatedAlerts int
	Assessment      []Step
	Remediation     []Proposal
	Escalation      []EscalationLevel
	Links           []Link
	StartedAt       time.Time
	ResolvedAt      time.Time // zero while open
	UpdatedAt       time.Time
	// AcknowledgedBy names who acknowledged ("Ada (slack)") and
	// AcknowledgedAt when; set while an acknowledgement stands.
	AcknowledgedBy string
	AcknowledgedAt time.Time
	// ResolvedBy names who resolved the incident by hand, and says so when
	// alerts still fire; empty when it resolved by itself.
	ResolvedBy string
	// EscalationState says where the escalation ladder stands:
	// "next: L2 (Senior Engineer) at 03:30 UTC", "stopped: acknowledged".
	EscalationState string
	// Silence says whether the incident's alerts are silenced in
	// Alertmanager: "Silenced until 04:12 UTC by Ada (slack) (silence
	// 1a2b3c4d…)"; empty when not.
	Silence string
	// Freeze is set while remediation is frozen (the kill switch): who,
	// since when, why.
	Freeze string
	// Breaker is set while the runbook's circuit breaker is open: "circuit
	// breaker open: 3 failed runs of runbook X since 03:10 UTC; closes at
	// 04:10 UTC".
	Breaker string
	// Notes are people's notes, oldest first.
	Notes []Update
	// Reopened counts how often the incident re-fired after resolving.
	Reopened int
	// Storm, when set, makes this the living card of a channel's alert
	// storm instead of one incident's: ID names the storm, and the card
	// lists Storm.Entries (see Storm). Chats render it on its own.
	Storm *Storm
}

// Storm is what a storm card lists: past a threshold of new cards in one
// channel, the engine lists the channel's new incidents on one card,
// edited in place, instead of posting a card each.
type Storm struct {
	// Channel is the channel as routed.
	Channel string
	// Since is when the storm began.
	Since time.Time
	// Over is set once the rate of new incidents stayed below the
	// threshold for a window; Until is when the storm ended.
	Over  bool
	Until time.Time
	// Entries are every incident listed on the card, worst first
	// (critical, warning, info; open before resolved; oldest first). A
	// chat shows as many as fit and counts the rest.
	Entries []StormEntry
	// Unlisted counts, by severity, incidents of the storm that are not
	// in Entries (past what the engine keeps a list of).
	Unlisted map[Severity]int
}

// StormEntry is one incident on a storm card.
type StormEntry struct {
	ID       string
	Severity Severity
	Status   Status
	Title    string
	// At is when the incident joined the storm.
	At time.Time
}

// Total is how many incidents the storm holds, listed or not.
func (s *Storm) Total() int {
	n := len(s.Entries)
	for _, u := range s.Unlisted {
		n += u
	}
	return n
}

// Counts returns the storm's incidents by severity, and how many of the
// listed ones resolved.
func (s *Storm) Counts() (bySeverity map[Severity]int, resolved int) {
	bySeverity = map[Severity]int{}
	for sev, n := range s.Unlisted {
		bySeverity[sev] += n
	}
	for _, e := range s.Entries {
		bySeverity[e.Severity]++
		if e.Status == StatusResolved {
			resolved++
		}
	}
	return bySeverity, resolved
}

// CountsText says the counts in words: "3 critical, 57 warning; 12
// resolved". Severities are in order, the empty ones left out.
func CountsText(bySeverity map[Severity]int, resolved int) string {
	var parts []string
	for _, s := range []Severity{SeverityCritical, SeverityWarning, SeverityInfo} {
		if n := bySeverity[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	for _, s := range slices.Sorted(maps.Keys(bySeverity)) {
		if n := bySeverity[s]; s != SeverityCritical && s != SeverityWarning && s != SeverityInfo && n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	out := strings.Join(parts, ", ")
	if resolved > 0 {
		out += fmt.Sprintf("; %d resolved", resolved)
	}
	return out
}

// Alert is one alert or on-chain event inside an incident.
type Alert struct {
	Fingerprint  string
	Name         string
	Status       Status // firing or resolved
	Summary      string
	Labels       map[string]string
	StartsAt     time.Time
	EndsAt       time.Time // zero while firing
	GeneratorURL string
}

// Step is one assessment step: text to read or do, with an optional link
// (dashboard, logs query).
type Step struct {
	Text string
	Link string
}

// Proposal is one remediation step the runbook proposes, rendered as a
// dry-run plan.
type Proposal struct {
	// ID is the remediation step's id in the runbook.
	ID string
	// Title is what a person reads: "Switch to backup RPC".
	Title string
	// Action is the registered action name, e.g. "kubernetes.set_env".
	Action string
	// Plan is the dry-run text: "deployment solana-dapps/api: set SOLANA_RPC_URL → https://b".
	Plan string
	// Approval describes the approval policy in one line.
	Approval string
	// Automatic is true when the runbook lets it run without approval:
	// the bot requests it when the incident opens or reopens.
	Automatic bool
	// Error is set when the plan could not be rendered for this incident.
	Error string
	// Status is where the step's latest request stands, with its votes,
	// or its run's result ("approved by Bob (slack); ✅ verified: …");
	// empty while nobody requested it.
	Status string
	// State is where the step's latest request stands for the plan shown
	// (see StepState); it decides the card's buttons.
	State StepState
	// Hash is the hash of the plan as resolved for this card, the one a
	// request or a vote from it binds to; empty when it could not be
	// resolved (then the step has no buttons).
	Hash string
}

// StepState is where a remediation step's latest request stands, for the
// plan the card shows.
type StepState string

// Step states. StepNone, StepDenied, StepExpired and StepVoid offer a new
// request (Request, or Run for an automatic step); StepPending offers
// Approve and Deny; StepApproved (approved, waiting to run or running) and
// StepRan (the approved plan ran: it never runs twice) offer nothing.
const (
	StepNone     StepState = ""
	StepPending  StepState = "pending"
	StepApproved StepState = "approved"
	StepRan      StepState = "ran"
	StepDenied   StepState = "denied"
	StepExpired  StepState = "expired"
	StepVoid     StepState = "void"
)

// EscalationLevel is one level of the runbook's escalation ladder.
type EscalationLevel struct {
	Name  string // "L1 (On-Call)"
	After time.Duration
	Who   string
	// Mention lists Slack user ids (U…) and user group ids (S…) to
	// mention when the level is called.
	Mention []string
	// Page pages PagerDuty for the level too, on the service the
	// reference names (empty: the default).
	Page            bool
	PagerDutyKeyRef string
}

// Link is a titled URL.
type Link struct {
	Text string
	URL  string
}

// Update is one change to an incident, posted as a thread reply.
type Update struct {
	// Seq numbers updates within an incident from 1; sinks never see the
	// same Seq twice for one incident unless a delivery was interrupted.
	Seq  int64
	Kind string // "opened", "alerts_added", "alerts_resolved", "resolved", "reopened", ...
	Text string
	At   time.Time
	// Mention lists Slack user and user group ids the update calls on
	// (an escalation level's people); chats that can, notify them.
	Mention []string `json:",omitempty"`
}

// CardRef locates a posted card: the channel and message timestamp for
// Slack, an opaque id for other chats.
type CardRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// CardTag identifies one post attempt of one incident's card. A Chat posts
// it with the card (on Slack as message metadata), so that FindCard can
// tell whether a post whose outcome is unknown — the process died, or the
// answer was lost — went through.
type CardTag struct {
	// IncidentID is the incident's ID (Incident.ID).
	IncidentID string
	// Nonce is random for each post attempt, e.g. the nonce of the lease
	// the engine held while posting.
	Nonce string
}

// Chat keeps one living card per incident and a thread of updates under it.
type Chat interface {
	// PostCard posts the incident's card to channel, tagged with tag, and
	// returns where it is. It never posts twice on its own retries: after
	// an attempt whose outcome is unknown it looks for the card before
	// trying again. An error still does not prove that nothing was posted
	// (a post may land after its client gave up): look with FindCard
	// before posting again.
	PostCard(ctx context.Context, channel string, inc Incident, tag CardTag) (CardRef, error)
	// FindCard looks in channel for a card posted by PostCard for
	// tag.IncidentID at or after since (with a small allowance for clock
	// skew). Any nonce matches the incident: it returns the card carrying
	// tag.Nonce when there is one, else the oldest card of the incident.
	// found is false when no such card is visible now; the lookback is
	// bounded, and a post still in flight may appear later. Failures are
	// *Error, saying whether a retry may help.
	FindCard(ctx context.Context, channel string, tag CardTag, since time.Time) (ref CardRef, found bool, err error)
	// UpdateCard edits the card in place.
	UpdateCard(ctx context.Context, ref CardRef, inc Incident) error
	// Reply posts an update in the card's thread.
	Reply(ctx context.Context, ref CardRef, inc Incident, u Update) error
}

// PageAction is what a page asks of the pager.
type PageAction string

// Page actions, as in PagerDuty Events API v2.
const (
	PageTrigger     PageAction = "trigger"
	PageAcknowledge PageAction = "acknowledge"
	PageResolve     PageAction = "resolve"
)

// Page is one event to the pager.
type Page struct {
	Action PageAction
	// DedupKey is stable for the incident's life; PagerDuty groups on it.
	DedupKey string
	// RoutingKeyRef names the routing key (PagerDuty service) to page:
	// a reference the pager resolves from its configured keys
	// (pagerduty.routing_keys), never the key itself. Empty means the
	// pager's default key.
	RoutingKeyRef string
	Incident      Incident
}

// Pager sends pages.
type Pager interface {
	Page(ctx context.Context, p Page) error
}

// ErrNotSent is wrapped by a delivery's error when the call was handed back
// before anything was sent (e.g. it would have waited for its turn past
// its deadline): nothing can have reached the service, so there is
// nothing to look for before trying again.
var ErrNotSent = errors.New("not sent")

// Error is a failed delivery that says whether trying again may help.
type Error struct {
	// Op is what was being done: "slack chat.postMessage".
	Op string
	// Retryable is true for 5xx, 429 and network errors.
	Retryable bool
	// RetryAfter is the server's requested delay, when it gave one.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err (or an error it wraps) is a delivery
// failure worth retrying later. Unknown errors count as retryable: losing
// a page is worse than a delayed one.
func IsRetryable(err error) bool {
	var ne *Error
	if errors.As(err, &ne) {
		return ne.Retryable
	}
	return err != nil && !errors.Is(err, context.Canceled)
}
