// Package slack is incidentbot's Slack inbound: the /incident slash
// command and the incident card's buttons. Two transports feed one
// Handler: HTTP (POST /slack/commands and /slack/interactions, each request
// verified with the app's signing secret) and Socket Mode (a websocket the
// bot opens with an app-level token, for teams with no public ingress).
//
// Slack wants an answer within 3 seconds. Reads (list, show, rpc, flags,
// report) answer from the engine's records at once, ephemerally. Changes
// (ack, unack, resolve, note, escalate) are checked against the incident's
// record, then sent as commands on the bus (command.Sender): the answer
// says "accepted" only once the bus holds the command durably, and the
// engine then posts the change in the incident's thread and edits its card.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/rpcview"
)

// Transports a request can come through, as the audit trail names them.
const (
	TransportHTTP   = "http"
	TransportSocket = "socket"
)

// Incidents reads incident records (the engine).
type Incidents interface {
	Get(ctx context.Context, id string) (*engine.Record, error)
	Incidents(ctx context.Context) (map[string]*engine.Record, error)
}

// Sender publishes a person's command durably (command.Sender).
type Sender interface {
	Send(ctx context.Context, c command.Command) (engine.Ref, error)
}

// Silencer silences an incident's alerts in Alertmanager and expires that
// silence. Each returns the sentence to show the person who asked.
// requestID identifies the request, so asking twice silences once.
type Silencer interface {
	Silence(ctx context.Context, incident string, d time.Duration, by input.Actor, requestID string) (string, error)
	Unsilence(ctx context.Context, incident string, by input.Actor, requestID string) (string, error)
}

// Reporter renders an incident's report (Markdown: timeline, time to
// acknowledge, time to resolve, escalations).
type Reporter interface {
	Report(ctx context.Context, incident string) (string, error)
}

// Flag is one feature flag and its state.
type Flag struct {
	Name    string
	Enabled bool
}

// FlagReader lists the feature flags, read-only.
type FlagReader interface {
	Flags(ctx context.Context) ([]Flag, error)
}

// What to set for a part this bot was built or configured without.
const (
	hintSilencer = "silences need Alertmanager's API: set alertmanager.url"
	hintReporter = "reports need the report builder wired to this handler (Options.Reporter; `serve` does)"
	hintFlags    = "flags are read from the app's Redis: set redis.url"
	hintRPC      = "the RPC view needs solana.endpoints (or `incidentbot watch` on a shared bus.url)"
)

