package app

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/config"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/rpcview"
)

// addSlackInbound serves /incident and the card buttons through the
// engine and the command sender: over HTTP (POST /slack/commands and
// /slack/interactions) when slack.signing_secret is set, over Socket Mode
// when slack.app_token is. rpc is the RPC view, nil when none is kept.
func (s *Server) addSlackInbound(cfg config.Config, rpc rpcview.Reader) error {
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
	h, err := slackin.New(slackin.Options{Incidents: s.Engine, Sender: s.Commands, RPC: rpc, Access: access,
		Audit: s.Bus, Logger: s.log.With("component", "slack-inbound")})
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
