package runbooks

import (
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/strictyaml"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// The YAML format of a runbook file. One file may hold several runbooks
// as separate YAML documents; shipped/*.yaml are the examples.
type runbookSpec struct {
	Name        string           `yaml:"name" required:"true"`
	Title       actions.Template `yaml:"title" required:"true"`
	Summary     actions.Template `yaml:"summary"`
	Description string           `yaml:"description"`
	RunbookURL  actions.Template `yaml:"runbook_url"`
	// Priority decides between runbooks that match the same signal: the
	// highest wins (default 0); between equal priorities the more specific
	// match (more matchers, a source or type list) wins, then the one
	// loaded first. Shipped runbooks use 10 to 20: give a runbook of your
	// own that should win over a shipped one a higher priority, or the same
	// name to replace it. A runbook that can never win is a load warning.
	Priority    int               `yaml:"priority"`
	Fallback    bool              `yaml:"fallback"`
	Match       matchSpec         `yaml:"match"`
	Severity    severitySpec      `yaml:"severity"`
	Routing     routingSpec       `yaml:"routing"`
	Correlate   *correlateSpec    `yaml:"correlate"`
	Detection   string            `yaml:"detection"`
	Assessment  []stepSpec        `yaml:"assessment"`
	Causes      []causeSpec       `yaml:"causes"`
	Remediation []remediationSpec `yaml:"remediation"`
	Escalation  []escalationSpec  `yaml:"escalation"`
	// EscalationRepeat starts the ladder again from the top this many
	// times after its last level while nobody acknowledges (default 0).
	// Each round lasts as long as the first, plus the gap between its
	// first two levels, so the top level is called again one gap later.
	EscalationRepeat int      `yaml:"escalation_repeat"`
	PostIncident     []string `yaml:"post_incident"`
	// Breaker is the runbook's circuit breaker: this many failed,
	// verify_failed or reverted runs of its steps within window (across
	// incidents and replicas) open it, and its steps refuse to run until
	// the window has passed (default 3 in 1h).
	Breaker *breakerSpec `yaml:"breaker"`
}

type breakerSpec struct {
	Failures *int                 `yaml:"failures"`
	Window   *strictyaml.Duration `yaml:"window"`
}

type matchSpec struct {
	Sources  []string      `yaml:"sources"`
	Types    []string      `yaml:"types"`
	Matchers []matcherSpec `yaml:"matchers"`
}

// matcherSpec is one matcher string, or a braced list, parsed with
// Alertmanager's parser.
type matcherSpec struct {
	ms labels.Matchers
}

func (m *matcherSpec) UnmarshalStrictYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!bool" {
		return errorString(`expected a matcher string like alertname="RPCEndpointDown"`)
	}
	ms, err := rules.ParseMatchers(n.Value)
	if err != nil {
		return err
	}
	m.ms = ms
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

type severitySpec struct {
	// Label holds the severity, "severity" by default.
	Label string `yaml:"label"`
	// Default applies when the label is missing or unknown.
	Default string `yaml:"default"`
	// Fixed, when set, is the severity whatever the labels say.
	Fixed string `yaml:"fixed"`
	// Map translates label values: {page: critical}.
	Map map[string]string `yaml:"map"`
}

type routingSpec struct {
	Critical *routeSpec `yaml:"critical"`
	Warning  *routeSpec `yaml:"warning"`
	Info     *routeSpec `yaml:"info"`
}

type routeSpec struct {
	Channel string `yaml:"channel"`
	Page    *bool  `yaml:"page"`
	// PagerDutyKeyRef names a routing key configured in the bot (never
	// the key itself).
	PagerDutyKeyRef string `yaml:"pagerduty_key_ref"`
}

