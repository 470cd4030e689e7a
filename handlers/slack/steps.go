package slack

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// Steps resolves an incident's remediation step as it would run now: its
// policy and the exact plan, whose hash a request and its votes bind to.
type Steps interface {
	Resolve(ctx context.Context, rec *engine.Record, step string) (engine.StepPolicy, actions.Plan, error)
}

// Approvers says which entry of a step's approvers a Slack user matches:
// their own user id, or a user group (id S… or handle @name) they are a
// member of; "" when none.
type Approvers interface {
	Match(ctx context.Context, user string, approvers []string) (string, error)
}

// Freezer reads the remediation kill switch, kept in KV so every replica
// obeys it at once (the engine). Turning it on or off is a command on the
// bus (command.Sender, verbs freeze and unfreeze), applied by the engine.
type Freezer interface {
	Frozen(ctx context.Context) (engine.Freeze, error)
}

// Breakers says why a runbook's circuit breaker is open ("" when closed);
// the engine is one.
type Breakers interface {
	BreakerOpen(ctx context.Context, runbook string) (string, error)
}

// freeze sends the freeze or unfreeze command; it is accepted once the bus
// has it, and the engine applies it (the key, the audit, every open card).
// The message id comes from the Slack request, so a retry is stored once.
func (h *Handler) freeze(ctx context.Context, by input.Actor, on bool, reason, requestID string) Reply {
	if h.o.Freezer == nil {
		return Reply{Text: "Not configured on this bot: " + hintSteps + "."}
	}
	verb := input.Unfreeze
	if on {
		verb = input.Freeze
	}
	c := command.Command{Verb: verb, By: by, Text: reason, RequestID: requestID, At: h.o.Now()}
	if _, err := h.o.Sender.Send(ctx, c); err != nil {
		h.log.Error("slack freeze not accepted", "on", on, "err", err)
		return Reply{Text: "⚠️ Not accepted: " + esc(err.Error())}
	}
	if on {
		return Reply{Text: "🧊 Freeze accepted: no step runs on any replica until `/incident unfreeze`. Every open card will say so."}
	}
	return Reply{Text: "Unfreeze accepted. Steps refused while frozen must be requested again."}
}

const hintSteps = "remediation steps need the runbooks' actions wired to this handler (Options.Steps and Freezer; `serve` does)"

// step requests a remediation step (run) or votes on its request (approve,
// deny), for the plan as it resolves now. A person who may not vote is
// refused here, ephemerally, and nothing is sent. seen is the (short) plan
// hash a card button showed, "" from a command: when the plan resolves to
// another hash now, nothing is sent.
func (h *Handler) step(ctx context.Context, by input.Actor, kind input.Kind, id, step, seen, requestID string, card bool) Reply {
	if h.o.Steps == nil {
		return Reply{Text: "Not configured on this bot: " + hintSteps + "."}
	}
	if h.o.Freezer != nil {
		f, err := h.o.Freezer.Frozen(ctx)
		if err != nil {
			return Reply{Text: notAccepted(id, err)}
		}
		if f.On {
			return Reply{Text: "🧊 " + esc(f.String()) + ": nothing is requested, approved or run."}
		}
	}
	rec, r, ok := h.get(ctx, id)
	if !ok {
		return r
	}
	if !rec.Open() {
		return Reply{Text: fmt.Sprintf("*%s* is already resolved%s: no remediation runs for it.", rec.ID, resolvedBy(rec))}
	}
	if b, ok := h.o.Freezer.(Breakers); ok && kind == input.Request && !strings.HasPrefix(step, engine.RevertPrefix) {
		if why, err := b.BreakerOpen(ctx, rec.Runbook); err != nil {
			return Reply{Text: notAccepted(id, err)}
		} else if why != "" {
			return Reply{Text: "🔌 " + esc(why) + ": `" + esc(step) + "` cannot be requested until it closes."}
		}
	}
	pol, plan, err := h.o.Steps.Resolve(ctx, rec, step)
	if err != nil {
		return Reply{Text: "⚠️ Cannot plan `" + esc(step) + "` for *" + rec.ID + "*: " + esc(err.Error())}
	}
	if seen != "" && !strings.HasPrefix(plan.Hash, seen) {
		h.audit(ctx, "slack.stale", rec.ID, fmt.Sprintf("%s %s: plan %s on the card, %s now", kind, step, seen, short(plan.Hash)), by)
		// The card cannot know: a plan follows the systems it acts on,
		// not the incident. Have it drawn again with the plan of now.
		redraw := "it is being redrawn with the plan as it is now: look again"
		c := command.Command{Verb: input.Refresh, Incident: rec.ID, By: by, RequestID: requestID + ":refresh", At: h.o.Now()}
		if _, err := h.o.Sender.Send(ctx, c); err != nil {
			h.log.Warn("slack: card redraw not sent", "incident", rec.ID, "err", err)
			redraw = "look again with `/incident refresh " + rec.ID + "`"
		}
		return Reply{Text: fmt.Sprintf("🔄 The plan changed since this card was drawn; %s. (`%s`: plan %s on the card, %s now: `%s`. Nothing was sent.)",
			redraw, esc(step), esc(seen), short(plan.Hash), esc(notify.Truncate(plan.Text, 300)))}
	}
	c := command.Command{Verb: kind, Incident: rec.ID, By: by, Step: step, Hash: plan.Hash, Text: plan.Text, RequestID: requestID, At: h.o.Now()}
	if kind == input.Request {
		if why := requested(rec.Steps[step], plan.Hash, h.o.Now()); why != "" {
			if card {
				why += " (The card you used is out of date.)"
			}
			return Reply{Text: why}
		}
	}
	if kind != input.Request {
		req := rec.Steps[step]
		if req == nil {
			return Reply{Text: fmt.Sprintf("Nobody requested `%s` for *%s*: request it first with `/incident run %s %s`.", esc(step), rec.ID, rec.ID, esc(step))}
		}
		as := ""
		if h.o.Approvers != nil {
			if as, err = h.o.Approvers.Match(ctx, by.ID, pol.Approval.Approvers); err != nil {
				h.log.Warn("slack: approvers not resolved", "step", step, "err", err)
			}
		} else if slices.Contains(pol.Approval.Approvers, by.ID) {
			as = by.ID
		}
		if ok, why := engine.MayApprove(pol.Approval, by, as, req.Requested.By); !ok {
			h.audit(ctx, "slack.refused", rec.ID, string(kind)+" "+step+": "+why, by)
			return Reply{Text: "⛔ " + esc(why)}
		}
		if req.State != engine.DecisionPending {
			why := fmt.Sprintf("The request for `%s` is already %s: %s", esc(step), req.State, esc(req.Reason))
			if card {
				why += " (The card you used is out of date.)"
			}
			return Reply{Text: why}
		}
		c.As = as
	}
	if _, err := h.o.Sender.Send(ctx, c); err != nil {
		h.log.Error("slack command not accepted", "incident", rec.ID, "verb", kind, "step", step, "err", err)
		return Reply{Text: notAccepted(rec.ID, err)}
	}
	switch kind {
	case input.Request:
		if pol.Automatic {
			return Reply{Text: fmt.Sprintf("▶️ Running `%s` for *%s* (automatic step): accepted.\nPlan: %s", esc(step), rec.ID, esc(plan.Text))}
		}
		return Reply{Text: fmt.Sprintf("🙋 Requested `%s` for *%s*: accepted. It needs %s.\nPlan: %s", esc(step), rec.ID, esc(pol.Approval.String()), esc(plan.Text))}
	case input.Approve:
		return Reply{Text: fmt.Sprintf("👍 Your approval of `%s` for *%s* is accepted; the card shows the votes.", esc(step), rec.ID)}
	}
	return Reply{Text: fmt.Sprintf("👎 Your denial of `%s` for *%s* is accepted.", esc(step), rec.ID)}
}

