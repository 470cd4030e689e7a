// Package config is incidentbot's configuration: one YAML file (--config),
// with every scalar setting also settable from an environment variable
// INCIDENTBOT_<KEY> (the YAML path in upper case joined by "_", e.g.
// INCIDENTBOT_SLACK_API_URL for slack.api_url), and every secret also
// readable from a file (<key>_file). Decoding is strict: unknown keys are
// errors with their line. serve, watch and check share one validation;
// problems read like runbook problems: "file:line: yaml.path: message".
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/actions/kube"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/strictyaml"
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
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (debug.SetMemoryLimit), which makes the collector return pooled
	// buffers (the store's block caches) to the OS as the process nears
	// it. 0 (default): GOMEMLIMIT when set, else 90% of the container's
	// (cgroup's) memory limit when there is one, else none. -1: none.
	MemoryLimit int64 `yaml:"memory_limit"`
	// HTTP bounds what clients can hold of the HTTP server.
	HTTP HTTPConfig `yaml:"http"`

	Bus          bus.Config          `yaml:"bus"`
	Engine       engine.Config       `yaml:"engine"`
	Runbooks     RunbooksConfig      `yaml:"runbooks"`
	Alertmanager alertmanager.Config `yaml:"alertmanager"`
	Slack        SlackConfig         `yaml:"slack"`
	PagerDuty    PagerDutyConfig     `yaml:"pagerduty"`
	Solana       solana.Config       `yaml:"solana"`
	Redis        RedisConfig         `yaml:"redis"`
	// Kubernetes is where the Kubernetes actions run: a kubeconfig, the
	// in-cluster configuration in a pod, or none (dry runs).
	Kubernetes kube.Config `yaml:"kubernetes"`
	// Actions configures the actions that need more than a client.
	Actions ActionsConfig `yaml:"actions"`
}

// ActionsConfig configures remediation actions.
type ActionsConfig struct {
	// Webhook is the webhook action's allowlist and header secrets.
	Webhook actions.WebhookConfig `yaml:"webhook"`
	// webhookSecretsRead is set once Webhook.SecretsDir was read.
	webhookSecretsRead bool
}

// WebhookSecretsKnown reports whether every webhook header secret is known
// here: not when secrets_dir is configured but was not read (check
// --skip-secrets, or a directory missing here).
func (c ActionsConfig) WebhookSecretsKnown() bool {
	return c.Webhook.SecretsDir == "" || c.webhookSecretsRead
}

// RedisConfig is the app's feature-flag store, which the featureflag.*
// actions change. Without a URL those actions run as dry runs only.
type RedisConfig struct {
	// URL is redis://[:password@]host:port/db (or rediss:// for TLS). It
	// may carry a password, so it is a secret: it never prints.
	URL     secret.Secret `yaml:"url"`
	URLFile string        `yaml:"url_file"`
}

// HTTPConfig bounds what clients can hold of the HTTP server (webhooks,
// /metrics, health), so that slow or idle clients cannot starve
// Alertmanager's webhooks.
type HTTPConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included: a body
	// that trickles in is cut off (408) at this deadline.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections bounds the connections open at once. When they are
	// all taken, a new one closes the connection idle longest (a
	// keep-alive between requests, or one that has sent nothing yet); it
	// waits only when every connection is in the middle of a request.
	// Keep it well below the process's open-file limit.
	MaxConnections int `yaml:"max_connections"`
}

// DefaultHTTPConfig returns the HTTP server's defaults.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConnections:    512,
	}
}

// RunbooksConfig says where runbooks come from.
type RunbooksConfig struct {
	// Dir overrides and extends the shipped runbooks; empty uses only
	// the shipped ones.
	Dir string `yaml:"dir"`
	// DefaultChannel is used when a runbook routes a severity nowhere.
	DefaultChannel string `yaml:"default_channel"`
}