// correlateSpec joins this runbook's incidents with those of runbooks
// that see the same fault from another source, in the spirit of
// Alertmanager's inhibit rules, but keeping both signals on one card:
//
//	correlate:
//	  with: [solana-rpc-unhealthy]   # runbook names
//	  on: [endpoint]                 # labels both sources carry
//
// A signal this runbook matches and a signal a runbook in with matches
// belong to one incident when they carry equal values for every label in
// on. Whichever arrives first opens the incident (its runbook renders the
// card, routes, pages and escalates); the other joins it: the card lists
// its alert with a line "joined from RPCEndpointDown (Alertmanager, runbook
// rpc-endpoint-down)", the thread says so, the severity is the worst of
// the alerts, and the incident resolves when every alert has. One fault,
// one page, in either order and on any replica: the incident's key is
// derived from the group of correlated runbooks and the label values, not
// from Alertmanager's group key or the watcher's.
//
// Links are symmetric and transitive: runbooks linked by with (declared on
// either side) form one group, and every runbook of a group that declares
// on must declare the same labels. A signal that lacks one of the labels
// (or has it empty) is not correlated and opens an incident of its own as
// before. Correlated incidents are keyed by the labels, so Alertmanager's
// grouping does not apply to them: two endpoints down in one notification
// are two incidents, one per endpoint.
type correlateSpec struct {
	With []string `yaml:"with" required:"true"`
	On   []string `yaml:"on" required:"true"`
}

type stepSpec struct {
	Text actions.Template `yaml:"text" required:"true"`
	Link actions.Template `yaml:"link"`
}

type causeSpec struct {
	Name        string            `yaml:"name" required:"true"`
	Symptoms    actions.Template  `yaml:"symptoms"`
	Check       actions.Template  `yaml:"check"`
	Remediation []remediationSpec `yaml:"remediation"`
}

type remediationSpec struct {
	ID        string               `yaml:"id" required:"true"`
	Title     string               `yaml:"title" required:"true"`
	Action    string               `yaml:"action" required:"true"`
	Params    yaml.Node            `yaml:"params"`
	Approval  *approvalSpec        `yaml:"approval"`
	Cooldown  *strictyaml.Duration `yaml:"cooldown"`
	Automatic *bool                `yaml:"automatic"`
	// Verify is the step's check window; Revert says what happens when
	// the check fails: auto (restore at once and escalate), manual (the
	// card offers revert-<id> as a step of its own), never. Default
	// manual when the action can be undone, never otherwise.
	Verify *verifySpec `yaml:"verify"`
	Revert *string     `yaml:"revert"`
}

type verifySpec struct {
	// Within is how long after the run the action's check may take,
	// and by when the incident must have resolved (all its alerts) for
	// the run to count as verified.
	Within *strictyaml.Duration `yaml:"within"`
	// IncidentResolves (default true) makes the incident's resolution part
	// of the check; false when the incident cannot resolve by itself (a
	// one-off on-chain event) and only the action's check counts.
	IncidentResolves *bool `yaml:"incident_resolves"`
}

type approvalSpec struct {
	Approvers         []string             `yaml:"approvers"`
	MinApprovals      *int                 `yaml:"min_approvals"`
	AllowSelfApproval *bool                `yaml:"allow_self_approval"`
	Expires           *strictyaml.Duration `yaml:"expires"`
}

type escalationSpec struct {
	Name   string              `yaml:"name" required:"true"`
	After  strictyaml.Duration `yaml:"after" required:"true"`
	Notify string              `yaml:"notify" required:"true"`
	// Mention lists Slack user ids (U…, W…) and user group ids (S…) the
	// escalation reply mentions, so the level is notified by Slack
	// itself; Notify is the text people read.
	Mention []string `yaml:"mention"`
	// Page pages PagerDuty for this level too, on the service named by
	// PagerDutyKeyRef (a key in pagerduty.routing_keys; empty: the
	// default service), as its own PagerDuty incident, acknowledged and
	// resolved with the bot's.
	Page            bool   `yaml:"page"`
	PagerDutyKeyRef string `yaml:"pagerduty_key_ref"`
}
