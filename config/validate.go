package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/redis/go-redis/v9"
)

// Use says what a configuration is loaded for: each command checks, and
// reads the secrets of, only the parts it uses.
type Use int

const (
	// Serve is the whole bot: receiver, engine, sinks and watchers.
	Serve Use = iota
	// Watch is `incidentbot watch`: the Solana watchers publishing to a
	// shared bus. It needs no Slack, PagerDuty or receiver secrets.
	Watch
)

// Validate reports every problem of a configuration meant for serve, at
// once, each naming its YAML key.
func (c Config) Validate() error { return join(c.problems(Serve)) }

// problems checks c for use; the problems are not yet placed.
func (c Config) problems(use Use) []*Problem {
	var ps []*Problem
	add := func(path, format string, args ...any) { ps = append(ps, problemf(path, format, args...)) }
	positive := func(path string, d time.Duration) {
		if d <= 0 {
			add(path, "must be a positive duration like 30s, got %s", d)
		}
	}

	if msg := checkAddr(c.Listen); msg != "" {
		add("listen", "%s", msg)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		add("log_format", "%q: want text or json", c.LogFormat)
	}
	positive("shutdown_timeout", c.ShutdownTimeout)
	if c.MemoryLimit < -1 || (c.MemoryLimit > 0 && c.MemoryLimit < 16<<20) {
		add("memory_limit", "%d: want -1 (none), 0 (GOMEMLIMIT or the container's limit) or at least 16777216 bytes", c.MemoryLimit)
	}
	positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positive("http.read_timeout", c.HTTP.ReadTimeout)
	positive("http.idle_timeout", c.HTTP.IdleTimeout)
	if c.HTTP.MaxHeaderBytes < 4<<10 {
		add("http.max_header_bytes", "%d: want at least 4096 bytes", c.HTTP.MaxHeaderBytes)
	}
	if c.HTTP.MaxConnections < 4 {
		add("http.max_connections", "%d: want at least 4 (Alertmanager, Prometheus and probes share them)", c.HTTP.MaxConnections)
	}
	ps = append(ps, c.busProblems(use)...)

	if use == Watch {
		if c.Bus.URL == "" {
			add("bus.url", "watch publishes to a shared NATS: set bus.url (serve runs the watchers itself)")
		}
		if !c.Solana.Enabled() {
			add("solana.endpoints", "watch needs at least one endpoint to watch")
		}
	}
	if use == Serve {
		positive("engine.reopen_window", c.Engine.ReopenWindow)
		positive("engine.effect_timeout", c.Engine.EffectTimeout)
		positive("engine.retry_max", c.Engine.RetryMax)
		positive("engine.sweep_interval", c.Engine.SweepInterval)
		positive("engine.verify_interval", c.Engine.VerifyInterval)
		positive("alertmanager.silence_max", c.Alertmanager.SilenceMax)
		if strings.TrimSpace(c.Runbooks.DefaultChannel) == "" {
			add("runbooks.default_channel", "empty: want a Slack channel like #incidents")
		}
		ps = append(ps, c.receiverProblems()...)
		ps = append(ps, c.slackInboundProblems()...)
		if r := c.Slack.ChannelRate; r < 0 || r != r || r > 1000 {
			add("slack.channel_rate", "%v: want calls per second into one channel, from 0 (no pacing) to 1000; Slack allows about 1", r)
		}
		if c.Slack.ChannelBurst < 1 {
			add("slack.channel_burst", "%d: want at least 1", c.Slack.ChannelBurst)
		}
		if c.Slack.StormThreshold < 0 {
			add("slack.storm_threshold", "%d: want new incidents per window before a channel's storm card, or 0 (storm mode off)", c.Slack.StormThreshold)
		}
		if w := c.Slack.StormWindow; w < time.Second {
			add("slack.storm_window", "%v: want at least 1s", w)
		}
		for _, name := range slices.Sorted(maps.Keys(c.PagerDuty.RoutingKeys)) {
			switch {
			case !runbooks.KeyRefRE.MatchString(name):
				add("pagerduty.routing_keys."+name, "not a key name: want letters, digits, '.', '_' or '-' (at most 63)")
			case !c.PagerDuty.RoutingKeys[name].IsSet():
				add("pagerduty.routing_keys."+name, "empty routing key")
			}
		}
		for i, a := range c.Actions.Webhook.Allow {
			if err := actions.CheckAllow(a); err != nil {
				add(fmt.Sprintf("actions.webhook.allow[%d]", i), "%s", err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(c.Actions.Webhook.Secrets)) {
			switch {
			case !runbooks.KeyRefRE.MatchString(name):
				add("actions.webhook.secrets."+name, "not a secret name: want letters, digits, '.', '_' or '-' (at most 63)")
			case !c.Actions.Webhook.Secrets[name].IsSet():
				add("actions.webhook.secrets."+name, "empty secret")
			}
		}
		if u := c.Redis.URL; u.IsSet() {
			// The URL may hold a password: the problem never quotes it.
			if _, err := redis.ParseURL(u.Reveal()); err != nil {
				add("redis.url", "not a Redis URL: want redis://[:password@]host:port/db or rediss://… (the value is not shown: it may hold a password)")
			}
		}
		for _, u := range []struct{ path, raw string }{{"slack.api_url", c.Slack.APIURL}, {"pagerduty.events_url", c.PagerDuty.EventsURL}} {
			if p, err := url.Parse(u.raw); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				add(u.path, "%q: want an http(s) URL", redact.URL(u.raw))
			}
		}
	}
	if c.Solana.Enabled() {
		ps = append(ps, solanaProblems(c.Solana.Validate())...)
	} else if use == Serve {
		if c.Solana.UpgradeSignerKeypairFile != "" {
			add("solana.upgrade_signer_keypair_file", "set, but no solana.endpoints to send an upgrade through")
		}
		if c.Solana.UpgradeNonceAccount != "" {
			add("solana.upgrade_nonce_account", "set, but no solana.endpoints to read the nonce from")
		}
	}
	return ps
}

func (c Config) busProblems(use Use) []*Problem {
	var ps []*Problem
	add := func(path, format string, args ...any) { ps = append(ps, problemf(path, format, args...)) }
	b := c.Bus
	if b.URL == "" {
		if use == Serve && strings.TrimSpace(b.DataDir) == "" {
			add("bus.data_dir", "empty: the embedded bus needs a directory for its store")
		}
		if b.Listen != "" {
			if msg := checkAddr(b.Listen); msg != "" {
				add("bus.listen", "%s", msg)
			}
		}
	} else {
		for _, s := range strings.Split(b.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
				add("bus.url", "%q: want nats://host:port (several separated by commas)", redact.URL(s))
				break
			}
		}
		if b.Listen != "" {
			add("bus.listen", "applies to the embedded server only; unset it or bus.url")
		}
	}
	if b.Prefix == "" || strings.ContainsAny(b.Prefix, ". \t\r\n*>") {
		add("bus.prefix", "%q: want one NATS subject token (no dots, spaces or wildcards)", b.Prefix)
	}
	if b.Replicas < 1 || b.Replicas > 5 {
		add("bus.replicas", "%d: want 1 to 5 (1 for the embedded bus)", b.Replicas)
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"bus.duplicate_window", b.DuplicateWindow}, {"bus.events_max_age", b.EventsMaxAge}, {"bus.publish_timeout", b.PublishTimeout}} {
		if d.v <= 0 {
			add(d.path, "must be a positive duration like 30s, got %s", d.v)
		}
	}
	if b.DuplicateWindow > 0 && b.EventsMaxAge > 0 && b.DuplicateWindow > b.EventsMaxAge {
		add("bus.duplicate_window", "%s is longer than bus.events_max_age (%s): ids cannot be remembered longer than the events", b.DuplicateWindow, b.EventsMaxAge)
	}
	return ps
}