// Options configure a Handler.
type Options struct {
	// Incidents and Sender are required: the engine and a command.Sender.
	Incidents Incidents
	Sender    Sender
	// RPC, Silencer, Reporter and Flags are optional; without one, its
	// commands answer what to configure.
	RPC      rpcview.Reader
	Silencer Silencer
	Reporter Reporter
	Flags    FlagReader
	// Steps resolves remediation steps for run, approve and deny (nil:
	// they answer what to configure); Approvers matches a voter against a
	// step's approvers (nil: user ids only; Access implements it).
	Steps     Steps
	Approvers Approvers
	// Freezer is the remediation kill switch (the engine); nil: freeze and
	// unfreeze answer what to configure.
	Freezer Freezer
	// Access restricts who may use the commands and buttons; nil lets
	// everyone in the workspace.
	Access *Access
	// Audit records refusals and clicks on stale cards; what changes an
	// incident is audited by the engine.
	Audit  bus.Auditor
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Deadline bounds the work done before answering Slack (default 2.5s,
	// within Slack's 3 s).
	Deadline time.Duration
	// Client posts answers to a button's response_url (default: a client
	// with a 10 s timeout).
	Client *http.Client
}

// Handler answers slash commands and button clicks, whatever the
// transport.
type Handler struct {
	o   Options
	log *slog.Logger
	wg  sync.WaitGroup
}

// New returns a Handler.
func New(o Options) (*Handler, error) {
	if o.Incidents == nil || o.Sender == nil {
		return nil, errors.New("slack inbound: incidents and sender are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Deadline <= 0 {
		o.Deadline = 2500 * time.Millisecond
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Handler{o: o, log: o.Logger}, nil
}

// Reply is what the person who asked sees: ephemeral unless InChannel.
type Reply struct {
	Text      string
	InChannel bool
}

// maxReplyText keeps a reply well below Socket Mode's 20 KB per answer.
const maxReplyText = 12000

// Payload is the reply as Slack takes it in an HTTP answer, a Socket Mode
// acknowledgement or a response_url post.
func (r Reply) Payload() map[string]any {
	text := r.Text
	if len(text) > maxReplyText {
		cut := maxReplyText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "\n… (cut: too long for Slack)"
	}
	typ := "ephemeral"
	if r.InChannel {
		typ = "in_channel"
	}
	return map[string]any{"response_type": typ, "text": text}
}

// who is the Slack user behind a request.
func who(id, name, transport string) input.Actor {
	return input.Actor{ID: id, Name: name, Via: "slack", Transport: transport}
}

// SlashCommand answers one /incident command. requestID identifies the
// request when Slack gave no trigger_id (the Socket Mode envelope id, or
// the HTTP request's timestamp and signature).
func (h *Handler) SlashCommand(ctx context.Context, sc slack.SlashCommand, transport, requestID string) Reply {
	ctx, cancel := context.WithTimeout(ctx, h.o.Deadline)
	defer cancel()
	by := who(sc.UserID, sc.UserName, transport)
	log := h.log.With("user", sc.UserID, "transport", transport)
	req, err := Parse(sc.Text)
	if err != nil {
		return Reply{Text: "⚠️ " + esc(err.Error()) + "\n" + Usage(sc.Command)}
	}
	if req.Verb == VerbHelp {
		return Reply{Text: Usage(sc.Command)}
	}
	if r, ok := h.refuse(ctx, by, req.String()); !ok {
		return r
	}
	if sc.TriggerID != "" {
		requestID = sc.TriggerID
	}
	requestID = "slash:" + requestID
	log.Info("slack command", "verb", req.Verb, "incident", req.Incident)
	switch req.Verb {
	case VerbList:
		return h.list(ctx)
	case VerbShow:
		return h.show(ctx, req.Incident)
	case VerbRPC:
		return h.rpc(ctx)
	case VerbFlags:
		return h.flags(ctx)
	case VerbReport:
		return h.report(ctx, req.Incident)
	case VerbSilence:
		return h.silence(ctx, by, req.Incident, req.Duration, requestID, false)
	case VerbUnsilence:
		return h.unsilence(ctx, by, req.Incident, requestID)
	case VerbFreeze, VerbUnfreeze:
		return h.freeze(ctx, by, req.Verb == VerbFreeze, req.Text, requestID)
	case VerbRun, VerbApprove, VerbDeny:
		kind := map[Verb]input.Kind{VerbRun: input.Request, VerbApprove: input.Approve, VerbDeny: input.Deny}[req.Verb]
		return h.step(ctx, by, kind, req.Incident, req.Step, "", requestID, false)
	}
	kind := map[Verb]input.Kind{VerbAck: input.Ack, VerbUnack: input.Unack, VerbResolve: input.Resolve,
		VerbNote: input.Note, VerbEscalate: input.Escalate, VerbRefresh: input.Refresh}[req.Verb]
	return h.change(ctx, by, kind, req.Incident, req.Text, requestID, false)
}

// buttonKinds maps the card's buttons to the command each sends.
var buttonKinds = map[string]input.Kind{
	nslack.ActionAck: input.Ack, nslack.ActionResolve: input.Resolve, nslack.ActionEscalate: input.Escalate,
}

// Interaction answers a click on a card button. ok is false for
// interactions that are not incidentbot's (nothing to answer).
func (h *Handler) Interaction(ctx context.Context, ic slack.InteractionCallback, transport string) (reply Reply, ok bool) {
	if ic.Type != slack.InteractionTypeBlockActions || len(ic.ActionCallback.BlockActions) == 0 {
		return Reply{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, h.o.Deadline)
	defer cancel()
	name := ic.User.Name
	if name == "" {
		name = ic.User.Username
	}
	by := who(ic.User.ID, name, transport)
	a := ic.ActionCallback.BlockActions[0]
	if kind, ok := stepButtonKinds[a.ActionID]; ok {
		return h.stepButton(ctx, ic, a, by, kind, transport), true
	}
	kind, known := buttonKinds[a.ActionID]
	if !known && a.ActionID != nslack.ActionSilence {
		return Reply{}, false
	}
	id, version, valid := nslack.ParseButtonValue(a.Value)
	if !valid {
		return Reply{Text: "⚠️ This button carries no incident id incidentbot can read; use `/incident` instead."}, true
	}
	if r, ok := h.refuse(ctx, by, a.ActionID+" "+id); !ok {
		return r, true
	}
	// A double click carries the same user, button, incident and card
	// version, so it sends the same request: the bus stores it once. A
	// card without a version cannot say that, so each click counts and
	// the record's state is what stops a second one.
	requestID := fmt.Sprintf("button:%s:%s:%s:v%d", ic.User.ID, a.ActionID, engine.NormalizeID(id), version)
	if version == 0 {
		requestID += ":" + a.ActionTs
	}
	h.log.Info("slack button", "action", a.ActionID, "incident", id, "card_version", version, "user", ic.User.ID, "transport", transport)
	if a.ActionID == nslack.ActionSilence {
		return h.silence(ctx, by, id, time.Hour, requestID, true), true
	}
	return h.change(ctx, by, kind, id, "", requestID, true), true
}

// stepButtonKinds maps a remediation step's buttons to the input each
// sends.
var stepButtonKinds = map[string]input.Kind{
	nslack.ActionStepRequest: input.Request, nslack.ActionStepApprove: input.Approve, nslack.ActionStepDeny: input.Deny,
}

// stepButton answers a click on a step's Request (Run), Approve or Deny: the
// same path as /incident run|approve|deny, bound to the plan hash the card
// showed.
func (h *Handler) stepButton(ctx context.Context, ic slack.InteractionCallback, a *slack.BlockAction, by input.Actor, kind input.Kind, transport string) Reply {
	id, version, step, hash, valid := nslack.ParseStepButtonValue(a.Value)
	if !valid {
		return Reply{Text: "⚠️ This button carries no step incidentbot can read; use `/incident run|approve|deny ID STEP` instead."}
	}
	if r, ok := h.refuse(ctx, by, a.ActionID+" "+id+" "+step); !ok {
		return r
	}
	// A double click carries the same user, button, card version and
	// plan: the same request, stored once by the bus. A later card (a new
	// version) may ask again.
	requestID := fmt.Sprintf("button:%s:%s:%s:v%d:%s:%s", ic.User.ID, a.ActionID, engine.NormalizeID(id), version, step, hash)
	h.log.Info("slack step button", "action", a.ActionID, "incident", id, "step", step, "plan", hash,
		"card_version", version, "user", ic.User.ID, "transport", transport)
	return h.step(ctx, by, kind, id, step, hash, requestID, true)
}

// Respond posts reply to a response_url in the background: Slack shows
// nothing of the immediate answer to a button click.
func (h *Handler) Respond(responseURL string, reply Reply) {
	u, err := url.Parse(responseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || reply.Text == "" {
		return
	}
	p := reply.Payload()
	p["replace_original"] = false
	body, _ := json.Marshal(p)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, responseURL, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.o.Client.Do(req)
		if err != nil {
			h.log.Warn("slack response_url post failed", "err", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			h.log.Warn("slack response_url post refused", "status", resp.StatusCode)
		}
	}()
}

// Wait waits for the answers being posted to response_urls.
func (h *Handler) Wait() { h.wg.Wait() }

// refuse answers a user the allow lists leave out, and audits it.
func (h *Handler) refuse(ctx context.Context, by input.Actor, what string) (Reply, bool) {
	ok, why := h.o.Access.Allowed(ctx, by.ID)
	if ok {
		return Reply{}, true
	}
	h.log.Warn("slack user refused", "user", by.ID, "name", by.Name, "transport", by.Transport, "asked", what)
	h.audit(ctx, "slack.refused", "", what+": "+why, by)
	return Reply{Text: "⛔ " + why}, false
}

// audit records a request that changed nothing: a refusal, a click on a
// stale card.
func (h *Handler) audit(ctx context.Context, kind, incident, detail string, by input.Actor) {
	if h.o.Audit == nil {
		return
	}
	r := bus.AuditRecord{Kind: kind, Incident: incident, Actor: by.String(), Detail: detail,
		Attrs: map[string]string{"actor_id": by.ID, "via": by.Via, "transport": by.Transport}}
	if err := h.o.Audit.Audit(context.WithoutCancel(ctx), r); err != nil {
		h.log.Error("audit append failed", "kind", r.Kind, "err", err)
	}
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// esc escapes text for Slack mrkdwn.
func esc(s string) string { return mrkdwnEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }
