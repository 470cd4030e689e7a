package slack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// CardEventType is the message metadata event type that marks a card.
const CardEventType = "incidentbot_card"

// findSkew widens a lookup's window for clock skew between this host and
// Slack: an older card of the same incident found thanks to it is still
// that incident's card.
const findSkew = 30 * time.Second

// maxChannelPages bounds the users.conversations pages read to find a
// channel's id by its name.
const maxChannelPages = 20

// CardMetadata is the message metadata a card is posted with:
// {"event_type":"incidentbot_card","event_payload":{"incident_id":…,"nonce":…}}.
func CardMetadata(tag notify.CardTag) slack.SlackMetadata {
	return slack.SlackMetadata{
		EventType:    CardEventType,
		EventPayload: map[string]any{"incident_id": tag.IncidentID, "nonce": tag.Nonce},
	}
}

// FindCard looks in channel's history (conversations.history, with
// metadata) for a card this sink posted for tag.IncidentID since since,
// less 30 s for clock skew (a zero since reads back to the page limit).
// It returns the card carrying tag.Nonce when there is one, else the
// oldest card of the incident, with the channel's id in the ref.
//
// It reads at most HistoryMaxPages pages of HistoryPageSize messages,
// newest first: a card further back is not found (a warning is logged).
// Matching is by metadata, which only apps can post, and incident ids are
// random, so another bot's cards do not match in practice. A channel
// given by name is resolved with users.conversations (among the channels
// the bot is a member of) and cached. Each call is retried with the
// sink's policy; failures are *notify.Error, and missing_scope,
// not_in_channel and channel_not_found are permanent.
func (c *Chat) FindCard(ctx context.Context, channel string, tag notify.CardTag, since time.Time) (ref notify.CardRef, found bool, err error) {
	start := time.Now()
	defer func() { c.cfg.Observer.Observe("slack", "find_card", start, err) }()
	run := func(ctx context.Context, op string, call func(context.Context) error) error {
		return c.retry(ctx, op, tag.IncidentID, call)
	}
	return c.find(ctx, channel, tag, since, run)
}

// runner runs one Web API call: once, or with retries.
type runner func(ctx context.Context, op string, call func(context.Context) error) error

func (c *Chat) find(ctx context.Context, channel string, tag notify.CardTag, since time.Time, run runner) (notify.CardRef, bool, error) {
	id, err := c.channelID(ctx, channel, run)
	if err != nil {
		return notify.CardRef{}, false, err
	}
	params := &slack.GetConversationHistoryParameters{ChannelID: id, Limit: c.cfg.HistoryPageSize, IncludeAllMetadata: true}
	if !since.IsZero() {
		params.Oldest = formatTS(since.Add(-findSkew))
	}
	var oldest notify.CardRef
	found := false
	for range c.cfg.HistoryMaxPages {
		var h *slack.GetConversationHistoryResponse
		err := run(ctx, "slack conversations.history", func(ctx context.Context) error {
			var err error
			h, err = c.api.GetConversationHistoryContext(ctx, params)
			return err
		})
		if err != nil {
			return notify.CardRef{}, false, err
		}
		for _, m := range h.Messages {
			nonce, ok := cardOf(m, tag.IncidentID)
			if !ok {
				continue
			}
			ref := notify.CardRef{Channel: id, TS: m.Timestamp}
			if tag.Nonce != "" && nonce == tag.Nonce {
				return ref, true, nil
			}
			if !found || tsBefore(ref.TS, oldest.TS) {
				oldest, found = ref, true
			}
		}
		if !h.HasMore || h.ResponseMetaData.NextCursor == "" {
			return oldest, found, nil
		}
		params.Cursor = h.ResponseMetaData.NextCursor
	}
	c.log.Warn("card lookup stopped at its page limit; an older card may be missed",
		"channel", id, "incident", tag.IncidentID, "pages", c.cfg.HistoryMaxPages, "page_size", c.cfg.HistoryPageSize)
	return oldest, found, nil
}

// cardOf reports whether m is a card of incident, and its nonce.
func cardOf(m slack.Message, incident string) (nonce string, ok bool) {
	md := m.Metadata
	if md.EventType != CardEventType || m.SubType == "tombstone" || incident == "" {
		return "", false
	}
	if id, _ := md.EventPayload["incident_id"].(string); id != incident {
		return "", false
	}
	nonce, _ = md.EventPayload["nonce"].(string)
	return nonce, true
}

// channelID returns channel's id: channel itself when it is one, else the
// id of the channel of that name among those the bot is a member of.
func (c *Chat) channelID(ctx context.Context, channel string, run runner) (string, error) {
	channel = strings.TrimSpace(channel)
	if isChannelID(channel) {
		return channel, nil
	}
	const op = "slack users.conversations"
	name := channelName(channel)
	if name == "" {
		return "", &notify.Error{Op: op, Err: errors.New("no channel given")}
	}
	c.mu.Lock()
	id, ok := c.channelIDs[name]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	params := &slack.GetConversationsForUserParameters{
		Types: []string{"public_channel", "private_channel"}, Limit: 200, ExcludeArchived: true,
	}
	for range maxChannelPages {
		var chans []slack.Channel
		var next string
		err := run(ctx, op, func(ctx context.Context) error {
			var err error
			chans, next, err = c.api.GetConversationsForUserContext(ctx, params)
			return err
		})
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		for _, ch := range chans {
			c.channelIDs[channelName(ch.Name)] = ch.ID
		}
		id, ok := c.channelIDs[name]
		c.mu.Unlock()
		if ok {
			return id, nil
		}
		if next == "" {
			break
		}
		params.Cursor = next
	}
	return "", &notify.Error{Op: op, Err: fmt.Errorf(
		"channel %q is not among the channels the bot is a member of: invite the bot, or configure the channel's id", channel)}
}

// rememberChannel caches the id Slack answered for a channel posted to by
// name.
func (c *Chat) rememberChannel(channel, id string) {
	if isChannelID(channel) || !isChannelID(id) {
		return
	}
	if name := channelName(channel); name != "" {
		c.mu.Lock()
		c.channelIDs[name] = id
		c.mu.Unlock()
	}
}

// isChannelID reports whether s looks like a Slack conversation id
// ("C0123ABCD", "G…" for old private channels, "D…" for direct messages):
// ids are upper case, channel names lower case.
func isChannelID(s string) bool {
	if len(s) < 2 || !strings.ContainsRune("CGD", rune(s[0])) {
		return false
	}
	for _, r := range s[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// channelName normalises a channel name: no "#", lower case.
func channelName(s string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "#"))
}

// formatTS formats t as a Slack ts (seconds with six decimals).
func formatTS(t time.Time) string {
	us := t.UnixMicro()
	if us < 0 {
		us = 0
	}
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

// tsBefore reports whether Slack ts a is older than b.
func tsBefore(a, b string) bool {
	as, af, _ := strings.Cut(a, ".")
	bs, bf, _ := strings.Cut(b, ".")
	ai, aerr := strconv.ParseInt(as, 10, 64)
	bi, berr := strconv.ParseInt(bs, 10, 64)
	switch {
	case aerr != nil || berr != nil:
		return a < b
	case ai != bi:
		return ai < bi
	}
	return af < bf // six digits each: they compare as text
}
