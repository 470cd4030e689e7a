package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/config"
)

// TestWebhookActionConfig: actions.webhook takes its allowlist and header
// secrets inline and from a Secret volume; bad prefixes and names are
// problems at their line, and no problem prints a secret.
func TestWebhookActionConfig(t *testing.T) {
	dir := secretVolume(t, map[string]string{"deploy-token": "Bearer s3cr3t-one\n"})
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte("actions:\n  webhook:\n    allow: ['https://hooks.example.com/deploy/']\n    secrets: {inline: s3cr3t-two}\n    secrets_dir: "+dir+"\n"), 0o600)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Actions.Webhook.Secrets["deploy-token"].Reveal(); got != "Bearer s3cr3t-one" || !c.Actions.WebhookSecretsKnown() ||
		c.Actions.Webhook.Secrets["inline"].Reveal() != "s3cr3t-two" {
		t.Errorf("secrets: deploy-token %q, known %v", got, c.Actions.WebhookSecretsKnown())
	}
	if c, err = (config.Options{SkipSecrets: true}).Load(path, nil); err != nil || c.Actions.WebhookSecretsKnown() {
		t.Errorf("SkipSecrets: %v, known %v; want not all known", err, c.Actions.WebhookSecretsKnown())
	}

	os.WriteFile(path, []byte("actions:\n  webhook:\n    allow:\n      - hooks.example.com\n      - 'https://u:s3cr3t-three@hooks.example.com/'\n    secrets: {'bad name': x, blank: ''}\n    secrets_dir: "+dir+"\n"), 0o600)
	_, err = config.Load(path, nil)
	for _, want := range []string{
		`bot.yaml:4: actions.webhook.allow[0]: "hooks.example.com": want an http(s) URL prefix`,
		`bot.yaml:5: actions.webhook.allow[1]: `,
		`actions.webhook.secrets.bad name: not a secret name`,
		`actions.webhook.secrets.blank: empty secret`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("problems:\n%v\nwant %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("a problem prints a secret: %v", err)
	}
}
