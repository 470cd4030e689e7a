package config_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
)

// TestProblemsReadLikeRunbookProblems: every problem at once, sorted by
// line, as file:line: yaml.path: message with the expected type and a
// did-you-mean, never a Go type name.
func TestProblemsReadLikeRunbookProblems(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown keys and bad types", "listen: 127.0.0.1:9\nslak:\n  token: x\nbus:\n  duplicate_window: soon\n  replicas: three\n", []string{
			`bot.yaml:2: slak: unknown key "slak" (did you mean "slack"?)`,
			`bot.yaml:5: bus.duplicate_window: invalid duration "soon": want a duration like 30s, 15m, 1h30m or 2d`,
			`bot.yaml:6: bus.replicas: expected an integer, got a string`,
		}},
		{"nested did-you-mean", "engine:\n  reopen_windw: 5m\n", []string{
			`bot.yaml:2: engine.reopen_windw: unknown key "reopen_windw" (did you mean "reopen_window"?)`,
		}},
		{"durations and ports that make no sense", "shutdown_timeout: 0s\nlisten: 127.0.0.1:99999\nengine:\n  reopen_window: -5m\n  effect_timeout: 0s\nbus:\n  publish_timeout: 0s\n", []string{
			`bot.yaml:1: shutdown_timeout: must be a positive duration like 30s, got 0s`,
			`bot.yaml:2: listen: "127.0.0.1:99999": port "99999" is not a port number (0 to 65535)`,
			`bot.yaml:4: engine.reopen_window: invalid duration "-5m": negative; want a duration like 30s`,
			`bot.yaml:5: engine.effect_timeout: must be a positive duration like 30s, got 0s`,
			`bot.yaml:7: bus.publish_timeout: must be a positive duration like 30s, got 0s`,
		}},
		{"public listen without credentials", "listen: 0.0.0.0:8099\n", []string{
			`bot.yaml:1: listen: 0.0.0.0:8099 is not a loopback address, so webhooks must authenticate: set alertmanager.bearer_token_file (or alertmanager.username and password_file)`,
		}},
		{"bearer and basic both", "alertmanager:\n  bearer_token: t\n  username: am\n  password: p\n", []string{
			`bot.yaml:2: alertmanager.bearer_token: both a bearer token and basic auth are configured: Alertmanager sends one, configure one`,
		}},
		{"alertmanager api for silences", "alertmanager:\n  url: alertmanager:9093\n  api_bearer_token: t\n  api_username: bot\n  api_password: p\n  silence_max: 0s\n", []string{
			`bot.yaml:2: alertmanager.url: "alertmanager:9093": want Alertmanager's http(s) URL, like http://alertmanager:9093`,
			`bot.yaml:3: alertmanager.api_bearer_token: both a bearer token and basic auth are configured for Alertmanager's API: configure one`,
			`bot.yaml:6: alertmanager.silence_max: must be a positive duration like 30s, got 0s`,
		}},
		{"api credentials without the api", "alertmanager:\n  api_password_file: /x\n", []string{
			`bot.yaml:1: alertmanager.url: empty, but API credentials are set: set the URL of Alertmanager's API, or drop them`,
			`bot.yaml:2: alertmanager.api_password_file: /x not found on this host`,
		}},
		{"wrong kinds", "log_level: [info]\nsolana:\n  wallets:\n    - {name: w, address: x, min_lamports: -1}\n", []string{
			`bot.yaml:1: log_level: expected a string, got a list`,
			`bot.yaml:4: solana.wallets[0].min_lamports: expected a non-negative integer, got -1`,
		}},
		{"syntax", "listen: [\n", []string{`bot.yaml:1: invalid YAML: did not find expected node content`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bot.yaml")
			os.WriteFile(path, []byte(tt.yaml), 0o600)
			_, err := config.Load(path, nil)
			var got []string
			for _, p := range config.Problems(err) {
				got = append(got, strings.Replace(p.Error(), path, "bot.yaml", 1))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestProblemsNameTheirOrigin: a value from the environment or a flag is
// reported there, not at a line of the file.
func TestProblemsNameTheirOrigin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte("engine:\n  retry_max: 1m\n"), 0o600)
	_, err := config.Load(path, []string{"INCIDENTBOT_ENGINE_RETRY_MAX=-1m", "INCIDENTBOT_ENGINE_REOPEN_WINDOW=soon", "INCIDENTBOT_SLAK_TOKEN=x"},
		func(c *config.Config) { c.Listen = "127.0.0.1:http" })
	want := []string{
		`INCIDENTBOT_ENGINE_REOPEN_WINDOW: engine.reopen_window: "soon": want a duration like 30s, 15m or 1h`,
		`INCIDENTBOT_ENGINE_RETRY_MAX: engine.retry_max: must be a positive duration like 30s, got -1m0s`,
		`INCIDENTBOT_SLAK_TOKEN: unknown setting (did you mean INCIDENTBOT_SLACK_TOKEN?)`,
		`command line: listen: "127.0.0.1:http": port "http" is not a port number (0 to 65535)`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// TestEmptySecretFileIsAnError: an empty or whitespace-only secret file
// never means "no secret" (it used to turn authentication off on loopback).
func TestEmptySecretFileIsAnError(t *testing.T) {
	for _, content := range []string{"", " \n\t\n"} {
		dir := t.TempDir()
		tok := filepath.Join(dir, "bearer-token")
		os.WriteFile(tok, []byte(content), 0o600)
		path := filepath.Join(dir, "bot.yaml")
		os.WriteFile(path, []byte("alertmanager:\n  bearer_token_file: "+tok+"\n"), 0o600)
		_, err := config.Load(path, nil)
		want := path + ":2: alertmanager.bearer_token_file: " + tok + " is empty"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("content %q: err = %v, want %q", content, err, want)
		}
	}
}

// TestMissingSecretFiles are their own class, and SkipSecrets checks the
// shape alone.
func TestMissingSecretFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte("listen: 0.0.0.0:8080\nslack:\n  token_file: /nonexistent/slack-token\nalertmanager:\n  bearer_token_file: /nonexistent/am-token\n"), 0o600)
	_, err := config.Load(path, nil)
	ps := config.Problems(err)
	if len(ps) != 2 {
		t.Fatalf("problems %v, want the two missing files", err)
	}
	for _, p := range ps {
		if !p.Missing || !strings.Contains(p.Msg, "not found on this host") {
			t.Errorf("%v: want a missing-file problem", p)
		}
	}
	if _, err := (config.Options{SkipSecrets: true}).Load(path, nil); err != nil {
		t.Errorf("SkipSecrets: %v", err)
	}
}

