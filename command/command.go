// Package command carries people's requests to the engine. Slack, PagerDuty
// and the CLI build a Command and Send it: the incident is looked up first
// (so a typo is answered at once), then the command is published on the
// bus under <prefix>.commands.<verb>, keyed by the incident's group so it
// is handled in order with that incident's alerts, with a message id
// derived from the request so retries and double clicks store one message.
// The caller may say "accepted" only after Send returned nil: the bus has
// it durably. The engine decodes it with Decoder. Silences are available
// only WithSilences (alertmanager.url set). Freeze and unfreeze (the
// remediation kill switch) address no incident: they are published with
// no lookup.
package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
)

// Source is the event source of every command.
const Source = "command"

// Verbs are the kinds of input a person may send.
var Verbs = []input.Kind{input.Ack, input.Unack, input.Resolve, input.Note, input.Escalate, input.Silence, input.Unsilence,
	input.Request, input.Approve, input.Deny, input.Freeze, input.Unfreeze, input.Refresh}

// GlobalVerbs address no incident: the remediation kill switch. Send
// publishes them without an incident lookup; the engine applies them once
// for every replica (the freeze key in KV) and tells every open incident.
var GlobalVerbs = []input.Kind{input.Freeze, input.Unfreeze}

// Global reports whether the command addresses no incident.
func (c Command) Global() bool { return slices.Contains(GlobalVerbs, c.Verb) }

// globalSubject is the event subject (the consumer's shard key) of the
// global commands, so they are applied in order.
const globalSubject = "remediation.freeze"

// Errors Send answers a silence with before anything is published, matched
// with errors.Is; their text is meant for the person who asked.
var (
	// ErrNoSilences: no Alertmanager API is configured (alertmanager.url).
	ErrNoSilences = errors.New(engine.ReasonNoSilencer)
	// ErrSilenceTooLong: the duration exceeds alertmanager.silence_max.
	ErrSilenceTooLong = errors.New("silence too long")
	// ErrNotSilenceable: the incident's signals never went through
	// Alertmanager (on-chain watchers), so no silence can suppress them.
	ErrNotSilenceable = errors.New(engine.ReasonOnChain)
)

// Command is one person's request to change one incident.
type Command struct {
	Verb input.Kind `json:"verb"`
	// Incident is the incident's id as typed (case-insensitive).
	Incident string `json:"incident"`
	// By is who asked, and through which system.
	By input.Actor `json:"by"`
	// Text is a note's text or a resolution's comment.
	Text string `json:"text,omitempty"`
	// Duration is how long a silence should hold (verb silence).
	Duration time.Duration `json:"duration,omitempty"`
	// Step is the remediation step's id (request, approve, deny); Hash the
	// hash of its plan as the person saw it; As the approver entry of the
	// step's policy the voter matched (their id, or a group of theirs).
	Step string `json:"step,omitempty"`
	Hash string `json:"hash,omitempty"`
	As   string `json:"as,omitempty"`
	// RequestID identifies the request in the system it came from: a
	// retried request or a second click on the same button carries the
	// same one, so the bus stores the command once.
	RequestID string `json:"request_id"`
	// At is when the person acted.
	At time.Time `json:"at"`
}

// Validate reports what a command is missing.
func (c Command) Validate() error {
	var errs []error
	if !slices.Contains(Verbs, c.Verb) {
		errs = append(errs, fmt.Errorf("unknown verb %q", c.Verb))
	}
	if strings.TrimSpace(c.Incident) == "" && !c.Global() {
		errs = append(errs, errors.New("no incident id"))
	}
	if c.Global() && strings.TrimSpace(c.Incident) != "" {
		errs = append(errs, fmt.Errorf("%s addresses no incident, got %q", c.Verb, c.Incident))
	}
	if c.By.Via == "" {
		errs = append(errs, errors.New("by.via is empty: say which system the command came from"))
	}
	if c.RequestID == "" {
		errs = append(errs, errors.New("request id is empty"))
	}
	if c.Verb == input.Note && strings.TrimSpace(c.Text) == "" {
		errs = append(errs, errors.New("a note needs text"))
	}
	if (c.Verb == input.Request || c.Verb == input.Approve || c.Verb == input.Deny) && (c.Step == "" || c.Hash == "") {
		errs = append(errs, fmt.Errorf("%s needs a step and the hash of its plan", c.Verb))
	}
	if c.Verb == input.Silence && c.Duration <= 0 {
		errs = append(errs, errors.New("a silence needs a positive duration, like 1h"))
	}
	return errors.Join(errs...)
}

