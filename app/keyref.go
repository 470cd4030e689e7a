package app

import (
	"errors"
	"fmt"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/strictyaml"
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

// CheckWebhooks refuses runbooks whose webhook steps post to a URL the
// configuration does not allow (actions.webhook.allow; a templated URL is
// checked as far as it is written out, and again when it is rendered) or
// name a header secret it does not hold, each at its file:line.
func CheckWebhooks(set *runbooks.Set, cfg config.Config) error {
	w, err := actions.NewWebhooks(cfg.Actions.Webhook, nil)
	if err != nil {
		return err
	}
	known := cfg.Actions.WebhookSecretsKnown()
	return set.CheckSteps(func(b actions.Bound) []*strictyaml.Error { return actions.CheckWebhookConfig(b, w, known) })
}

// CheckConfigRefs runs every check of the runbooks against the
// configuration: routing key references and webhook steps.
func CheckConfigRefs(set *runbooks.Set, cfg config.Config) error {
	return errors.Join(CheckKeyRefs(set, cfg), CheckWebhooks(set, cfg))
}

// Webhooks is the webhook action's client when actions.webhook.allow is
// set; nil (webhook steps are dry runs) otherwise.
func Webhooks(cfg config.Config) (*actions.WebhookClient, error) {
	if len(cfg.Actions.Webhook.Allow) == 0 {
		return nil, nil
	}
	w, err := actions.NewWebhooks(cfg.Actions.Webhook, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook action: %w", err)
	}
	return w, nil
}