// TestWatchNeedsOnlyWhatItUses: watch reads no Slack, PagerDuty or
// receiver secrets and needs no receiver credentials on a public address.
func TestWatchNeedsOnlyWhatItUses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte(`listen: 0.0.0.0:9100
bus: {url: "nats://nats:4222"}
slack: {token_file: /nonexistent/slack-token}
pagerduty: {routing_key_file: /nonexistent/pd-key}
alertmanager: {bearer_token_file: /nonexistent/am-token}
solana:
  endpoints: [{name: a, url: "https://rpc.example", role: primary}]
`), 0o600)
	if _, err := (config.Options{Use: config.Watch}).Load(path, nil); err != nil {
		t.Errorf("watch: %v", err)
	}
	if _, err := config.Load(path, nil); err == nil {
		t.Error("serve: missing secret files accepted")
	}
	_, err := (config.Options{Use: config.Watch}).Load("", nil)
	if err == nil || !strings.Contains(err.Error(), "bus.url") || !strings.Contains(err.Error(), "solana.endpoints") {
		t.Errorf("watch without bus.url and endpoints: %v", err)
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
	if err == nil || !strings.Contains(err.Error(), "command line: listen") && !strings.Contains(err.Error(), "allow_unauthenticated: only allowed when listen (0.0.0.0:9100)") {
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

// TestSlackInbound: the signing secret and app token come from files or
// the environment like every secret, never print, and the allow lists and
// app token are checked.
func TestSlackInbound(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "signing-secret")
	os.WriteFile(secretFile, []byte("8e4f2b1c9d7a6e5f4a3b2c1d0e9f8a7b\n"), 0o600)
	path := filepath.Join(dir, "bot.yaml")
	os.WriteFile(path, []byte("slack:\n  token: xoxb-1\n  signing_secret_file: "+secretFile+"\n  allowed_users: [U03L9P2V6XK]\n  allowed_groups: [S0ONCALL1]\n"), 0o600)
	c, err := config.Load(path, []string{"INCIDENTBOT_SLACK_APP_TOKEN=xapp-1-A0-1-abc"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Slack.SigningSecret.Reveal() != "8e4f2b1c9d7a6e5f4a3b2c1d0e9f8a7b" || c.Slack.AppToken.Reveal() != "xapp-1-A0-1-abc" ||
		len(c.Slack.AllowedUsers) != 1 || len(c.Slack.AllowedGroups) != 1 {
		t.Fatalf("slack inbound not loaded: %+v", c.Slack)
	}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "8e4f2b1c") || strings.Contains(s, "xapp-1") {
		t.Fatalf("secret printed: %s", s)
	}
	if _, ok := config.EnvKeys()["INCIDENTBOT_SLACK_SIGNING_SECRET"]; !ok {
		t.Error("INCIDENTBOT_SLACK_SIGNING_SECRET not a known key")
	}

	os.WriteFile(path, []byte("slack:\n  app_token: xoxb-wrong\n  allowed_users: [dana]\n  allowed_groups: [S0ONCALL1]\n"), 0o600)
	_, err = config.Load(path, nil)
	for _, want := range []string{"slack.app_token: not an app-level token", `slack.allowed_users[0]: "dana": want a Slack user id`,
		"slack.allowed_groups: needs slack.token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "xoxb-wrong") {
		t.Errorf("the token is printed: %v", err)
	}
}

// TestRedisURL: redis.url comes from the file, a url_file or the
// environment; it may hold a password, so it never prints, not even in a
// problem about it.
func TestRedisURL(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "redis-url")
	os.WriteFile(urlFile, []byte("redis://:hunter2pw@redis:6379/0\n"), 0o600)
	path := filepath.Join(dir, "bot.yaml")
	os.WriteFile(path, []byte("redis:\n  url_file: "+urlFile+"\n"), 0o600)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.URL.Reveal() != "redis://:hunter2pw@redis:6379/0" {
		t.Fatalf("url %q", c.Redis.URL.Reveal())
	}
	if s := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(s, "hunter2pw") {
		t.Fatalf("password printed: %s", s)
	}
	c, err = config.Load("", []string{"INCIDENTBOT_REDIS_URL=redis://:envpw@127.0.0.1:6379/1"})
	if err != nil || c.Redis.URL.Reveal() != "redis://:envpw@127.0.0.1:6379/1" {
		t.Fatalf("env: %v %q", err, c.Redis.URL.Reveal())
	}
	_, err = config.Load("", []string{"INCIDENTBOT_REDIS_URL=http://:secretpw@redis:6379"})
	if err == nil || !strings.Contains(err.Error(), "redis.url: not a Redis URL") || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("err = %v", err)
	}
}

