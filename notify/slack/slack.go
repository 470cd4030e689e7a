// Package slack is the Slack sink: it keeps one living Block Kit card per
// incident (chat.postMessage, then chat.update in place) and posts updates
// in the card's thread. It implements notify.Chat on slack-go.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// DefaultAPIURL is Slack's Web API base URL.
const DefaultAPIURL = "https://slack.com/api/"

// Config configures the Slack sink.
type Config struct {
	// Token is the bot token (xoxb-…). It is a secret: it is never logged
	// nor put in an error.
	Token string
	// APIURL is the Web API base URL, for Slack proxies and tests; a
	// trailing "/" is added when missing. Empty means DefaultAPIURL.
	APIURL string
	// Timeout bounds each HTTP attempt. Zero means 10 s.
	Timeout time.Duration
	// Retry is the retry policy of every call.
	Retry notify.RetryPolicy
	// Render tunes the card.
	Render RenderOptions
	// HTTPClient is the client to use; nil means a new http.Client.
	HTTPClient *http.Client
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is told the outcome of every call.
	Observer notify.Observer
}

// DefaultConfig returns the defaults: Slack's public API, 10 s per attempt,
// notify.DefaultRetryPolicy. Token still has to be set.
func DefaultConfig() Config {
	return Config{APIURL: DefaultAPIURL, Timeout: 10 * time.Second, Retry: notify.DefaultRetryPolicy()}
}

// Chat is a notify.Chat on Slack. It is safe for concurrent use.
type Chat struct {
	api *slack.Client
	cfg Config
	log *slog.Logger
}

var _ notify.Chat = (*Chat)(nil)

// New returns a Slack Chat for cfg.
func New(cfg Config) (*Chat, error) {
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("slack: bot token is empty")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api := slack.New(cfg.Token, slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(cfg.HTTPClient))
	return &Chat{api: api, cfg: cfg, log: log.With("sink", "slack")}, nil
}

// PostCard posts the incident's card to channel (an id such as C0123, or
// a name) and returns the channel id and ts Slack assigned.
//
// A retry after a timeout may post the card twice: chat.postMessage has no
// idempotency key.
func (c *Chat) PostCard(ctx context.Context, channel string, inc notify.Incident) (ref notify.CardRef, err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "post_card", start, err) }()

	opts := c.cardOptions(inc)
	err = c.retry(ctx, "slack chat.postMessage", inc.ID, func(ctx context.Context) error {
		ch, ts, err := c.api.PostMessageContext(ctx, channel, opts...)
		if err != nil {
			return err
		}
		ref = notify.CardRef{Channel: ch, TS: ts}
		return nil
	})
	if err != nil {
		return notify.CardRef{}, err
	}
	if ref.Channel == "" {
		ref.Channel = channel
	}
	return ref, nil
}

// UpdateCard edits the card at ref in place.
func (c *Chat) UpdateCard(ctx context.Context, ref notify.CardRef, inc notify.Incident) (err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "update_card", start, err) }()

	opts := c.cardOptions(inc)
	return c.retry(ctx, "slack chat.update", inc.ID, func(ctx context.Context) error {
		_, _, _, err := c.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, opts...)
		return err
	})
}

// Reply posts u in the card's thread.
func (c *Chat) Reply(ctx context.Context, ref notify.CardRef, inc notify.Incident, u notify.Update) (err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "reply", start, err) }()

	opts := []slack.MsgOption{
		slack.MsgOptionTS(ref.TS),
		slack.MsgOptionText(ReplyText(inc, u), false),
		slack.MsgOptionDisableLinkUnfurl(),
		slack.MsgOptionDisableMediaUnfurl(),
	}
	return c.retry(ctx, "slack chat.postMessage (thread)", inc.ID, func(ctx context.Context) error {
		_, _, err := c.api.PostMessageContext(ctx, ref.Channel, opts...)
		return err
	})
}

// ReplyText is the mrkdwn text of a thread reply.
func ReplyText(inc notify.Incident, u notify.Update) string {
	s := ""
	if u.Kind != "" {
		s = "*" + esc(strings.ReplaceAll(u.Kind, "_", " ")) + "*"
	}
	if t := strings.TrimSpace(u.Text); t != "" {
		if s != "" {
			s += " · "
		}
		s += escN(t, maxSectionText)
	}
	if !u.At.IsZero() {
		s += " · " + date(u.At)
	}
	if s == "" {
		s = esc(inc.ID) + " updated"
	}
	return s
}

func (c *Chat) cardOptions(inc notify.Incident) []slack.MsgOption {
	return []slack.MsgOption{
		slack.MsgOptionText(FallbackText(inc), false),
		slack.MsgOptionBlocks(Blocks(inc, c.cfg.Render)...),
		slack.MsgOptionDisableLinkUnfurl(),
		slack.MsgOptionDisableMediaUnfurl(),
	}
}

// retry runs call with the sink's retry policy and a per-attempt timeout,
// classifying slack-go's errors.
func (c *Chat) retry(ctx context.Context, op, incident string, call func(ctx context.Context) error) error {
	p := c.cfg.Retry
	if p.OnRetry == nil {
		log := c.log.With("op", op, "incident", incident)
		p.OnRetry = func(attempt int, delay time.Duration, err error) {
			log.Warn("slack call failed, retrying", "attempt", attempt, "delay", delay, "err", err)
		}
	}
	return p.Do(ctx, op, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		err := call(actx)
		if err == nil {
			return nil
		}
		return classify(op, err, c.cfg.Token)
	})
}

// transientErrors are the Slack error codes (ok=false) worth another try;
// every other code (channel_not_found, invalid_auth, invalid_blocks, …)
// is permanent.
var transientErrors = map[string]bool{
	"ratelimited":         true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"team_added_to_org":   true,
}

// classify turns a slack-go error into a *notify.Error that says whether a
// retry may help. The token is scrubbed from the text, should a library
// ever echo it.
func classify(op string, err error, token string) *notify.Error {
	ne := &notify.Error{Op: op, Retryable: true, Err: err}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	switch {
	case errors.As(err, &rl):
		ne.RetryAfter = rl.RetryAfter
	case errors.As(err, &sc):
		ne.Retryable = sc.Code >= 500 || sc.Code == http.StatusTooManyRequests || sc.Code == http.StatusRequestTimeout
	case errors.As(err, &se):
		ne.Retryable = transientErrors[se.Err]
		ne.Err = fmt.Errorf("slack api error %q", se.Err)
		if len(se.ResponseMetadata.Messages) > 0 {
			ne.Err = fmt.Errorf("slack api error %q: %s", se.Err, strings.Join(se.ResponseMetadata.Messages, "; "))
		}
	case errors.Is(err, context.Canceled):
		ne.Retryable = false
	}
	if token != "" && strings.Contains(ne.Err.Error(), token) {
		ne.Err = errors.New(strings.ReplaceAll(ne.Err.Error(), token, "<secret>"))
	}
	return ne
}
