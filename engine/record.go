package engine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// Record is what happened to one incident: its alerts, who acknowledged or
// resolved it, where escalation stands, and its timeline. It is stored in
// the incidents bucket under Key and changed only by apply, with
// compare-and-set. What was delivered to chat and pager is kept apart, in
// the deliveries bucket (see ChatDelivery, PageDelivery), so a slow sink
// never contends with a change of state.
type Record struct {
	ID       string          `json:"id"`
	Key      string          `json:"key"`
	GroupKey string          `json:"group_key"`
	Runbook  string          `json:"runbook"`
	Source   string          `json:"source"`
	Status   notify.Status   `json:"status"`
	Severity notify.Severity `json:"severity"`
	// Version increases with every change; deliveries compare against it.
	Version         int64                  `json:"version"`
	Alerts          map[string]*AlertState `json:"alerts"`
	TruncatedAlerts int                    `json:"truncated_alerts,omitempty"`
	StartedAt       time.Time              `json:"started_at"`
	ResolvedAt      time.Time              `json:"resolved_at,omitzero"`
	UpdatedAt       time.Time              `json:"updated_at"`
	Reopened        int                    `json:"reopened,omitempty"`
	// Ack is the acknowledgement in force (nil when none). AckChangedAt is
	// when the latest ack or unack happened: an older one is stale, so the
	// outcome does not depend on the order they arrive in.
	Ack          *Mark     `json:"ack,omitempty"`
	AckChangedAt time.Time `json:"ack_changed_at,omitzero"`
	// Acks are the acks received since the latest unack, earliest first.
	Acks []Mark `json:"acks,omitempty"`
	// FirstAck is the earliest acknowledgement ever received, kept through
	// unacks, for the report's time to acknowledge.
	FirstAck *Mark `json:"first_ack,omitempty"`
	// ManualResolve is set when a person resolved the incident by hand.
	// Alerts that started before it do not reopen the incident.
	ManualResolve *Mark `json:"manual_resolve,omitempty"`
	// Escalation is where the escalation ladder stands.
	Escalation Escalation `json:"escalation"`
	// Silence is the Alertmanager silence people asked for (nil when none
	// ever was); UnsilencedAt is when the latest unsilence was asked, so a
	// silence request older than it is stale whatever order they arrive in.
	Silence      *SilenceWish `json:"silence,omitempty"`
	UnsilencedAt time.Time    `json:"unsilenced_at,omitzero"`
	// Steps are the remediation steps requested, by step id: the latest
	// request of each, its votes and where it stands.
	Steps map[string]*StepRequest `json:"steps,omitempty"`
	// EarlyVotes are votes applied before the request they are for (with
	// two replicas a vote sent right after its request can be applied
	// first), by step: each counts once a request for its plan arrives.
	// At most maxEarlyVotes per step, the latest cast.
	EarlyVotes map[string][]Vote `json:"early_votes,omitempty"`
	// AutoDue are the automatic steps the bot is yet to request in the
	// incident's current opening (set when it opens or reopens).
	AutoDue []string `json:"auto_due,omitempty"`
	// Notes are people's notes, by input id (a set: a redelivered note is
	// kept once).
	Notes map[string]Note `json:"notes,omitempty"`
	// Timeline holds the changes, each posted once as a thread reply.
	Timeline []notify.Update `json:"timeline"`
	NextSeq  int64           `json:"next_seq"`
	// Applied holds the ids of the latest inputs applied (bounded), so a
	// command delivered twice has one effect.
	Applied []string `json:"applied,omitempty"`

	// legacy holds deliveries recorded inline by releases before the split;
	// read once to seed the deliveries bucket, never written.
	LegacySlack *ChatDelivery `json:"slack,omitempty"`
	LegacyPage  *PageDelivery `json:"page,omitempty"`
}

// Mark is who did something and when.
type Mark struct {
	By   input.Actor `json:"by"`
	At   time.Time   `json:"at"`
	Text string      `json:"text,omitempty"`
}

// Note is one note on the timeline.
type Note struct {
	By   input.Actor `json:"by"`
	At   time.Time   `json:"at"`
	Text string      `json:"text"`
}

