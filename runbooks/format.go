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
}
