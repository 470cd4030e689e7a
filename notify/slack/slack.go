// Package slack is the Slack sink: it keeps one living Block Kit card per
// incident (chat.postMessage, then chat.update in place) and posts updates
// in the card's thread. It implements notify.Chat on slack-go.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
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
	// HistoryPageSize is the limit of each conversations.history page that
	// FindCard reads. Zero means 200. Slack allows at most 999, and 15 for
	// commercially distributed apps outside the Marketplace.
	HistoryPageSize int
	// HistoryMaxPages bounds the conversations.history pages FindCard reads
	// for one lookup. Zero means 10.
	HistoryMaxPages int
	// Retry is the retry policy of every call.
	Retry notify.RetryPolicy
	// ChannelRate paces the calls that post into one channel
	// (chat.postMessage, chat.update) to this many per second, Slack's
	// limit being about one; zero or less turns pacing off. Whatever it
	// is, a Retry-After from Slack closes that channel for every caller
	// until it ends, and callers waiting for a channel go in order of
	// severity, critical first.
	ChannelRate float64
	// ChannelBurst is how many calls may go into one channel at once
	// before the pace applies. Below 1 means 1.
	ChannelBurst int
	// Render tunes the card.
	Render RenderOptions
	// HTTPClient is the client to use; nil means a new http.Client.
	HTTPClient *http.Client
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is told the outcome of every call.
	Observer notify.Observer
}

// Defaults of the per-channel pace.
const (
	DefaultChannelRate  = 1.0
	DefaultChannelBurst = 3
)

// DefaultConfig returns the defaults: Slack's public API, 10 s per attempt,
// notify.DefaultRetryPolicy, card lookups of up to 10 pages of 200
// messages, one call per second into each channel after a burst of 3.
// Token still has to be set.
func DefaultConfig() Config {
	return Config{APIURL: DefaultAPIURL, Timeout: 10 * time.Second, Retry: notify.DefaultRetryPolicy(),
		HistoryPageSize: 200, HistoryMaxPages: 10, ChannelRate: DefaultChannelRate, ChannelBurst: DefaultChannelBurst}
}

// Chat is a notify.Chat on Slack. It is safe for concurrent use.
//
// The bot token needs chat:write to post; FindCard (and PostCard's own
// retries after an unknown outcome) need channels:history and
// groups:history to read the channel, and, for a channel given by name,
// channels:read and groups:read to find its id. The bot must be a member
// of the channel to read it.
type Chat struct {
	api  *slack.Client
	cfg  Config
	log  *slog.Logger
	gate *gate // per-channel pace and Retry-After
	// sharePace, when set, tells the other replicas of a Retry-After
	// (see SharePace).
	sharePace func(channels []string, until time.Time)

	mu sync.Mutex
	// channelIDs maps channel names (lower case, no "#") to ids, learned
	// from posts and users.conversations.
	channelIDs map[string]string
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
	if cfg.HistoryPageSize <= 0 {
		cfg.HistoryPageSize = 200
	}
	if cfg.HistoryMaxPages <= 0 {
		cfg.HistoryMaxPages = 10
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: notify.PooledTransport()}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api := slack.New(cfg.Token, slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(cfg.HTTPClient))
	return &Chat{api: api, cfg: cfg, log: log.With("sink", "slack"), channelIDs: map[string]string{},
		gate: newGate(cfg.ChannelRate, cfg.ChannelBurst, nil)}, nil
}

// SharePace makes every Retry-After Slack answers be passed to send (the
// channels it closed, by gate key, and until when), so that the other
// replicas hold their calls into those channels too: Slack's limits are
// per workspace and channel, not per process. The other replicas hand
// what they receive to ClosedElsewhere. Call it before the chat is used.
func (c *Chat) SharePace(send func(channels []string, until time.Time)) {
	c.sharePace = send
}

// maxClosedElsewhere caps how long a Retry-After from another replica
// closes a channel here: a notice with a wrong clock, or a forged one,
// cannot hold a channel for long.
const maxClosedElsewhere = 5 * time.Minute

// ClosedElsewhere closes channels until the given time, as another
// replica was told by Slack (see SharePace). It never shortens a closure.
func (c *Chat) ClosedElsewhere(channels []string, until time.Time) {
	now := c.gate.now()
	if !until.After(now) {
		return
	}
	if limit := now.Add(maxClosedElsewhere); until.After(limit) {
		until = limit
	}
	for _, ch := range channels {
		c.gate.closeUntil(ch, until)
	}
}