// requested says why a request for the plan with hash would change
// nothing (it is already requested, approved or ran), or "".
func requested(req *engine.StepRequest, hash string, now time.Time) string {
	if req == nil || req.Hash != hash {
		return ""
	}
	switch {
	case req.State == engine.DecisionPending && now.Before(req.ExpiresAt):
		return fmt.Sprintf("`%s` is already requested by %s for this plan (%s): approvers can approve it on the card.",
			esc(req.Step), esc(req.Requested.By.String()), esc(req.Reason))
	case req.State == engine.DecisionApproved && req.Run != nil && req.Run.Hash == hash && req.Run.Result != "":
		return fmt.Sprintf("`%s` already ran for this plan (%s): it never runs twice; retry by hand.", esc(req.Step), esc(req.Run.Result))
	case req.State == engine.DecisionApproved:
		return fmt.Sprintf("`%s` is already approved for this plan: %s.", esc(req.Step), esc(req.Reason))
	}
	return ""
}

func short(hash string) string { return hash[:min(len(hash), 12)] }

// UserGroups lists the workspace's user groups (usergroups.list;
// *slack.Client has it), to find a group by its handle.
type UserGroups interface {
	GetUserGroupsContext(ctx context.Context, opts ...slack.GetUserGroupsOption) ([]slack.UserGroup, error)
}

// Match implements Approvers with the same cached group lookups the allow
// lists use: a user id entry matches that user; a group entry (S… or
// @handle) matches its members.
func (a *Access) Match(ctx context.Context, user string, approvers []string) (string, error) {
	if slices.Contains(approvers, user) {
		return user, nil
	}
	var errs []string
	for _, ap := range approvers {
		group := ap
		switch {
		case strings.HasPrefix(ap, "@"):
			id, err := a.groupByHandle(ctx, strings.TrimPrefix(ap, "@"))
			if err != nil {
				errs = append(errs, ap+": "+err.Error())
				continue
			}
			group = id
		case strings.HasPrefix(ap, "S"):
		default:
			continue
		}
		members, err := a.members(ctx, group)
		if err != nil {
			errs = append(errs, ap+": "+err.Error())
			continue
		}
		if members[user] {
			return ap, nil
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("could not check %s", strings.Join(errs, "; "))
	}
	return "", nil
}

// groupByHandle finds a user group's id by its handle, cached like members.
func (a *Access) groupByHandle(ctx context.Context, handle string) (string, error) {
	a.mu.Lock()
	c, ok := a.cache["handle:"+handle]
	a.mu.Unlock()
	if ok && a.now().Sub(c.at) < a.ttl {
		for id := range c.members {
			return id, nil
		}
	}
	ug, can := a.api.(UserGroups)
	if !can || a.api == nil {
		return "", fmt.Errorf("no Slack token to read user groups with")
	}
	groups, err := ug.GetUserGroupsContext(ctx)
	if err != nil {
		if ok {
			for id := range c.members {
				return id, nil
			}
		}
		return "", err
	}
	now := a.now()
	found := ""
	a.mu.Lock()
	for _, g := range groups {
		a.cache["handle:"+g.Handle] = groupMembers{members: map[string]bool{g.ID: true}, at: now}
		if g.Handle == handle {
			found = g.ID
		}
	}
	a.mu.Unlock()
	if found == "" {
		return "", fmt.Errorf("no user group @%s", handle)
	}
	return found, nil
}
