package app

import (
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/runbooks"
)

// CheckKeyRefs refuses runbooks whose pagerduty_key_ref names a routing
// key the configuration does not hold, each at its file:line. It checks
// nothing when the configuration's keys are not all known here (its
// routing_keys_dir was not read).
func CheckKeyRefs(set *runbooks.Set, cfg config.Config) error {
	names, complete := cfg.PagerDuty.RoutingKeyRefs()
	if !complete {
		return nil
	}
	return set.CheckKeyRefs(names)
}