// TestUpgradeSignerKeypairFile: the program-upgrade key is checked when
// the configuration loads: present, owner-only, a keypair; never shown.
func TestUpgradeSignerKeypairFile(t *testing.T) {
	dir := t.TempDir()
	// A solana-keygen file: seed 1..32, then its public key.
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	key := ed25519.NewKeyFromSeed(seed)
	nums := make([]string, len(key))
	for i, b := range key {
		nums[i] = fmt.Sprint(b)
	}
	content := "[" + strings.Join(nums, ",") + "]"
	keyFile := func(name string, mode os.FileMode, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), mode)
		os.Chmod(p, mode)
		return p
	}
	load := func(kp string, endpoints bool) error {
		yml := "solana:\n  upgrade_signer_keypair_file: " + kp + "\n"
		if endpoints {
			yml += "  endpoints: [{name: devnet, url: \"https://api.devnet.solana.com\", role: primary}]\n"
		}
		path := filepath.Join(dir, "bot.yaml")
		os.WriteFile(path, []byte(yml), 0o600)
		_, err := config.Load(path, nil)
		return err
	}
	if err := load(keyFile("ok.json", 0o600, content), true); err != nil {
		t.Fatalf("owner-only keypair: %v", err)
	}
	for name, tc := range map[string]struct {
		file      string
		endpoints bool
		want      string
	}{
		"group readable": {keyFile("g.json", 0o640, content), true, "readable by group or others (mode 0640): chmod 600"},
		"world readable": {keyFile("w.json", 0o604, content), true, "readable by group or others"},
		"missing":        {filepath.Join(dir, "nope.json"), true, "not found on this host"},
		"not a keypair":  {keyFile("bad.json", 0o600, `"`+content[1:20]+`"`), true, "not a JSON array of 64 bytes"},
		"no endpoints":   {keyFile("ok2.json", 0o600, content), false, "no solana.endpoints"},
	} {
		t.Run(name, func(t *testing.T) {
			err := load(tc.file, tc.endpoints)
			if err == nil || !strings.Contains(err.Error(), "solana.upgrade_signer_keypair_file: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), content[1:20]) {
				t.Fatalf("the key's bytes are in the problem: %v", err)
			}
		})
	}
}