// receiverProblems checks the Alertmanager receiver's authentication the
// way serve builds it: a *_file counts as set before it is read.
func (c Config) receiverProblems() []*Problem {
	var ps []*Problem
	add := func(path, format string, args ...any) { ps = append(ps, problemf(path, format, args...)) }
	am := c.Alertmanager
	bearer := am.BearerToken.IsSet() || am.BearerTokenFile != ""
	password := am.Password.IsSet() || am.PasswordFile != ""
	basic := password || am.Username != ""
	switch {
	case password && am.Username == "":
		add("alertmanager.password", "set without alertmanager.username")
	case am.Username != "" && !password:
		add("alertmanager.username", "set without alertmanager.password (or password_file)")
	}
	if bearer && basic {
		add("alertmanager.bearer_token", "both a bearer token and basic auth are configured: Alertmanager sends one, configure one")
	}
	loopback := c.ListenIsLoopback()
	if am.AllowUnauthenticated && !loopback {
		add("alertmanager.allow_unauthenticated", "only allowed when listen (%s) is a loopback address", c.Listen)
	}
	if !bearer && !basic && !am.AllowUnauthenticated && !loopback && checkAddr(c.Listen) == "" {
		add("listen", "%s is not a loopback address, so webhooks must authenticate: set alertmanager.bearer_token_file (or alertmanager.username and password_file)", c.Listen)
	}
	if am.MaxBodyBytes <= 0 {
		add("alertmanager.max_body_bytes", "%d: want a positive number of bytes", am.MaxBodyBytes)
	}
	return append(ps, c.alertmanagerAPIProblems()...)
}

