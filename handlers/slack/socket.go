package slack

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// Socket serves Slack's requests over Socket Mode: the bot opens a
// websocket with the app-level token (apps.connections.open) and Slack
// sends each slash command and click over it to one of the app's
// connections. Every replica may hold one; whichever gets a request
// answers it through the same Handler and the bus, so it does not matter
// which.
type Socket struct {
	h      *Handler
	client *socketmode.Client
	sh     *socketmode.SocketmodeHandler
	log    *slog.Logger
	m      *metrics
	ctx    context.Context
	// MaxBackoff caps the wait before reconnecting after Slack refused or
	// dropped the connection.
	MaxBackoff time.Duration
}

// NewSocket returns the Socket Mode transport of h over api, which must
// carry the app-level token (slack.OptionAppLevelToken). reg receives its
// metrics (nil: none).
func NewSocket(h *Handler, api *slack.Client, reg prometheus.Registerer) (*Socket, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	log := h.log.With("transport", TransportSocket)
	s := &Socket{h: h, log: log, m: m, MaxBackoff: time.Minute}
	s.client = socketmode.New(api, socketmode.OptionLog(slogPrinter{log}))
	s.sh = socketmode.NewSocketmodeHandler(s.client)
	s.sh.Handle(socketmode.EventTypeSlashCommand, s.slashCommand)
	s.sh.Handle(socketmode.EventTypeInteractive, s.interaction)
	s.sh.HandleDefault(s.lifecycle)
	return s, nil
}

// Run holds the connection until ctx is done, reconnecting with backoff
// when Slack refuses it (a bad app token, a network outage): Slack being
// unreachable must not stop the rest of the bot.
func (s *Socket) Run(ctx context.Context) error {
	s.ctx = ctx
	go func() {
		for {
			select {
			case evt := <-s.client.Events:
				s.sh.DispatchEvent(evt)
			case <-ctx.Done():
				return
			}
		}
	}()
	backoff := time.Second
	for {
		err := s.client.RunContext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Error("slack socket mode connection failed; retrying", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, s.MaxBackoff)
	}
}

func (s *Socket) slashCommand(evt *socketmode.Event, c *socketmode.Client) {
	start := time.Now()
	sc, ok := evt.Data.(slack.SlashCommand)
	if !ok || evt.Request == nil {
		return
	}
	reply := s.h.SlashCommand(s.ctx, sc, TransportSocket, evt.Request.EnvelopeID)
	if err := c.Ack(*evt.Request, reply.Payload()); err != nil {
		s.log.Error("slack socket mode: ack failed", "envelope", evt.Request.EnvelopeID, "err", err)
		s.m.requests.WithLabelValues(TransportSocket, "command", "ack_failed").Inc()
		return
	}
	s.m.requests.WithLabelValues(TransportSocket, "command", "ok").Inc()
	s.m.duration.WithLabelValues(TransportSocket, "command").Observe(time.Since(start).Seconds())
}

func (s *Socket) interaction(evt *socketmode.Event, c *socketmode.Client) {
	start := time.Now()
	ic, ok := evt.Data.(slack.InteractionCallback)
	if !ok || evt.Request == nil {
		return
	}
	reply, answer := s.h.Interaction(s.ctx, ic, TransportSocket)
	if err := c.Ack(*evt.Request); err != nil {
		s.log.Error("slack socket mode: ack failed", "envelope", evt.Request.EnvelopeID, "err", err)
		s.m.requests.WithLabelValues(TransportSocket, "interaction", "ack_failed").Inc()
	}
	if answer {
		s.h.Respond(ic.ResponseURL, reply)
	}
	s.m.requests.WithLabelValues(TransportSocket, "interaction", "ok").Inc()
	s.m.duration.WithLabelValues(TransportSocket, "interaction").Observe(time.Since(start).Seconds())
}

// lifecycle logs the connection's events; Events API events are not
// incidentbot's and are acknowledged so Slack does not resend them.
func (s *Socket) lifecycle(evt *socketmode.Event, c *socketmode.Client) {
	switch evt.Type {
	case socketmode.EventTypeConnected:
		s.log.Info("slack socket mode connected")
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth, socketmode.EventTypeIncomingError,
		socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		s.log.Warn("slack socket mode: "+string(evt.Type), "detail", fmt.Sprint(evt.Data))
	case socketmode.EventTypeEventsAPI:
		if evt.Request != nil {
			_ = c.Ack(*evt.Request)
		}
	default:
		s.log.Debug("slack socket mode: " + string(evt.Type))
	}
}

// slogPrinter sends slack-go's socket mode log lines to slog at debug.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Output(_ int, s string) error {
	p.log.Debug(s)
	return nil
}