// ID is the command's message id: the same request always maps to the
// same id.
func (c Command) ID() string {
	h := sha256.New()
	for _, s := range []string{c.By.Via, c.RequestID, string(c.Verb), engine.NormalizeID(c.Incident)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if c.Step != "" {
		// A step's request or vote: one per step and plan.
		for _, s := range []string{c.Step, c.Hash} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
	}
	return "cmd-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Resolver finds an incident by id.
type Resolver interface {
	Lookup(ctx context.Context, id string) (engine.Ref, error)
}

// Publisher publishes an event on a subject relative to the bus prefix.
type Publisher interface {
	PublishTo(ctx context.Context, subject string, ev bus.Event) (bus.PublishResult, error)
}

// Getter reads an incident; a Resolver that is one (the engine) lets Send
// refuse a silence of an on-chain incident at once.
type Getter interface {
	Get(ctx context.Context, id string) (*engine.Record, error)
}

// Sender sends commands.
type Sender struct {
	pub        Publisher
	incidents  Resolver
	silenceMax time.Duration // 0: silences are not available
}

// Option configures a Sender.
type Option func(*Sender)

// WithSilences makes silence and unsilence available, a silence lasting at
// most max (0 means engine.DefaultSilenceMax). Without it, Send answers
// them with ErrNoSilences.
func WithSilences(max time.Duration) Option {
	return func(s *Sender) {
		if max <= 0 {
			max = engine.DefaultSilenceMax
		}
		s.silenceMax = max
	}
}

// NewSender returns a Sender publishing on pub and resolving ids with r.
func NewSender(pub Publisher, r Resolver, opts ...Option) *Sender {
	s := &Sender{pub: pub, incidents: r}
	for _, o := range opts {
		o(s)
	}
	return s
}

// checkSilence answers what can be known before publishing a silence: is
// the API configured, is the duration allowed, did the incident come
// through Alertmanager.
func (s *Sender) checkSilence(ctx context.Context, c Command, ref engine.Ref) error {
	if c.Verb != input.Silence && c.Verb != input.Unsilence {
		return nil
	}
	if s.silenceMax == 0 {
		return fmt.Errorf("%s %s: %w", c.Verb, ref.ID, ErrNoSilences)
	}
	if c.Verb == input.Silence && c.Duration > s.silenceMax {
		return fmt.Errorf("silence %s for %s: %w: the maximum is %s (alertmanager.silence_max)",
			ref.ID, c.Duration, ErrSilenceTooLong, s.silenceMax)
	}
	g, ok := s.incidents.(Getter)
	if !ok || c.Verb != input.Silence {
		return nil
	}
	rec, err := g.Get(ctx, ref.ID)
	if err != nil {
		return err
	}
	if rec.Source != "alertmanager" {
		return fmt.Errorf("silence %s: %w", ref.ID, ErrNotSilenceable)
	}
	return nil
}

// Send looks the incident up and publishes the command durably. An unknown
// incident is an error wrapping engine.ErrNoIncident; a bus that cannot
// take it, one wrapping bus.ErrUnavailable; a silence that cannot be made,
// ErrNoSilences, ErrSilenceTooLong or ErrNotSilenceable.
func (s *Sender) Send(ctx context.Context, c Command) (engine.Ref, error) {
	if err := c.Validate(); err != nil {
		return engine.Ref{}, fmt.Errorf("command: %w", err)
	}
	if c.Global() {
		return engine.Ref{}, s.sendGlobal(ctx, c)
	}
	ref, err := s.incidents.Lookup(ctx, c.Incident)
	if err != nil {
		return engine.Ref{}, err
	}
	if err := s.checkSilence(ctx, c, ref); err != nil {
		return engine.Ref{}, err
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	c.Incident = ref.ID
	data, err := json.Marshal(c)
	if err != nil {
		return engine.Ref{}, fmt.Errorf("encode command: %w", err)
	}
	ev := bus.Event{ID: c.ID(), Source: Source, Type: Source + "." + string(c.Verb), Time: c.At, Subject: ref.GroupKey, Data: data}
	if _, err := s.pub.PublishTo(ctx, "commands."+string(c.Verb), ev); err != nil {
		return engine.Ref{}, fmt.Errorf("send %s for %s: %w", c.Verb, ref.ID, err)
	}
	return ref, nil
}

// sendGlobal publishes a command that addresses no incident (freeze,
// unfreeze): no lookup; its message id still comes from the request, so a
// retried slash command is stored once.
func (s *Sender) sendGlobal(ctx context.Context, c Command) error {
	if c.At.IsZero() {
		c.At = time.Now()
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	ev := bus.Event{ID: c.ID(), Source: Source, Type: Source + "." + string(c.Verb), Time: c.At, Subject: globalSubject, Data: data}
	if _, err := s.pub.PublishTo(ctx, "commands."+string(c.Verb), ev); err != nil {
		return fmt.Errorf("send %s: %w", c.Verb, err)
	}
	return nil
}

// Decoder turns a published command into its input.
func Decoder(ev bus.Event) ([]input.Input, error) {
	var c Command
	if err := json.Unmarshal(ev.Data, &c); err != nil {
		return nil, bus.Poison(fmt.Errorf("decode command: %w", err))
	}
	if err := c.Validate(); err != nil {
		return nil, bus.Poison(fmt.Errorf("invalid command: %w", err))
	}
	return []input.Input{{Kind: c.Verb, ID: ev.ID, At: c.At, Incident: c.Incident, Actor: c.By, Text: c.Text, Duration: c.Duration,
		Step: c.Step, Hash: c.Hash, As: c.As}}, nil
}
