package slack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// change checks that the change still applies to the incident as it is
// now, then sends it as a command. The answer says "accepted" only after
// the bus has it.
func (h *Handler) change(ctx context.Context, by input.Actor, kind input.Kind, id, text, requestID string, card bool) Reply {
	rec, r, ok := h.get(ctx, id)
	if !ok {
		return r
	}
	if why := notApplicable(rec, kind, by); why != "" {
		h.audit(ctx, "slack.stale", rec.ID, string(kind)+": "+why, by)
		if card {
			why += " (The card you used is out of date.)"
		}
		return Reply{Text: why}
	}
	c := command.Command{Verb: kind, Incident: rec.ID, By: by, Text: text, RequestID: requestID, At: h.o.Now()}
	if _, err := h.o.Sender.Send(ctx, c); err != nil {
		h.log.Error("slack command not accepted", "incident", rec.ID, "verb", kind, "err", err)
		return Reply{Text: notAccepted(rec.ID, err)}
	}
	return Reply{Text: accepted(kind, rec.ID)}
}

// get reads the incident an id names, or says why it cannot.
func (h *Handler) get(ctx context.Context, id string) (*engine.Record, Reply, bool) {
	rec, err := h.o.Incidents.Get(ctx, id)
	switch {
	case errors.Is(err, engine.ErrNoIncident):
		return nil, Reply{Text: fmt.Sprintf("No incident %s. Ids look like INC-7F3A2C; `/incident list` shows the open ones.", esc(engine.NormalizeID(id)))}, false
	case err != nil:
		h.log.Error("slack: read incident", "incident", id, "err", err)
		return nil, Reply{Text: notAccepted(engine.NormalizeID(id), err)}, false
	}
	return rec, Reply{}, true
}

// notApplicable says why a change no longer applies to the incident as it
// is now (a click on a card that is out of date, a second click), or "".
func notApplicable(rec *engine.Record, kind input.Kind, by input.Actor) string {
	id := "*" + rec.ID + "*"
	if !rec.Open() && kind != input.Note {
		what := map[input.Kind]string{input.Ack: "acknowledge", input.Unack: "unacknowledge", input.Resolve: "resolve",
			input.Escalate: "escalate", silenceKind: "silence"}[kind]
		return fmt.Sprintf("%s is already resolved%s: nothing to %s.", id, resolvedBy(rec), what)
	}
	switch kind {
	case input.Ack:
		if rec.Ack != nil {
			if rec.Ack.By.Via == by.Via && rec.Ack.By.ID == by.ID {
				return fmt.Sprintf("You already acknowledged %s %s.", id, when(rec.Ack.At))
			}
			return fmt.Sprintf("%s is already acknowledged by %s %s.", id, esc(rec.Ack.By.String()), when(rec.Ack.At))
		}
	case input.Unack:
		if rec.Ack == nil {
			return fmt.Sprintf("%s is not acknowledged: nothing to withdraw.", id)
		}
	}
	return ""
}

// silenceKind stands for a silence in notApplicable.
const silenceKind input.Kind = "silence"

func resolvedBy(rec *engine.Record) string {
	s := ""
	if rec.ManualResolve != nil {
		s = " by " + esc(rec.ManualResolve.By.String())
	}
	if !rec.ResolvedAt.IsZero() {
		s += " " + when(rec.ResolvedAt)
	}
	return s
}

// when renders a time as Slack shows it to each reader, in their zone.
func when(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

func accepted(kind input.Kind, id string) string {
	id = "*" + id + "*"
	switch kind {
	case input.Ack:
		return "✅ Acknowledging " + id + ": accepted. The card and its thread will show it; escalation stops."
	case input.Unack:
		return "↩️ Withdrawing the acknowledgement of " + id + ": accepted. Escalation resumes."
	case input.Resolve:
		return "✅ Resolving " + id + ": accepted. The card and its thread will show it."
	case input.Note:
		return "📝 Note for " + id + " accepted: it will appear in the incident's thread."
	case input.Escalate:
		return "📣 Escalating " + id + " to its next level: accepted."
	case input.Refresh:
		return "🔄 Redrawing the card of " + id + ": accepted. Its steps are planned again as things are now."
	}
	return "Accepted for " + id + "."
}

func notAccepted(id string, err error) string {
	if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return "⚠️ Not accepted: the bot could not store the request in time. Nothing changed for *" + esc(id) + "*; try again."
	}
	return "⚠️ Not accepted for *" + esc(id) + "*: " + esc(err.Error())
}

func (h *Handler) silence(ctx context.Context, by input.Actor, id string, d time.Duration, requestID string, card bool) Reply {
	if h.o.Silencer == nil {
		return Reply{Text: "Not configured on this bot: " + hintSilencer + "."}
	}
	rec, r, ok := h.get(ctx, id)
	if !ok {
		return r
	}
	if why := notApplicable(rec, silenceKind, by); why != "" {
		h.audit(ctx, "slack.stale", rec.ID, "silence: "+why, by)
		if card {
			why += " (The card you used is out of date.)"
		}
		return Reply{Text: why}
	}
	text, err := h.o.Silencer.Silence(ctx, rec.ID, d, by, requestID)
	if err != nil {
		h.log.Error("slack silence failed", "incident", rec.ID, "err", err)
		return Reply{Text: "⚠️ Could not silence *" + rec.ID + "*: " + esc(err.Error())}
	}
	return Reply{Text: text}
}

func (h *Handler) unsilence(ctx context.Context, by input.Actor, id, requestID string) Reply {
	if h.o.Silencer == nil {
		return Reply{Text: "Not configured on this bot: " + hintSilencer + "."}
	}
	rec, r, ok := h.get(ctx, id)
	if !ok {
		return r
	}
	text, err := h.o.Silencer.Unsilence(ctx, rec.ID, by, requestID)
	if err != nil {
		h.log.Error("slack unsilence failed", "incident", rec.ID, "err", err)
		return Reply{Text: "⚠️ Could not expire the silence of *" + rec.ID + "*: " + esc(err.Error())}
	}
	return Reply{Text: text}
}

// status words for lists.
func statusWord(rec *engine.Record) string {
	switch rec.Status {
	case notify.StatusAcknowledged:
		return "acknowledged"
	case notify.StatusResolved:
		return "resolved"
	}
	return "firing"
}