// TestUpgradeNonceAccount: solana.upgrade_nonce_account is a public key,
// reported at its line, and needs an endpoint to read it through.
func TestUpgradeNonceAccount(t *testing.T) {
	dir := t.TempDir()
	const program = "AwRs5wYZ96zt2YjQb8oNhrfcmcyHWUNKc8hEtc3mz1hM"
	load := func(yml string) (config.Config, error) {
		path := filepath.Join(dir, "bot.yaml")
		os.WriteFile(path, []byte(yml), 0o600)
		return config.Load(path, nil)
	}
	const endpoints = "solana:\n  endpoints: [{name: main, url: \"https://rpc.example.com\", ws_url: \"wss://rpc.example.com\", role: primary}]\n"
	c, err := load(endpoints + "  upgrade_nonce_account: 86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T\n")
	if err != nil || c.Solana.UpgradeNonceAccount != "86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T" {
		t.Fatalf("Load = %q, %v", c.Solana.UpgradeNonceAccount, err)
	}
	for name, tc := range map[string]struct{ yml, want string }{
		"not a key": {endpoints + "  upgrade_nonce_account: not-a-key\n", "bot.yaml:3: solana.upgrade_nonce_account: \"not-a-key\" is not a base58 public key"},
		"the program": {endpoints + "  programs: [{name: p, id: " + program + ", expected_authority: immutable}]\n  upgrade_nonce_account: " + program + "\n",
			"bot.yaml:4: solana.upgrade_nonce_account: is solana.programs[0]'s program or buffer"},
		"no endpoints": {"solana:\n  upgrade_nonce_account: " + program + "\n", "bot.yaml:2: solana.upgrade_nonce_account: set, but no solana.endpoints"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(tc.yml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, ok := config.EnvKeys()["INCIDENTBOT_SOLANA_UPGRADE_NONCE_ACCOUNT"]; !ok {
		t.Error("no environment variable for solana.upgrade_nonce_account")
	}
}

// TestSlackChannelPace: slack.channel_rate and slack.channel_burst default
// to Slack's pace, come from the file or the environment, and are checked.
func TestSlackChannelPace(t *testing.T) {
	if d := config.Default().Slack; d.ChannelRate != 1 || d.ChannelBurst != 3 {
		t.Fatalf("defaults %v/%d, want 1/3", d.ChannelRate, d.ChannelBurst)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bot.yaml")
	os.WriteFile(path, []byte("slack:\n  channel_rate: 0.5\n  channel_burst: 5\n"), 0o600)
	c, err := config.Load(path, []string{"INCIDENTBOT_SLACK_CHANNEL_BURST=2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Slack.ChannelRate != 0.5 || c.Slack.ChannelBurst != 2 {
		t.Fatalf("got %v/%d, want 0.5 from the file and 2 from the environment", c.Slack.ChannelRate, c.Slack.ChannelBurst)
	}
	os.WriteFile(path, []byte("slack:\n  channel_rate: -1\n  channel_burst: 0\n"), 0o600)
	_, err = config.Load(path, nil)
	for _, want := range []string{"bot.yaml:2: slack.channel_rate: -1: want calls per second", "bot.yaml:3: slack.channel_burst: 0: want at least 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

// TestSlackStorm: slack.storm_threshold and slack.storm_window default to
// 20 in 1m, come from the file or the environment (0 turns storms off),
// and are checked.
func TestSlackStorm(t *testing.T) {
	if d := config.Default().Slack; d.StormThreshold != 20 || d.StormWindow != time.Minute {
		t.Fatalf("defaults %d/%v, want 20/1m", d.StormThreshold, d.StormWindow)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bot.yaml")
	os.WriteFile(path, []byte("slack:\n  storm_threshold: 50\n  storm_window: 2m\n"), 0o600)
	c, err := config.Load(path, []string{"INCIDENTBOT_SLACK_STORM_THRESHOLD=0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Slack.StormThreshold != 0 || c.Slack.StormWindow != 2*time.Minute {
		t.Fatalf("got %d/%v, want 0 from the environment and 2m from the file", c.Slack.StormThreshold, c.Slack.StormWindow)
	}
	os.WriteFile(path, []byte("slack:\n  storm_threshold: -1\n  storm_window: 10ms\n"), 0o600)
	_, err = config.Load(path, nil)
	for _, want := range []string{"bot.yaml:2: slack.storm_threshold: -1: want", "bot.yaml:3: slack.storm_window: 10ms: want at least 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}
