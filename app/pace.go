package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
)

// paceTopic is the bus notice that carries a Slack Retry-After between
// replicas.
const paceTopic = "slack.retry_after"

// paceNotice says Slack closed channels (by the chat's gate keys) until a
// time.
type paceNotice struct {
	Channels []string  `json:"channels"`
	Until    time.Time `json:"until"`
}

// sharePace makes a Retry-After one replica gets from Slack hold every
// replica's calls into that channel: sent as a bus notice, applied by all.
// Notices are best effort: a replica that misses one gets its own 429.
func sharePace(s *Server, b *bus.Bus, c *nslack.Chat, log *slog.Logger) {
	c.SharePace(sendPace(b, log))
	s.Add(func(ctx context.Context) error {
		if err := listenPace(ctx, b, log, func(n paceNotice) { c.ClosedElsewhere(n.Channels, n.Until) }); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
}

// sendPace returns what tells the other replicas of a Retry-After.
func sendPace(b *bus.Bus, log *slog.Logger) func(channels []string, until time.Time) {
	return func(chs []string, until time.Time) {
		data, err := json.Marshal(paceNotice{Channels: chs, Until: until})
		if err == nil {
			err = b.Notice(paceTopic, data)
		}
		if err != nil {
			log.Warn("slack: could not tell the other replicas of a Retry-After", "err", err)
		}
	}
}

// listenPace calls apply with each Retry-After notice until ctx ends.
func listenPace(ctx context.Context, b *bus.Bus, log *slog.Logger, apply func(paceNotice)) error {
	err := b.OnNotice(ctx, paceTopic, func(data []byte) {
		var n paceNotice
		if err := json.Unmarshal(data, &n); err != nil {
			log.Warn("slack: a Retry-After notice that does not decode", "err", err)
			return
		}
		apply(n)
	})
	if err != nil {
		return fmt.Errorf("slack: listen for other replicas' Retry-After: %w", err)
	}
	return nil
}