// SilenceWish is the silence people asked for: what it matches, until
// when, and who asked; then what the silence reconciler reported back.
type SilenceWish struct {
	// Gen numbers an incident's silences: one asked for after an
	// unsilence, or after the previous one ended, is a new silence.
	Gen         int         `json:"gen"`
	By          input.Actor `json:"by"`
	RequestedAt time.Time   `json:"requested_at"`
	Until       time.Time   `json:"until"`
	// Matchers are the labels common to the incident's alerts when the
	// silence was asked for; an extension keeps them.
	Matchers map[string]string `json:"matchers"`
	// ID is Alertmanager's id of the silence once created, and
	// CreatedUntil the end it holds there.
	ID           string    `json:"id,omitempty"`
	CreatedUntil time.Time `json:"created_until,omitzero"`
	// Unsilenced is who asked to expire it, and when; Expired is set once
	// Alertmanager expired it.
	Unsilenced *Mark `json:"unsilenced,omitempty"`
	Expired    bool  `json:"expired,omitempty"`
}

// active reports whether the silence is wanted at now.
func (w *SilenceWish) active(now time.Time) bool {
	return w != nil && w.Unsilenced == nil && w.Until.After(now)
}

// Escalation is the state of the escalation ladder. Next indexes the level
// to notify next; while Token is set a timer is armed for DueAt, and only a
// timer carrying that token may fire it.
type Escalation struct {
	Next  int       `json:"next"`
	Token string    `json:"token,omitempty"`
	DueAt time.Time `json:"due_at,omitzero"`
	// Since is when the ladder's clock started: level i is due at
	// Since + levels[i].After.
	Since time.Time `json:"since,omitzero"`
	// Paged lists the levels called so far that page PagerDuty on their
	// own (by index in the ladder); the pager reconciler pages each once.
	Paged []int `json:"paged,omitempty"`
}

// AlertState is the latest known state of one alert in an incident.
type AlertState struct {
	Fingerprint  string            `json:"fingerprint"`
	Type         string            `json:"type"`
	Status       signal.Status     `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       time.Time         `json:"ends_at,omitzero"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	Fields       map[string]any    `json:"fields,omitempty"`
	// Severity is the alert's severity as its runbook maps it (empty in
	// records written before it was kept).
	Severity notify.Severity `json:"severity,omitempty"`
	// Runbook and Source are set on an alert that joined an incident of
	// another runbook of its correlation group: the runbook that matched
	// it and where it came from.
	Runbook string `json:"runbook,omitempty"`
	Source  string `json:"source,omitempty"`
}

// maxTimeline bounds the stored timeline; older entries were posted long ago.
const maxTimeline = 200

// maxApplied bounds the remembered input ids; the bus's duplicate window
// catches older repeats.
const maxApplied = 64

// incidentKey is the KV key of the incident for a group and runbook.
func incidentKey(groupKey, runbook string) string {
	h := sha256.Sum256([]byte(groupKey + "\x00" + runbook))
	return "inc." + hex.EncodeToString(h[:12])
}

// NewID makes a short, human-friendly incident id.
func NewID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "INC-" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// NormalizeID makes an id typed by a person comparable: upper case, with
// the INC- prefix added when missing.
func NormalizeID(id string) string {
	id = strings.ToUpper(strings.TrimSpace(id))
	if id != "" && !strings.HasPrefix(id, "INC-") {
		id = "INC-" + id
	}
	return id
}

// DedupKey is the PagerDuty dedup key of the incident.
func (r *Record) DedupKey() string { return r.ID }

// Open reports whether the incident is not resolved.
func (r *Record) Open() bool { return r.Status != notify.StatusResolved }

