package slacktestutil

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// channel is one channel of the fake workspace.
type channel struct {
	id   string
	name string // "" for a channel only ever addressed by id
	// timeline lists the ts of its top-level messages, oldest first.
	timeline []string
}

// directory maps channel names and ids to channels (under Server.mu).
type directory struct {
	byID   map[string]*channel
	byName map[string]string
	seq    int
}

func newDirectory() directory {
	return directory{byID: map[string]*channel{}, byName: map[string]string{}}
}

// isChannelID reports whether s looks like a Slack conversation id
// ("C0123ABCD", "G…", "D…"): Slack ids are upper case, names lower case.
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

func channelName(s string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "#"))
}

// lookup finds the channel an id or name refers to, or nil.
func (d *directory) lookup(ref string) *channel {
	if isChannelID(ref) {
		return d.byID[ref]
	}
	return d.byID[d.byName[channelName(ref)]]
}

// resolve is lookup, creating the channel when it is new.
func (d *directory) resolve(ref string) *channel {
	if c := d.lookup(ref); c != nil {
		return c
	}
	c := &channel{}
	switch name := channelName(ref); {
	case isChannelID(ref):
		c.id = ref
	case name == "":
		return nil
	default:
		for c.id == "" || d.byID[c.id] != nil {
			d.seq++
			c.id = fmt.Sprintf("C0TEST%04d", d.seq)
		}
		c.name = name
		d.byName[name] = c.id
	}
	d.byID[c.id] = c
	return c
}

// ChannelID returns the id of the channel named name ("#alerts" or
// "alerts"), creating the channel if it does not exist yet. An id is
// returned as it is.
func (s *Server) ChannelID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.chans.resolve(name); c != nil {
		return c.id
	}
	return ""
}

// newTS hands out the next message ts: the clock in microseconds, always
// above the last one (under s.mu).
func (s *Server) newTS() string {
	us := s.now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	return formatTS(us)
}

func formatTS(us int64) string { return fmt.Sprintf("%d.%06d", us/1e6, us%1e6) }

// parseTS reads a ts ("1700000000.000001", "1700000000" or "0") as
// microseconds.
func parseTS(ts string) (int64, bool) {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || len(frac) > 6 {
		return 0, false
	}
	var us int64
	if frac != "" {
		f, err := strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil {
			return 0, false
		}
		us = f
	}
	return s*1e6 + us, true
}

// TSTime converts a Slack ts to the time it stands for.
func TSTime(ts string) time.Time {
	us, _ := parseTS(ts)
	return time.UnixMicro(us)
}

func truthy(s string) bool { return s == "1" || s == "true" }

// limit reads a limit field: def when absent or not positive, at most max.
func limit(form url.Values, def, max int) int {
	n, err := strconv.Atoi(form.Get("limit"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, max)
}

// history serves conversations.history (under s.mu): top-level messages
// between oldest and latest, newest first, limit per page, paged with an
// opaque cursor; metadata only with include_all_metadata, as on Slack.
// Like Slack it wants a channel id: a name is channel_not_found.
func (s *Server) history(form url.Values) map[string]any {
	c := s.chans.lookup(form.Get("channel"))
	if c == nil || !isChannelID(form.Get("channel")) {
		return okFalse("channel_not_found")
	}
	inclusive := truthy(form.Get("inclusive"))
	lo, hi := int64(0), int64(1<<62)
	if v := form.Get("oldest"); v != "" {
		us, ok := parseTS(v)
		if !ok {
			return okFalse("invalid_ts_oldest")
		}
		lo = us
	}
	if v := form.Get("latest"); v != "" {
		us, ok := parseTS(v)
		if !ok {
			return okFalse("invalid_ts_latest")
		}
		hi = us
	}
	start := int64(1 << 62) // the cursor: the first ts of this page, included
	if cur := form.Get("cursor"); cur != "" {
		b, err := base64.StdEncoding.DecodeString(cur)
		rest, found := strings.CutPrefix(string(b), "next_ts:")
		us, perr := strconv.ParseInt(rest, 10, 64)
		if err != nil || !found || perr != nil {
			return okFalse("invalid_cursor")
		}
		start = us
	}
	n := limit(form, 100, 999)
	withMeta := truthy(form.Get("include_all_metadata"))

	var page []map[string]any
	next := ""
	for _, ts := range slices.Backward(c.timeline) {
		us, _ := parseTS(ts)
		if us > start || us > hi || us < lo {
			continue
		}
		if !inclusive && ((form.Get("oldest") != "" && us == lo) || (form.Get("latest") != "" && us == hi)) {
			continue
		}
		if len(page) == n {
			next = base64.StdEncoding.EncodeToString([]byte("next_ts:" + strconv.FormatInt(us, 10)))
			break
		}
		page = append(page, s.historyMessage(c, ts, withMeta))
	}
	if page == nil {
		page = []map[string]any{}
	}
	return map[string]any{
		"ok": true, "messages": page, "has_more": next != "", "pin_count": 0,
		"response_metadata": map[string]any{"next_cursor": next},
	}
}

// historyMessage is a card as conversations.history shows it.
func (s *Server) historyMessage(c *channel, ts string, withMeta bool) map[string]any {
	card := s.cards[c.id+"/"+ts]
	msg := map[string]any{
		"type": "message", "user": botUserID, "bot_id": botID, "app_id": appID, "team": teamID,
		"text": card.Text, "ts": card.TS,
	}
	if card.Blocks != nil {
		msg["blocks"] = card.Blocks
	}
	if replies := s.threads[c.id+"/"+ts]; len(replies) > 0 {
		msg["thread_ts"], msg["reply_count"], msg["latest_reply"] = ts, len(replies), replies[len(replies)-1].TS
	}
	if withMeta && card.Metadata != nil {
		msg["metadata"] = card.Metadata
	}
	return msg
}

// userConversations serves users.conversations (under s.mu): the named
// channels, all public and with the bot a member, sorted by id, paged.
func (s *Server) userConversations(form url.Values) map[string]any {
	types := form.Get("types")
	if types == "" {
		types = "public_channel"
	}
	var ids []string
	if slices.Contains(strings.Split(types, ","), "public_channel") {
		for id, c := range s.chans.byID {
			if c.name != "" {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	if cur := form.Get("cursor"); cur != "" {
		b, err := base64.StdEncoding.DecodeString(cur)
		after, found := strings.CutPrefix(string(b), "channel:")
		if err != nil || !found {
			return okFalse("invalid_cursor")
		}
		i, _ := slices.BinarySearch(ids, after)
		ids = ids[i:]
	}
	n := limit(form, 100, 999)
	next := ""
	if len(ids) > n {
		next = base64.StdEncoding.EncodeToString([]byte("channel:" + ids[n]))
		ids = ids[:n]
	}
	chans := []map[string]any{}
	for _, id := range ids {
		chans = append(chans, map[string]any{
			"id": id, "name": s.chans.byID[id].name, "is_channel": true, "is_group": false, "is_im": false,
			"is_private": false, "is_archived": false, "is_member": true, "created": 1700000000,
		})
	}
	return map[string]any{"ok": true, "channels": chans, "response_metadata": map[string]any{"next_cursor": next}}
}
