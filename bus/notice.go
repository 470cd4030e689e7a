package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Notices are best-effort messages between the replicas sharing a bus, on
// core NATS under <prefix>.notices.<topic> (no stream holds them): not stored, not acknowledged, not
// redelivered, and missed by a replica that is down or reconnecting. They
// carry hints that make replicas cooperate (Slack closed a channel until a
// time), never state that must not be lost.

// Notice sends data to every replica listening on topic, this one
// included. It returns once the message is handed to the connection.
func (b *Bus) Notice(topic string, data []byte) error {
	if err := validSubject(topic, false); err != nil {
		return fmt.Errorf("notice %s: %w", topic, err)
	}
	if err := b.nc.Publish(b.Subject(noticePrefix+topic), data); err != nil {
		return fmt.Errorf("notice %s: %w", topic, mapErr(err))
	}
	return nil
}

// OnNotice calls fn, one at a time, with each notice sent on topic until
// ctx ends. It returns once subscribed.
func (b *Bus) OnNotice(ctx context.Context, topic string, fn func(data []byte)) error {
	if err := validSubject(topic, false); err != nil {
		return fmt.Errorf("listen for notices %s: %w", topic, err)
	}
	sub, err := b.nc.Subscribe(b.Subject(noticePrefix+topic), func(m *nats.Msg) {
		if ctx.Err() == nil { // none after ctx ends, even before the unsubscribe lands
			fn(m.Data)
		}
	})
	if err != nil {
		return fmt.Errorf("listen for notices %s: %w", topic, mapErr(err))
	}
	// Flush: the server knows of the subscription before we return.
	fctx, cancel := context.WithTimeout(ctx, noticeFlushTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("listen for notices %s: %w", topic, mapErr(err))
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return nil
}

const noticePrefix = "notices."

// noticeFlushTimeout bounds OnNotice's wait for the server.
const noticeFlushTimeout = 10 * time.Second
