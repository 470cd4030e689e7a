// Package rules decides which runbook an event selects. A Selector names
// the event sources and types it accepts and Alertmanager label matchers
// (parsed by Alertmanager's own parser); an Index holds many selectors and
// finds the winning one for an event without scanning them all.
package rules

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/alertmanager/matcher/compat"
	"github.com/prometheus/alertmanager/pkg/labels"
)

// parseMatchers is Alertmanager's UTF-8 matchers parser, built once and
// without touching the compat package's globals (compat.InitFromFlags
// would change them for the whole process).
var parseMatchers = compat.UTF8MatchersParser(slog.New(slog.DiscardHandler))

// ParseMatchers parses one matcher (`alertname="RPCEndpointDown"`,
// `severity=~"critical|page"`) or a braced list of them
// (`{service="api", env!="dev"}`) with Alertmanager's parser. An empty
// input is an error: a runbook entry that matches everything is written
// as a fallback runbook instead.
func ParseMatchers(input string) (labels.Matchers, error) {
	if strings.TrimSpace(input) == "" || strings.TrimSpace(input) == "{}" {
		return nil, errors.New("empty matcher")
	}
	ms, err := parseMatchers(input, "runbook")
	if err != nil {
		return nil, fmt.Errorf("invalid matcher %q: %w", input, err)
	}
	if len(ms) == 0 {
		return nil, errors.New("empty matcher")
	}
	return ms, nil
}
