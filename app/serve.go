package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/actions/kube"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	pdhook "github.com/incidentbot/incidentbot/handlers/pagerduty"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/notify/pagerduty"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/report"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/silence"
)

// Logger builds the process logger from configuration. Every URL in a log
// line is redacted (package redact), whoever writes it.
func Logger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact.ReplaceAttr}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Sinks chooses Slack and PagerDuty when configured, the console otherwise.
func Sinks(cfg config.Config, out io.Writer, log *slog.Logger) (notify.Chat, notify.Pager, error) {
	con := console.New(out)
	var chat notify.Chat = con
	var pager notify.Pager = con
	if cfg.Slack.Token.IsSet() {
		sc := nslack.DefaultConfig()
		sc.Token = cfg.Slack.Token.Reveal()
		sc.APIURL = cfg.Slack.APIURL
		sc.ChannelRate, sc.ChannelBurst = cfg.Slack.ChannelRate, cfg.Slack.ChannelBurst
		sc.Logger = log
		c, err := nslack.New(sc)
		if err != nil {
			return nil, nil, fmt.Errorf("slack: %w", err)
		}
		chat = c
	} else {
		log.Warn("slack.token not set: incident cards print to the console")
	}
	if cfg.PagerDuty.RoutingKey.IsSet() || len(cfg.PagerDuty.RoutingKeys) > 0 {
		pc := pagerduty.DefaultConfig()
		pc.RoutingKey = cfg.PagerDuty.RoutingKey.Reveal()
		pc.RoutingKeys = map[string]string{}
		for name, key := range cfg.PagerDuty.RoutingKeys {
			pc.RoutingKeys[name] = key.Reveal()
		}
		pc.BaseURL = cfg.PagerDuty.EventsURL
		pc.Logger = log
		p, err := pagerduty.New(pc)
		if err != nil {
			return nil, nil, fmt.Errorf("pagerduty: %w", err)
		}
		pager = p
	} else {
		log.Warn("pagerduty.routing_key and routing_keys not set: pages print to the console")
	}
	return chat, pager, nil
}

// Silencer is the Alertmanager API client for silences when
// alertmanager.url is set; nil (silences off) otherwise.
func Silencer(cfg config.Config, log *slog.Logger) (*silence.Client, error) {
	am := cfg.Alertmanager
	if am.URL == "" {
		log.Info("alertmanager.url not set: silences from Slack are off")
		return nil, nil
	}
	c, err := silence.New(silence.Config{URL: am.URL, BearerToken: am.APIBearerToken, Username: am.APIUsername,
		Password: am.APIPassword, Timeout: cfg.Engine.EffectTimeout})
	if err != nil {
		return nil, fmt.Errorf("silences: %w", err)
	}
	return c, nil
}

// Decoders is the one list of what feeds the engine: each event type (or
// source) and the decoder that turns its events into inputs.
func Decoders() *input.Decoders {
	return input.NewDecoders().
		Type(alertmanager.EventType, alertmanager.Decoder).
		Type(engine.TimerEventType, engine.TimerDecoder).
		Type(engine.ApprovalTimerEventType, engine.ApprovalTimerDecoder).
		Source(command.Source, command.Decoder).
		Source("solana", input.SignalEvent)
}