// PostCard posts the incident's card to channel (an id such as C0123, or
// a name) with tag as message metadata (see CardMetadata), and returns the
// channel id and ts Slack assigned.
//
// chat.postMessage has no idempotency key, so after an attempt whose
// outcome is unknown (a timeout, a connection lost after the request was
// sent, a 5xx, Slack's internal_error) PostCard looks for the card with
// FindCard before posting again, and once more after a last such attempt.
// A rate limit or a clear ok=false answer means nothing was posted. If the
// lookup itself fails for good (a missing scope, the bot not in the
// channel), PostCard logs it and posts again: a duplicate card is better
// than none.
func (c *Chat) PostCard(ctx context.Context, channel string, inc notify.Incident, tag notify.CardTag) (ref notify.CardRef, err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "post_card", start, err) }()

	const op = "slack chat.postMessage"
	log := c.log.With("op", op, "incident", inc.ID, "nonce", tag.Nonce)
	opts := append(c.cardOptions(inc), slack.MsgOptionMetadata(CardMetadata(tag)))
	maybePosted := false // a failed attempt may have posted the card
	err = c.policy(op, inc.ID).Do(ctx, op, func(ctx context.Context) error {
		if maybePosted {
			found, ok, err := c.lookBeforeRetry(ctx, channel, tag, start, log)
			if err != nil || ok {
				ref = found
				return err
			}
		}
		return c.paced(ctx, op, channel, turn(inc), func(ctx context.Context) error {
			ch, ts, err := c.api.PostMessageContext(ctx, channel, opts...)
			if err != nil {
				maybePosted = maybePosted || outcomeUnknown(err)
				return err
			}
			ref = notify.CardRef{Channel: ch, TS: ts}
			return nil
		})
	})
	if err != nil && maybePosted && ctx.Err() == nil {
		if found, ok, lerr := c.lookBeforeRetry(ctx, channel, tag, start, log); lerr == nil && ok {
			ref, err = found, nil
		}
	}
	if err != nil && maybePosted && errors.Is(err, notify.ErrNotSent) {
		// The last attempt was handed back unsent, but an earlier one may
		// have posted: the caller must look before posting again.
		flat := &notify.Error{Op: op, Retryable: true, Err: errors.New(strings.TrimPrefix(err.Error(), op+": "))}
		if ne := (*notify.Error)(nil); errors.As(err, &ne) {
			flat.Retryable, flat.RetryAfter = ne.Retryable, ne.RetryAfter
		}
		err = flat
	}
	if err != nil {
		return notify.CardRef{}, err
	}
	if ref.Channel == "" {
		ref.Channel = channel
	}
	c.rememberChannel(channel, ref.Channel)
	return ref, nil
}

// lookBeforeRetry looks for the card that a failed attempt may have
// posted, one call per request (the caller's retry loop does the
// retrying). It returns an error only when looking failed in a way worth
// retrying; when it failed for good it logs and reports no card.
func (c *Chat) lookBeforeRetry(ctx context.Context, channel string, tag notify.CardTag, since time.Time, log *slog.Logger) (notify.CardRef, bool, error) {
	ref, found, err := c.find(ctx, channel, tag, since, c.attempt)
	switch {
	case err == nil && found:
		log.Info("a failed attempt had posted the card; not posting again", "channel", ref.Channel, "ts", ref.TS)
		return ref, true, nil
	case err == nil:
		return notify.CardRef{}, false, nil
	case notify.IsRetryable(err):
		return notify.CardRef{}, false, err
	default:
		log.Warn("cannot tell whether a failed attempt posted the card; posting again", "err", err)
		return notify.CardRef{}, false, nil
	}
}

// UpdateCard edits the card at ref in place.
func (c *Chat) UpdateCard(ctx context.Context, ref notify.CardRef, inc notify.Incident) (err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "update_card", start, err) }()

	opts := c.cardOptions(inc)
	const op = "slack chat.update"
	return c.policy(op, inc.ID).Do(ctx, op, func(ctx context.Context) error {
		return c.paced(ctx, op, ref.Channel, turn(inc), func(ctx context.Context) error {
			_, _, _, err := c.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, opts...)
			return err
		})
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
	const op = "slack chat.postMessage (thread)"
	return c.policy(op, inc.ID).Do(ctx, op, func(ctx context.Context) error {
		return c.paced(ctx, op, ref.Channel, inc.Severity, func(ctx context.Context) error {
			_, _, err := c.api.PostMessageContext(ctx, ref.Channel, opts...)
			return err
		})
	})
}

// turn is the severity a card waits for its channel's turn with: its
// incident's, and critical for a storm card, which one call makes show
// hundreds of incidents.
func turn(inc notify.Incident) notify.Severity {
	if inc.Storm != nil {
		return notify.SeverityCritical
	}
	return inc.Severity
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
	if m := mentions(u.Mention); m != "" {
		s += "\n" + m
	}
	return s
}

// mentions renders Slack user ids as <@U…> and user group ids as
// <!subteam^S…>, so Slack notifies them; anything else is left out.
func mentions(ids []string) string {
	var out []string
	for _, id := range ids {
		switch {
		case !slackID(id):
		case id[0] == 'S':
			out = append(out, "<!subteam^"+id+">")
		default:
			out = append(out, "<@"+id+">")
		}
	}
	return strings.Join(out, " ")
}

