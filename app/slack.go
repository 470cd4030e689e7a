package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/config"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// addSlackInbound serves /incident and the card buttons through the
// engine and the command sender: over HTTP (POST /slack/commands and
// /slack/interactions) when slack.signing_secret is set, over Socket Mode
// when slack.app_token is. cat is the engine's catalog: its RPC view (nil
// when none is kept) and the runbooks whose remediation steps people
// request and approve; approvers in user groups are resolved with the same
// cached usergroups.users.list lookups as the allow lists. env is what
// steps resolve with, the same as the engine's runner, so the plan people
// approve is the plan that runs.
func (s *Server) addSlackInbound(cfg config.Config, cat Catalog, env actions.Env) error {
	rpc := cat.RPC
	sc := cfg.Slack
	apiURL := sc.APIURL
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	api := slack.New(sc.Token.Reveal(), slack.OptionAPIURL(apiURL), slack.OptionAppLevelToken(sc.AppToken.Reveal()))
	var access *slackin.Access
	if len(sc.AllowedUsers)+len(sc.AllowedGroups) > 0 {
		access = slackin.NewAccess(sc.AllowedUsers, sc.AllowedGroups, api, 0)
	}
	approvers := access
	if approvers == nil {
		approvers = slackin.NewAccess(nil, nil, api, 0)
	}
	opts := slackin.Options{Incidents: s.Engine, Sender: s.Commands, RPC: rpc, Access: access,
		Audit: s.Bus, Logger: s.log.With("component", "slack-inbound"), Reporter: s.Reports,
		Steps: Steps{Catalog: cat, Env: env}, Approvers: approvers, Freezer: s.Engine}
	if cfg.Alertmanager.URL != "" {
		opts.Silencer = silences{s.Commands}
	}
	if s.redis != nil {
		opts.Flags = flags{s.redis}
	}
	h, err := slackin.New(opts)
	if err != nil {
		return err
	}
	if sc.SigningSecret.IsSet() {
		x, err := slackin.NewHTTP(h, slackin.Verifier{Secret: sc.SigningSecret}, s.Registry)
		if err != nil {
			return fmt.Errorf("slack inbound: %w", err)
		}
		x.Routes(s.mux)
	}
	if sc.AppToken.IsSet() {
		sock, err := slackin.NewSocket(h, api, s.Registry)
		if err != nil {
			return fmt.Errorf("slack socket mode: %w", err)
		}
		s.Add(sock.Run)
	}
	return nil
}

// silences asks for silences through commands: the engine records them
// and its silence reconciler creates and expires them in Alertmanager.
type silences struct{ c *command.Sender }

func (x silences) Silence(ctx context.Context, incident string, d time.Duration, by input.Actor, requestID string) (string, error) {
	ref, err := x.c.Send(ctx, command.Command{Verb: input.Silence, Incident: incident, Duration: d, By: by, RequestID: requestID, At: time.Now()})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Silence of %s's alerts for %s asked; the card shows it once Alertmanager has it.", ref.ID, notify.HumanDuration(d)), nil
}

func (x silences) Unsilence(ctx context.Context, incident string, by input.Actor, requestID string) (string, error) {
	ref, err := x.c.Send(ctx, command.Command{Verb: input.Unsilence, Incident: incident, By: by, RequestID: requestID, At: time.Now()})
	if err != nil {
		return "", err
	}
	return "The silence of " + ref.ID + " will be expired; the card shows when it is.", nil
}

// flags reads the feature flags in Redis for /incident flags (read-only).
type flags struct{ rdb redis.Cmdable }

func (f flags) Flags(ctx context.Context) ([]slackin.Flag, error) {
	fs, err := actions.ReadFlags(ctx, f.rdb)
	if err != nil {
		return nil, err
	}
	out := make([]slackin.Flag, len(fs))
	for i, x := range fs {
		out[i] = slackin.Flag{Name: x.Name, Enabled: x.Enabled}
	}
	return out, nil
}