// NewServer opens the bus and builds every part of `serve`: the engine and
// its consumers, the Alertmanager receiver, and the Solana watchers when
// configured. Run starts them.
func NewServer(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Server, error) {
	set, warns, err := runbooks.LoadDefault(cfg.Runbooks.Dir, actions.Default())
	if err == nil {
		err = CheckConfigRefs(set, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("load runbooks: %w", err)
	}
	for _, w := range warns {
		log.Warn("runbook warning", "problem", w.Error())
	}
	s, err := open(ctx, cfg, log, o)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.abort()
		}
	}()
	b := s.Bus
	for _, spec := range engine.Streams {
		if err := b.EnsureStream(ctx, spec); err != nil {
			return nil, err
		}
	}
	kvs := map[string]bus.KV{}
	for _, spec := range append(engine.Buckets, rpcview.Bucket) {
		if kvs[spec.Name], err = b.EnsureBucket(ctx, spec); err != nil {
			return nil, err
		}
	}
	rpcKV := kvs[rpcview.Bucket.Name]
	chat, pager, err := Sinks(cfg, o.Stdout, log)
	if err != nil {
		return nil, err
	}
	if o.Chat != nil {
		chat = o.Chat
	}
	if sc, ok := chat.(*nslack.Chat); ok {
		sharePace(s, b, sc, log)
	}
	if o.Pager != nil {
		pager = o.Pager
	}
	cat := Catalog{Set: set, DefaultChannel: cfg.Runbooks.DefaultChannel}
	if cfg.Solana.Enabled() || cfg.Bus.URL != "" {
		// Watchers here, or `incidentbot watch` on the shared bus, keep the
		// RPC view; without any, plans say none is configured.
		cat.RPC = rpcview.Store{KV: rpcKV}
	}
	silencer, err := Silencer(cfg, log)
	if err != nil {
		return nil, err
	}
	reports := report.New(engine.NewReader(kvs))
	rdb, err := RedisClient(cfg)
	if err != nil {
		return nil, err
	}
	actionEnv := actions.Env{RPCURL: rpcURLs(cfg), SolanaPrimary: primaryRPC(cfg), UpgradeNonceAccount: cfg.Solana.UpgradeNonceAccount}
	if f := cfg.Solana.UpgradeSignerKeypairFile; f != "" {
		kp, err := actions.LoadKeypairFile(f)
		if err != nil {
			return nil, fmt.Errorf("solana.upgrade_signer_keypair_file: %w", err)
		}
		actionEnv.UpgradeSigner = kp
		log.Warn("solana.program_rollback signs program upgrades with the configured keypair off mainnet-beta: for devnet and staging only",
			"authority", kp.PublicKey().String())
	}
	if rdb != nil {
		actionEnv.Redis = rdb
		s.redis = rdb
		s.Add(func(ctx context.Context) error { <-ctx.Done(); return rdb.Close() })
	}
	kc, from, err := kube.Client(cfg.Kubernetes)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	if kc != nil {
		actionEnv.Kube = kc
		log.Info("kubernetes actions run against the cluster", "config", from)
	} else {
		log.Info("kubernetes.kubeconfig not set and not in a pod: kubernetes actions are dry runs")
	}
	if silencer != nil { // never a nil *silence.Client in the interface
		actionEnv.Silences = silencer
	}
	wh, err := Webhooks(cfg)
	if err != nil {
		return nil, err
	}
	if wh != nil {
		actionEnv.Webhooks = wh
	} else {
		log.Info("actions.webhook.allow not set: webhook steps cannot run")
	}
	s.actionEnv = actionEnv
	deps := engine.Deps{
		Catalog: cat, Decoders: Decoders(),
		Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
		Archive: kvs[engine.BucketArchive],
		Chat:    chat, Pager: pager, Publisher: b, Scheduler: b, Audit: b,
		Logger: log.With("component", "engine"), Metrics: engine.NewMetrics(s.Registry),
		SilenceMax: cfg.Alertmanager.SilenceMax, Reports: reports,
		Runs: kvs[engine.BucketRuns], Runner: StepRunner{Steps{Catalog: cat, Env: actionEnv}}, ActionEnv: actionEnv,
	}
	var senderOpts []command.Option
	if silencer != nil {
		deps.Silencer = silencer
		senderOpts = append(senderOpts, command.WithSilences(cfg.Alertmanager.SilenceMax))
	}
	ecfg := cfg.Engine
	ecfg.Storm.Threshold, ecfg.Storm.Window = cfg.Slack.StormThreshold, cfg.Slack.StormWindow
	eng, err := engine.New(ecfg, deps)
	if err != nil {
		return nil, err
	}
	s.Engine = eng
	s.Commands = command.NewSender(b, eng, senderOpts...)
	s.Reports = reports
	noCreds := !cfg.Alertmanager.BearerToken.IsSet() && !cfg.Alertmanager.Password.IsSet()
	allowAnon := cfg.Alertmanager.AllowUnauthenticated || (noCreds && cfg.ListenIsLoopback())
	if noCreds && allowAnon {
		log.Warn("alertmanager webhook accepts unauthenticated requests (listening on loopback only); set alertmanager.bearer_token for production")
	}
	amCfg := cfg.Alertmanager
	amCfg.AllowUnauthenticated = allowAnon
	rc, err := alertmanager.New(amCfg, alertmanager.Deps{Publisher: b, Logger: log.With("component", "alertmanager"), Registerer: s.Registry})
	if err != nil {
		return nil, err
	}
	rc.Routes(s.mux)
	if pd := cfg.PagerDuty; pd.WebhookSecret.IsSet() || pd.WebhookSecretPrevious.IsSet() {
		wh, err := pdhook.New(pdhook.Config{Secrets: []secret.Secret{pd.WebhookSecret, pd.WebhookSecretPrevious}},
			pdhook.Deps{Commands: s.Commands, Logger: log.With("component", "pagerduty-webhook"), Registerer: s.Registry})
		if err != nil {
			return nil, err
		}
		wh.Routes(s.mux)
	}
	if cfg.Slack.SigningSecret.IsSet() || cfg.Slack.AppToken.IsSet() {
		if err := s.addSlackInbound(cfg, cat, actionEnv); err != nil {
			return nil, err
		}
	}
	for _, c := range eng.Consumers() {
		s.consume(c.Config, c.Handler)
	}
	s.Add(eng.Sweep)
	if cfg.Solana.Enabled() {
		if err := s.addWatchers(ctx, cfg); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// primaryRPC names the primary RPC endpoint (the first one with role
// primary), which Solana actions use unless a step names another.
func primaryRPC(cfg config.Config) string {
	for _, e := range cfg.Solana.Endpoints {
		if e.Role == "primary" {
			return e.Name
		}
	}
	return ""
}

// rpcURLs looks an RPC endpoint's real URL up by its configured name, for
// solana.switch_rpc: the live view only holds redacted URLs.
func rpcURLs(cfg config.Config) func(string) (string, bool) {
	urls := map[string]string{}
	for _, e := range cfg.Solana.Endpoints {
		urls[e.Name] = e.URL
	}
	return func(name string) (string, bool) {
		u, ok := urls[name]
		return u, ok && u != ""
	}
}