func slackID(id string) bool {
	if len(id) < 3 || len(id) > 21 || !strings.ContainsRune("UWS", rune(id[0])) {
		return false
	}
	for _, c := range id[1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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
	return c.policy(op, incident).Do(ctx, op, func(ctx context.Context) error { return c.attempt(ctx, op, call) })
}

// policy is the sink's retry policy, logging each retry of op.
func (c *Chat) policy(op, incident string) notify.RetryPolicy {
	p := c.cfg.Retry
	if p.OnRetry == nil {
		log := c.log.With("op", op, "incident", incident)
		p.OnRetry = func(attempt int, delay time.Duration, err error) {
			log.Warn("slack call failed, retrying", "attempt", attempt, "delay", delay, "err", err)
		}
	}
	return p
}

// paced runs one call that posts into channel at the channel's turn
// (see Config.ChannelRate). A rate limit closes the channel for every
// caller until Slack's Retry-After ends, and this caller waits for a turn
// again; if the channel stays closed past ctx's deadline it gets a
// retryable error saying when the channel opens. Any other failure is the
// retry policy's to handle.
func (c *Chat) paced(ctx context.Context, op, channel string, sev notify.Severity, call func(ctx context.Context) error) error {
	key := c.gateKey(channel)
	for {
		if err := c.gate.wait(ctx, op, key, sev); err != nil {
			return err
		}
		err := c.attempt(ctx, op, call)
		var rl *slack.RateLimitedError
		if err == nil || !errors.As(err, &rl) {
			return err
		}
		closed := []string{key}
		until := c.gate.closeFor(key, rl.RetryAfter)
		if now := c.gateKey(channel); now != key {
			c.gate.closeUntil(now, until) // the channel's id was learned meanwhile
			closed = append(closed, now)
		}
		if c.sharePace != nil {
			c.sharePace(closed, until)
		}
		c.log.Warn("slack rate limited the channel; holding its calls", "op", op, "channel", channel, "retry_after", rl.RetryAfter)
	}
}

// gateKey names channel's gate: its id when known, so that a channel named
// by its cards and given by id in replies and edits waits at one gate.
func (c *Chat) gateKey(channel string) string {
	if isChannelID(channel) {
		return channel
	}
	name := channelName(channel)
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.channelIDs[name]; ok {
		return id
	}
	return "#" + name
}

// attempt runs call once with the per-attempt timeout and classifies its
// error.
func (c *Chat) attempt(ctx context.Context, op string, call func(ctx context.Context) error) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := call(actx); err != nil {
		return classify(op, err, c.cfg.Token)
	}
	return nil
}

// outcomeUnknown reports whether a failed chat.postMessage may have posted
// all the same: anything but a rate limit, a clear ok=false answer, a 4xx
// or a request that never left (dial and DNS errors).
func outcomeUnknown(err error) bool {
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &rl):
		return false
	case errors.As(err, &sc):
		return sc.Code >= 500 || sc.Code == http.StatusRequestTimeout
	case errors.As(err, &se):
		// Slack: "it's possible some aspect of the operation succeeded".
		return se.Err == "internal_error" || se.Err == "fatal_error"
	case errors.As(err, &op) && op.Op == "dial", errors.As(err, &dns):
		return false
	}
	return true // timeouts, resets, EOF after the request was written
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
		msg := fmt.Sprintf("slack api error %q", se.Err)
		if h := hint(op, se); h != "" {
			msg += ": " + h
		}
		if len(se.ResponseMetadata.Messages) > 0 {
			msg += ": " + strings.Join(se.ResponseMetadata.Messages, "; ")
		}
		ne.Err = errors.New(msg)
	case errors.Is(err, context.Canceled):
		ne.Retryable = false
	}
	if token != "" && strings.Contains(ne.Err.Error(), token) {
		ne.Err = errors.New(strings.ReplaceAll(ne.Err.Error(), token, "<secret>"))
	}
	return ne
}

// scopes names the bot token scopes each Web API method needs.
var scopes = map[string]string{
	"chat.postMessage":      "chat:write",
	"chat.update":           "chat:write",
	"conversations.history": "channels:history (public channels) and groups:history (private channels)",
	"users.conversations":   "channels:read (public channels) and groups:read (private channels)",
}

// hint says what to do about a Slack error that needs a person.
func hint(op string, se slack.SlackErrorResponse) string {
	switch se.Err {
	case "missing_scope":
		h := "the bot token lacks a scope"
		if f := strings.Fields(op); len(f) > 1 && scopes[f[1]] != "" {
			h += "; add " + scopes[f[1]] + " to the Slack app's bot token scopes and reinstall the app"
		}
		if se.Needed != "" {
			h += " (Slack says needed: " + se.Needed + "; provided: " + se.Provided + ")"
		}
		return h
	case "not_in_channel":
		return "the bot is not a member of the channel; invite it (/invite @bot) to let it read the channel"
	}
	return ""
}