// SlackConfig configures the Slack sink (without a token the console
// stands in) and Slack inbound: /incident commands and card buttons over
// HTTP (with a signing secret) or Socket Mode (with an app token).
type SlackConfig struct {
	Token     secret.Secret `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
	// APIURL is the Web API base, for proxies (default https://slack.com/api/).
	APIURL string `yaml:"api_url"`
	// ChannelRate paces the calls that post into one channel (cards,
	// thread replies, edits) to this many a second, Slack's limit being
	// about one; 0 turns pacing off. The pace is per replica. Either way,
	// Slack's Retry-After for a channel holds every call into it, on every
	// replica, until it ends, and calls waiting for a channel go critical
	// first.
	ChannelRate float64 `yaml:"channel_rate"`
	// ChannelBurst is how many calls may go into a channel at once before
	// the pace applies.
	ChannelBurst int `yaml:"channel_burst"`
	// StormThreshold is how many new incidents one channel may get within
	// StormWindow, each with its own card, before the next ones are listed
	// on one living storm card instead (shared by every replica; critical
	// incidents have a budget of their own of the same size). The storm
	// ends once a whole window passes with fewer. 0 turns storm mode off.
	StormThreshold int           `yaml:"storm_threshold"`
	StormWindow    time.Duration `yaml:"storm_window"`
	// SigningSecret verifies requests to POST /slack/commands and
	// /slack/interactions; without it those routes are not served.
	SigningSecret     secret.Secret `yaml:"signing_secret"`
	SigningSecretFile string        `yaml:"signing_secret_file"`
	// AppToken (xapp-…, scope connections:write) turns on Socket Mode, for
	// teams with no public ingress.
	AppToken     secret.Secret `yaml:"app_token"`
	AppTokenFile string        `yaml:"app_token_file"`
	// AllowedUsers (Slack user ids, U…) and AllowedGroups (user group ids,
	// S…) may use /incident and the card buttons; when both are empty,
	// everyone in the workspace may. Groups are resolved with
	// usergroups.users.list, which needs the bot token's usergroups:read.
	AllowedUsers  []string `yaml:"allowed_users"`
	AllowedGroups []string `yaml:"allowed_groups"`
}

// PagerDutyConfig configures the PagerDuty sink; without a routing key
// the console stands in.
type PagerDutyConfig struct {
	RoutingKey     secret.Secret `yaml:"routing_key"`
	RoutingKeyFile string        `yaml:"routing_key_file"`
	// RoutingKeys are the routing keys a runbook names with
	// routing.<severity>.pagerduty_key_ref: name → integration key.
	RoutingKeys map[string]secret.Secret `yaml:"routing_keys"`
	// RoutingKeysDir holds one file per routing key, named by its
	// reference and holding the key: a Kubernetes Secret mounted as a
	// volume. Hidden entries (the volume's ..data) are skipped. Its keys
	// join RoutingKeys when the configuration is loaded.
	RoutingKeysDir string `yaml:"routing_keys_dir"`
	// keysDirRead is set once RoutingKeysDir was read into RoutingKeys.
	keysDirRead bool
	// EventsURL is the Events API v2 base: https://events.pagerduty.com,
	// or https://events.eu.pagerduty.com for the EU region.
	EventsURL string `yaml:"events_url"`
	// WebhookSecret is the signing secret of the webhook v3 subscription
	// that sends acknowledgements and resolutions back (POST
	// /webhook/pagerduty); without it the endpoint is not served.
	// WebhookSecretPrevious is accepted too, while a rotation is under way.
	WebhookSecret             secret.Secret `yaml:"webhook_secret"`
	WebhookSecretFile         string        `yaml:"webhook_secret_file"`
	WebhookSecretPrevious     secret.Secret `yaml:"webhook_secret_previous"`
	WebhookSecretPreviousFile string        `yaml:"webhook_secret_previous_file"`
}

// Default is the embedded default: local-only HTTP, embedded NATS under
// ./data, shipped runbooks, console sinks.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 20 * time.Second,
		HTTP:            DefaultHTTPConfig(),
		Bus:             bus.DefaultConfig(),
		Engine:          engine.DefaultConfig(),
		Runbooks:        RunbooksConfig{DefaultChannel: "#incidents"},
		Alertmanager:    alertmanager.DefaultConfig(),
		Slack: SlackConfig{APIURL: "https://slack.com/api/", ChannelRate: nslack.DefaultChannelRate,
			ChannelBurst: nslack.DefaultChannelBurst, StormThreshold: engine.DefaultStormThreshold, StormWindow: engine.DefaultStormWindow},
		PagerDuty: PagerDutyConfig{EventsURL: "https://events.pagerduty.com"},
		Solana:    solana.DefaultConfig(),
	}
}

// Parse decodes YAML over the defaults, strictly: an unknown key (with a
// did-you-mean), a value of the wrong type or a duplicate key is a problem
// with its line. name is the file name used in problems.
func Parse(name string, data []byte) (Config, error) {
	c, _, ps := parse(name, data)
	return c, join(ps)
}

func parse(name string, data []byte) (Config, *yaml.Node, []*Problem) {
	c := Default()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); errors.Is(err, io.EOF) {
		return c, nil, nil
	} else if err != nil {
		return c, nil, []*Problem{syntaxProblem(name, err)}
	}
	var ps []*Problem
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		ps = append(ps, &Problem{File: name, Line: next.Line, Msg: "a second YAML document: the configuration is one document"})
	}
	if len(root.Content) == 0 || (root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null") {
		return c, &root, ps
	}
	for _, e := range strictyaml.Flatten(strictyaml.Decode(&root, "", &c)) {
		ps = append(ps, &Problem{File: name, Line: e.Line, Path: e.Path, Msg: e.Msg})
	}
	return c, &root, ps
}

// Options say how to load a configuration.
type Options struct {
	// Use is what the configuration is for (Serve by default).
	Use Use
	// SkipSecrets checks the configuration's shape only: files it names
	// (*_file secrets, bus.creds_file, runbooks.dir) are neither read nor
	// required, so a configuration written for another host can be
	// checked here.
	SkipSecrets bool
	// Overrides are command-line flags, applied after the environment and
	// before validation.
	Overrides []func(*Config)
}

// Load reads path (empty: defaults only), applies environment overrides,
// then overrides (command-line flags, which win over the environment), then
// secret files, and validates the result for serve.
func Load(path string, environ []string, overrides ...func(*Config)) (Config, error) {
	return Options{Overrides: overrides}.Load(path, environ)
}

// Load is Load with options. Every problem is reported at once, sorted by
// line, each where its value was set.
func (o Options) Load(path string, environ []string) (Config, error) {
	c := Default()
	var root *yaml.Node
	var ps []*Problem
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, join([]*Problem{{File: path, Msg: "read configuration: " + pathErrText(err)}})
		}
		c, root, ps = parse(path, data)
	}
	origins := map[string]string{}
	ps = append(ps, applyEnv(&c, environ, origins)...)
	if len(o.Overrides) > 0 {
		before := scalars(c)
		for _, f := range o.Overrides {
			f(&c)
		}
		for p, v := range scalars(c) {
			if v != before[p] {
				origins[p] = "command line"
			}
		}
	}
	// A key that failed to decode keeps its default: do not also
	// complain about the default.
	failed := map[string]bool{}
	for _, p := range ps {
		failed[p.Path] = true
	}
	for _, p := range c.problems(o.Use) {
		if !failed[p.Path] {
			ps = append(ps, p)
		}
	}
	if !o.SkipSecrets {
		ps = append(ps, c.readFiles(o.Use)...)
	}
	place(ps, path, root, origins)
	return c, join(ps)
}

// scalars snapshots every scalar setting by YAML path.
func scalars(c Config) map[string]any {
	out := map[string]any{}
	walk(reflect.ValueOf(&c).Elem(), "", func(path string, v reflect.Value) { out[path] = v.Interface() })
	return out
}

// readFiles reads the secret files use needs and checks that the other
// files and directories named exist. A missing file is a Problem marked Missing; an empty
// secret file is an error, never "no secret".
func (c *Config) readFiles(use Use) []*Problem {
	var ps []*Problem
	missing := func(path, file string, err error) bool {
		if errors.Is(err, fs.ErrNotExist) {
			ps = append(ps, &Problem{Path: path, Msg: fmt.Sprintf("%s not found on this host", file), Missing: true})
			return true
		}
		return false
	}
	read := func(dst *secret.Secret, file, path string) {
		if file == "" {
			return
		}
		s, err := secret.FromFile(file)
		switch {
		case err == nil:
			*dst = s
		case missing(path, file, err):
		case errors.Is(err, secret.ErrEmpty):
			ps = append(ps, problemf(path, "%s is empty: an empty secret file is an error, never \"no secret\"", file))
		default:
			ps = append(ps, problemf(path, "%s", pathErrText(err)))
		}
	}
	if use == Serve {
		read(&c.Alertmanager.BearerToken, c.Alertmanager.BearerTokenFile, "alertmanager.bearer_token_file")
		read(&c.Alertmanager.Password, c.Alertmanager.PasswordFile, "alertmanager.password_file")
		read(&c.Alertmanager.APIBearerToken, c.Alertmanager.APIBearerTokenFile, "alertmanager.api_bearer_token_file")
		read(&c.Alertmanager.APIPassword, c.Alertmanager.APIPasswordFile, "alertmanager.api_password_file")
		read(&c.Slack.Token, c.Slack.TokenFile, "slack.token_file")
		read(&c.Redis.URL, c.Redis.URLFile, "redis.url_file")
		read(&c.Slack.SigningSecret, c.Slack.SigningSecretFile, "slack.signing_secret_file")
		read(&c.Slack.AppToken, c.Slack.AppTokenFile, "slack.app_token_file")
		read(&c.PagerDuty.RoutingKey, c.PagerDuty.RoutingKeyFile, "pagerduty.routing_key_file")
		read(&c.PagerDuty.WebhookSecret, c.PagerDuty.WebhookSecretFile, "pagerduty.webhook_secret_file")
		read(&c.PagerDuty.WebhookSecretPrevious, c.PagerDuty.WebhookSecretPreviousFile, "pagerduty.webhook_secret_previous_file")
		if f := c.Solana.UpgradeSignerKeypairFile; f != "" {
			// Checked (owner-only, a keypair) and dropped: serve loads it
			// again into the actions' Env, never into the configuration.
			if _, err := actions.LoadKeypairFile(f); err != nil && !missing("solana.upgrade_signer_keypair_file", f, err) {
				ps = append(ps, problemf("solana.upgrade_signer_keypair_file", "%s", pathErrText(err)))
			}
		}
		if d := c.PagerDuty.RoutingKeysDir; d != "" {
			if _, err := os.Stat(d); !missing("pagerduty.routing_keys_dir", d, err) {
				ps = append(ps, c.PagerDuty.readKeysDir()...)
			}
		}
		if d := c.Actions.Webhook.SecretsDir; d != "" {
			if _, err := os.Stat(d); !missing("actions.webhook.secrets_dir", d, err) {
				var more []*Problem
				c.Actions.Webhook.Secrets, more = readSecretsDir("actions.webhook.secrets_dir", d, c.Actions.Webhook.Secrets, "secret", "actions.webhook.secrets")
				ps = append(ps, more...)
				c.Actions.webhookSecretsRead = true
			}
		}
	}
	if d := c.Runbooks.Dir; d != "" && use == Serve {
		if st, err := os.Stat(d); err != nil {
			if !missing("runbooks.dir", d, err) {
				ps = append(ps, problemf("runbooks.dir", "%s", pathErrText(err)))
			}
		} else if !st.IsDir() {
			ps = append(ps, problemf("runbooks.dir", "%s is not a directory", d))
		}
	}
	if f := c.Bus.CredsFile; f != "" && c.Bus.URL != "" {
		if st, err := os.Stat(f); err != nil {
			if !missing("bus.creds_file", f, err) {
				ps = append(ps, problemf("bus.creds_file", "%s", pathErrText(err)))
			}
		} else if st.Size() == 0 {
			ps = append(ps, problemf("bus.creds_file", "%s is empty", f))
		}
	}
	return ps
}

// RoutingKeyRefs lists the names runbooks may give pagerduty_key_ref, and
// whether the list is complete: not when routing_keys_dir is configured
// but was not read (check --skip-secrets, or a directory missing here).
func (c PagerDutyConfig) RoutingKeyRefs() (names []string, complete bool) {
	for k := range c.RoutingKeys {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, c.RoutingKeysDir == "" || c.keysDirRead
}

// readKeysDir adds each file of RoutingKeysDir to RoutingKeys under its
// name.
func (c *PagerDutyConfig) readKeysDir() []*Problem {
	keys, ps := readSecretsDir("pagerduty.routing_keys_dir", c.RoutingKeysDir, c.RoutingKeys, "routing key", "pagerduty.routing_keys")
	c.RoutingKeys, c.keysDirRead = keys, true
	return ps
}

// readSecretsDir returns inline with each file of dir added under its
// name (the setting key), refusing a name also in inline (the setting
// also; what names one entry). Entries starting with "." are skipped: a Secret volume keeps its
// files in ..data and links each key's name to them.
func readSecretsDir(key, dir string, inline map[string]secret.Secret, what, also string) (map[string]secret.Secret, []*Problem) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return inline, []*Problem{problemf(key, "%s", pathErrText(err))}
	}
	var ps []*Problem
	keys := maps.Clone(inline)
	if keys == nil {
		keys = map[string]secret.Secret{}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue // a dangling link or a directory: not a key
		}
		if !runbooks.KeyRefRE.MatchString(name) {
			ps = append(ps, problemf(key, "%s: not a key name (letters, digits, '.', '_', '-'; at most 63)", p))
			continue
		}
		if _, dup := keys[name]; dup {
			ps = append(ps, problemf(key, "%s: %s %q is also in %s: keep one", p, what, name, also))
			continue
		}
		s, err := secret.FromFile(p)
		switch {
		case errors.Is(err, secret.ErrEmpty):
			ps = append(ps, problemf(key, "%s is empty: an empty secret file is an error, never \"no secret\"", p))
		case err != nil:
			ps = append(ps, problemf(key, "%s", pathErrText(err)))
		default:
			keys[name] = s
		}
	}
	return keys, ps
}

// pathErrText is an os error without Go's "open " prefix noise.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}