// alertmanagerAPIProblems checks how the bot reaches Alertmanager's API
// (silences): a URL, and at most one kind of credentials.
func (c Config) alertmanagerAPIProblems() []*Problem {
	var ps []*Problem
	add := func(path, format string, args ...any) { ps = append(ps, problemf(path, format, args...)) }
	am := c.Alertmanager
	bearer := am.APIBearerToken.IsSet() || am.APIBearerTokenFile != ""
	password := am.APIPassword.IsSet() || am.APIPasswordFile != ""
	if am.URL == "" {
		if bearer || password || am.APIUsername != "" {
			add("alertmanager.url", "empty, but API credentials are set: set the URL of Alertmanager's API, or drop them")
		}
		return ps
	}
	if u, err := url.Parse(am.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("alertmanager.url", "%q: want Alertmanager's http(s) URL, like http://alertmanager:9093", am.URL)
	}
	switch {
	case password && am.APIUsername == "":
		add("alertmanager.api_password", "set without alertmanager.api_username")
	case am.APIUsername != "" && !password:
		add("alertmanager.api_username", "set without alertmanager.api_password (or api_password_file)")
	}
	if bearer && (password || am.APIUsername != "") {
		add("alertmanager.api_bearer_token", "both a bearer token and basic auth are configured for Alertmanager's API: configure one")
	}
	return ps
}

// slackInboundProblems checks the Slack inbound settings: an app token
// that is one, allow lists of Slack ids, and a bot token to resolve user
// groups with.
func (c Config) slackInboundProblems() []*Problem {
	var ps []*Problem
	add := func(path, format string, args ...any) { ps = append(ps, problemf(path, format, args...)) }
	sl := c.Slack
	if sl.AppToken.IsSet() && !strings.HasPrefix(sl.AppToken.Reveal(), "xapp-") {
		add("slack.app_token", "not an app-level token: want xapp-… (Basic Information → App-Level Tokens, scope connections:write)")
	}
	if sl.SigningSecret.IsSet() && strings.HasPrefix(sl.SigningSecret.Reveal(), "xox") {
		add("slack.signing_secret", "looks like a token (xox…): want the app's Signing Secret (Basic Information → App Credentials)")
	}
	for i, u := range sl.AllowedUsers {
		if !slackID(u, "UW") {
			add(fmt.Sprintf("slack.allowed_users[%d]", i), "%q: want a Slack user id like U0123ABCD (profile → ⋮ → Copy member ID)", u)
		}
	}
	for i, g := range sl.AllowedGroups {
		if !slackID(g, "S") {
			add(fmt.Sprintf("slack.allowed_groups[%d]", i), "%q: want a Slack user group id like S0123ABCD", g)
		}
	}
	if len(sl.AllowedGroups) > 0 && !sl.Token.IsSet() && sl.TokenFile == "" {
		add("slack.allowed_groups", "needs slack.token (or token_file) with usergroups:read to resolve group members")
	}
	return ps
}

// slackID reports whether s looks like a Slack id starting with one of
// first: upper-case letters and digits.
func slackID(s, first string) bool {
	if len(s) < 3 || !strings.ContainsRune(first, rune(s[0])) {
		return false
	}
	for _, r := range s[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// solanaProblems turns the watchers' "solana.path: message" errors into
// problems.
func solanaProblems(err error) []*Problem {
	var ps []*Problem
	for _, p := range Problems(err) {
		path, msg, ok := strings.Cut(p.Msg, ": ")
		if !ok || strings.ContainsAny(path, " ") {
			path, msg = "solana", p.Msg
		}
		ps = append(ps, problemf(path, "%s", msg))
	}
	return ps
}

// checkAddr validates a host:port listen address; "" when it is fine.
func checkAddr(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strconv.Quote(addr) + ": want host:port, e.g. 127.0.0.1:8080"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return strconv.Quote(addr) + ": port " + strconv.Quote(port) + " is not a port number (0 to 65535)"
	}
	return ""
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
