package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
)

func TestUnknownKeysAndBadTypesCarryLines(t *testing.T) {
	_, err := config.Parse("bot.yaml", []byte("listen: 127.0.0.1:9\nslak:\n  token: x\nbus:\n  duplicate_window: soon\n"))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{`bot.yaml: line 2: unknown key "slak"`, `bot.yaml: line 5: cannot use !!str "soon" here`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "config.Config") {
		t.Errorf("error names a Go type: %v", err)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bot.yaml")
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("xoxb-from-file\n"), 0o600)
	os.WriteFile(path, []byte("slack:\n  api_url: https://proxy.example/api/\n  token_file: "+tokenFile+"\n"), 0o600)
	c, err := config.Load(path, []string{
		"INCIDENTBOT_SLACK_API_URL=https://other.example/api/",
		"INCIDENTBOT_ENGINE_REOPEN_WINDOW=30m",
		"INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN=tok",
		"INCIDENTBOT_BUS_REPLICAS=3",
		"HOME=/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Slack.APIURL != "https://other.example/api/" || c.Engine.ReopenWindow != 30*time.Minute ||
		c.Alertmanager.BearerToken.Reveal() != "tok" || c.Bus.Replicas != 3 || c.Slack.Token.Reveal() != "xoxb-from-file" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "xoxb-from-file") || strings.Contains(s, "tok}") {
		t.Fatalf("secret printed: %s", s)
	}
}

// TestOverridesWinAndAreValidated: flags (overrides) beat the environment
// and are validated like everything else.
func TestOverridesWinAndAreValidated(t *testing.T) {
	env := []string{"INCIDENTBOT_LISTEN=127.0.0.1:9000", "INCIDENTBOT_ALERTMANAGER_ALLOW_UNAUTHENTICATED=true"}
	c, err := config.Load("", env, func(c *config.Config) { c.Listen = "127.0.0.1:9100" })
	if err != nil || c.Listen != "127.0.0.1:9100" {
		t.Fatalf("listen %q, err %v; want the override 127.0.0.1:9100", c.Listen, err)
	}
	_, err = config.Load("", env, func(c *config.Config) { c.Listen = "0.0.0.0:9100" })
	if err == nil || !strings.Contains(err.Error(), "allow_unauthenticated is only allowed") {
		t.Fatalf("err = %v, want the loopback rule to see the override", err)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	_, err := config.Load("", []string{"INCIDENTBOT_ENGINE_REOPEN_WINDOW=soon", "INCIDENTBOT_NOPE=1"})
	if err == nil || !strings.Contains(err.Error(), "INCIDENTBOT_ENGINE_REOPEN_WINDOW") || !strings.Contains(err.Error(), "INCIDENTBOT_NOPE: unknown setting") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := config.EnvKeys()["INCIDENTBOT_SLACK_API_URL"]; !ok {
		t.Fatal("INCIDENTBOT_SLACK_API_URL not a known key")
	}
}

func TestValidate(t *testing.T) {
	c := config.Default()
	c.Listen = "0.0.0.0:8080"
	c.Alertmanager.AllowUnauthenticated = true
	c.LogLevel = "loud"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "allow_unauthenticated") || !strings.Contains(err.Error(), "log_level") {
		t.Fatalf("err = %v", err)
	}
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("default invalid: %v", err)
	}
}