func clone(r *Record) *Record {
	c := *r
	c.Alerts = make(map[string]*AlertState, len(r.Alerts))
	for k, v := range r.Alerts {
		a := *v
		c.Alerts[k] = &a
	}
	c.Notes = maps.Clone(r.Notes)
	c.Steps = cloneSteps(r.Steps)
	c.EarlyVotes = cloneVotes(r.EarlyVotes)
	c.AutoDue = slices.Clone(r.AutoDue)
	c.Timeline = slices.Clone(r.Timeline)
	c.Applied = slices.Clone(r.Applied)
	c.Acks = slices.Clone(r.Acks)
	c.Escalation.Paged = slices.Clone(r.Escalation.Paged)
	if r.Ack != nil {
		a := *r.Ack
		c.Ack = &a
	}
	if r.ManualResolve != nil {
		m := *r.ManualResolve
		c.ManualResolve = &m
	}
	if r.FirstAck != nil {
		m := *r.FirstAck
		c.FirstAck = &m
	}
	if r.Silence != nil {
		w := *r.Silence
		w.Matchers = maps.Clone(r.Silence.Matchers)
		if r.Silence.Unsilenced != nil {
			m := *r.Silence.Unsilenced
			w.Unsilenced = &m
		}
		c.Silence = &w
	}
	c.LegacySlack, c.LegacyPage = nil, nil
	return &c
}

func (r *Record) addUpdate(now time.Time, kind, text string) {
	r.Timeline = append(r.Timeline, notify.Update{Seq: r.NextSeq, Kind: kind, Text: text, At: now})
	r.NextSeq++
	if len(r.Timeline) > maxTimeline {
		r.Timeline = slices.Delete(r.Timeline, 0, len(r.Timeline)-maxTimeline)
	}
}

func (r *Record) lastSeq() int64 {
	if len(r.Timeline) == 0 {
		return 0
	}
	return r.Timeline[len(r.Timeline)-1].Seq
}

func (r *Record) firingCount() int {
	n := 0
	for _, a := range r.Alerts {
		if a.Status == signal.Firing {
			n++
		}
	}
	return n
}

// firingAfter counts alerts firing that started after t.
func (r *Record) firingAfter(t time.Time) int {
	n := 0
	for _, a := range r.Alerts {
		if a.Status == signal.Firing && a.StartsAt.After(t) {
			n++
		}
	}
	return n
}

func (r *Record) latestEnd(now time.Time) time.Time {
	var t time.Time
	for _, a := range r.Alerts {
		if a.EndsAt.After(t) {
			t = a.EndsAt
		}
	}
	if t.IsZero() || t.After(now) {
		return now
	}
	return t
}

func (r *Record) applied(id string) bool { return id != "" && slices.Contains(r.Applied, id) }

func (r *Record) remember(id string) {
	if id == "" {
		return
	}
	r.Applied = append(r.Applied, id)
	if len(r.Applied) > maxApplied {
		r.Applied = slices.Delete(r.Applied, 0, len(r.Applied)-maxApplied)
	}
}

// SourceName names a signal source for people: "Alertmanager", "Solana
// watchers".
func SourceName(source string) string {
	switch source {
	case "alertmanager":
		return "Alertmanager"
	case "solana":
		return "Solana watchers"
	}
	return source
}

// sortedAlerts returns the alerts firing first, then by start time.
func (r *Record) sortedAlerts() []*AlertState {
	out := slices.Collect(maps.Values(r.Alerts))
	slices.SortFunc(out, func(a, b *AlertState) int {
		if a.Status != b.Status {
			if a.Status == signal.Firing {
				return -1
			}
			return 1
		}
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint)
	})
	return out
}

// sortedNotes returns the notes in the order they were made.
func (r *Record) sortedNotes() []Note {
	out := slices.Collect(maps.Values(r.Notes))
	slices.SortFunc(out, func(a, b Note) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.Text, b.Text)
	})
	return out
}

var severityRank = map[notify.Severity]int{notify.SeverityInfo: 1, notify.SeverityWarning: 2, notify.SeverityCritical: 3}

// worstSeverity is the highest severity among firing alerts (all alerts when
// none fires), so a resolved incident keeps the severity it had.
func worstSeverity(r *Record, sev func(map[string]string) notify.Severity) notify.Severity {
	best := r.Severity
	anyFiring := r.firingCount() > 0
	if anyFiring {
		best = ""
	}
	for _, a := range r.Alerts {
		if anyFiring && a.Status != signal.Firing {
			continue
		}
		s := a.Severity
		if s == "" {
			s = sev(a.Labels)
		}
		if severityRank[s] > severityRank[best] {
			best = s
		}
	}
	if best == "" {
		best = notify.SeverityWarning
	}
	return best
}
