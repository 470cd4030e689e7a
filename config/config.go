// Package config is incidentbot's configuration: one YAML file (--config),
// with every scalar setting also settable from an environment variable
// INCIDENTBOT_<KEY> (the YAML path in upper case joined by "_", e.g.
// INCIDENTBOT_SLACK_API_URL for slack.api_url), and every secret also
// readable from a file (<key>_file). Decoding is strict: unknown keys are
// errors with their line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

// Config is the whole configuration.
type Config struct {
	// Listen is the HTTP address for webhooks, /metrics and health.
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout bounds draining in-flight work on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	Bus          bus.Config         `yaml:"bus"`
	Engine       engine.Config      `yaml:"engine"`
	Runbooks     RunbooksConfig     `yaml:"runbooks"`
	Alertmanager AlertmanagerConfig `yaml:"alertmanager"`
	Slack        SlackConfig        `yaml:"slack"`
	PagerDuty    PagerDutyConfig    `yaml:"pagerduty"`
	Solana       solana.Config      `yaml:"solana"`
}

// RunbooksConfig says where runbooks come from.
type RunbooksConfig struct {
	// Dir overrides and extends the shipped runbooks; empty uses only
	// the shipped ones.
	Dir string `yaml:"dir"`
	// DefaultChannel is used when a runbook routes a severity nowhere.
	DefaultChannel string `yaml:"default_channel"`
}

// AlertmanagerConfig configures the webhook receiver.
type AlertmanagerConfig struct {
	BearerToken     secret.Secret `yaml:"bearer_token"`
	BearerTokenFile string        `yaml:"bearer_token_file"`
	Username        string        `yaml:"username"`
	Password        secret.Secret `yaml:"password"`
	PasswordFile    string        `yaml:"password_file"`
	MaxBodyBytes    int64         `yaml:"max_body_bytes"`
	// AllowUnauthenticated accepts webhooks without credentials. Only
	// honoured when Listen is a loopback address.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
}

// SlackConfig configures the Slack sink; without a token the console
// stands in.
type SlackConfig struct {
	Token     secret.Secret `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
	// APIURL is the Web API base, for proxies (default https://slack.com/api/).
	APIURL string `yaml:"api_url"`
}

// PagerDutyConfig configures the PagerDuty sink; without a routing key
// the console stands in.
type PagerDutyConfig struct {
	RoutingKey     secret.Secret `yaml:"routing_key"`
	RoutingKeyFile string        `yaml:"routing_key_file"`
	// EventsURL is the Events API v2 base: https://events.pagerduty.com,
	// or https://events.eu.pagerduty.com for the EU region.
	EventsURL string `yaml:"events_url"`
}

// Default is the embedded default: local-only HTTP, embedded NATS under
// ./data, shipped runbooks, console sinks.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 20 * time.Second,
		Bus:             bus.DefaultConfig(),
		Engine:          engine.DefaultConfig(),
		Runbooks:        RunbooksConfig{DefaultChannel: "#incidents"},
		Alertmanager:    AlertmanagerConfig{MaxBodyBytes: 1 << 20},
		Slack:           SlackConfig{APIURL: "https://slack.com/api/"},
		PagerDuty:       PagerDutyConfig{EventsURL: "https://events.pagerduty.com"},
		Solana:          solana.DefaultConfig(),
	}
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
var typeErr = regexp.MustCompile(`cannot unmarshal (\S+) ` + "`" + `([^` + "`" + `]*)` + "`" + ` into \S+`)

// Parse decodes YAML over the defaults. name is used in error messages.
func Parse(name string, data []byte) (Config, error) {
	c := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
		msg = strings.TrimPrefix(msg, "yaml: ")
		msg = unknownField.ReplaceAllString(msg, `unknown key "$1"`)
		msg = typeErr.ReplaceAllString(msg, `cannot use $1 "$2" here`)
		var lines []string
		for _, l := range strings.Split(msg, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, name+": "+l)
			}
		}
		return c, errors.New(strings.Join(lines, "\n"))
	}
	return c, nil
}

// Load reads path (empty: defaults only), applies environment overrides,
// then overrides (command-line flags, which win over the environment), then
// secret files, and validates the result.
func Load(path string, environ []string, overrides ...func(*Config)) (Config, error) {
	var c Config
	if path == "" {
		c = Default()
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if c, err = Parse(path, data); err != nil {
			return c, err
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	for _, o := range overrides {
		o(&c)
	}
	if err := c.readSecretFiles(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func (c *Config) readSecretFiles() error {
	var errs []error
	read := func(dst *secret.Secret, file, key string) {
		if file == "" {
			return
		}
		s, err := secret.FromFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			return
		}
		*dst = s
	}
	read(&c.Alertmanager.BearerToken, c.Alertmanager.BearerTokenFile, "alertmanager.bearer_token_file")
	read(&c.Alertmanager.Password, c.Alertmanager.PasswordFile, "alertmanager.password_file")
	read(&c.Slack.Token, c.Slack.TokenFile, "slack.token_file")
	read(&c.PagerDuty.RoutingKey, c.PagerDuty.RoutingKeyFile, "pagerduty.routing_key_file")
	return errors.Join(errs...)
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if c.Alertmanager.AllowUnauthenticated && !c.ListenIsLoopback() {
		errs = append(errs, fmt.Errorf("alertmanager.allow_unauthenticated is only allowed when listen (%s) is a loopback address", c.Listen))
	}
	if c.Alertmanager.Password.IsSet() && c.Alertmanager.Username == "" {
		errs = append(errs, errors.New("alertmanager.password is set without alertmanager.username"))
	}
	for key, raw := range map[string]string{"slack.api_url": c.Slack.APIURL, "pagerduty.events_url": c.PagerDuty.EventsURL} {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http(s) URL", key, raw))
		}
	}
	if c.Bus.URL != "" && c.Bus.Listen != "" {
		errs = append(errs, errors.New("bus.listen applies to the embedded server only; unset it or bus.url"))
	}
	if c.Solana.Enabled() {
		if err := c.Solana.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("solana: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ListenIsLoopback reports whether Listen only accepts local connections.
func (c Config) ListenIsLoopback() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
