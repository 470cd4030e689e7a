package slacktestutil

import (
	"encoding/json"
	"net/url"
)

// Identity of the fake bot, as its messages carry it in history.
const (
	botUserID = "U0TESTBOT1"
	botID     = "B0TESTBOT1"
	appID     = "A0TESTAPP1"
	teamID    = "T0TESTTEAM"
)

// post serves chat.postMessage (under s.mu). A channel name resolves to
// its id (a new channel the first time, as if every channel existed and
// the bot were a member); Slack answers with the id.
func (s *Server) post(form url.Values) map[string]any {
	m := Message{
		Method:   PostMessage,
		Channel:  form.Get("channel"),
		ThreadTS: form.Get("thread_ts"),
		Text:     form.Get("text"),
		Form:     form,
	}
	if b := form.Get("blocks"); b != "" {
		m.Blocks = json.RawMessage(b)
	}
	meta, code := parseMetadata(form)
	if code != "" {
		return okFalse(code)
	}
	m.Metadata = meta
	c := s.chans.resolve(m.Channel)
	if c == nil {
		return okFalse("channel_not_found")
	}
	m.ChannelID = c.id

	if m.ThreadTS != "" {
		key := c.id + "/" + m.ThreadTS
		if _, ok := s.cards[key]; !ok {
			return okFalse("thread_not_found")
		}
		m.TS = s.newTS()
		s.threads[key] = append(s.threads[key], m)
	} else {
		m.TS = s.newTS()
		card := m
		s.cards[c.id+"/"+m.TS] = &card
		c.timeline = append(c.timeline, m.TS)
	}
	s.calls = append(s.calls, m)
	return okMessage(m)
}

// update serves chat.update (under s.mu).
func (s *Server) update(form url.Values) map[string]any {
	m := Message{
		Method:  Update,
		Channel: form.Get("channel"),
		TS:      form.Get("ts"),
		Text:    form.Get("text"),
		Form:    form,
	}
	if b := form.Get("blocks"); b != "" {
		m.Blocks = json.RawMessage(b)
	}
	meta, code := parseMetadata(form)
	if code != "" {
		return okFalse(code)
	}
	m.Metadata = meta
	if m.Channel == "" {
		return okFalse("channel_not_found")
	}
	c := s.chans.lookup(m.Channel)
	if c == nil {
		if isChannelID(m.Channel) {
			return okFalse("message_not_found")
		}
		return okFalse("channel_not_found")
	}
	m.ChannelID = c.id
	card, ok := s.cards[c.id+"/"+m.TS]
	if !ok {
		return okFalse("message_not_found")
	}
	card.Text, card.Blocks = m.Text, m.Blocks
	if _, ok := form["metadata"]; ok {
		card.Metadata = meta // an empty object removes it
	}
	s.calls = append(s.calls, m)
	return okMessage(m)
}

func okMessage(m Message) map[string]any {
	msg := map[string]any{
		"type": "message", "text": m.Text, "ts": m.TS, "user": botUserID, "bot_id": botID, "app_id": appID, "team": teamID,
	}
	if m.ThreadTS != "" {
		msg["thread_ts"] = m.ThreadTS
	}
	return map[string]any{"ok": true, "channel": m.ChannelID, "ts": m.TS, "text": m.Text, "message": msg}
}

// parseMetadata checks the metadata field as Slack does: absent, an empty
// object (no metadata), or an object with an event_type and an
// event_payload object. It returns the metadata to keep and an error code.
func parseMetadata(form url.Values) (json.RawMessage, string) {
	raw := form.Get("metadata")
	if raw == "" {
		return nil, ""
	}
	var md struct {
		EventType    *string         `json:"event_type"`
		EventPayload json.RawMessage `json:"event_payload"`
	}
	if err := json.Unmarshal([]byte(raw), &md); err != nil {
		return nil, "invalid_metadata_format"
	}
	if md.EventType == nil && md.EventPayload == nil {
		return nil, "" // {}: no metadata
	}
	var payload map[string]any
	if md.EventType == nil || *md.EventType == "" || json.Unmarshal(md.EventPayload, &payload) != nil || payload == nil {
		return nil, "invalid_metadata_schema"
	}
	return json.RawMessage(raw), ""
}
