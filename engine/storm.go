package engine

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/redact"
)

// Alert storms. Slack takes about one message a second per channel: five
// hundred new incidents in one channel would take minutes to post. Past
// StormConfig.Threshold new incidents in one channel within Window, the
// channel's new incidents are listed on one living "storm" card, edited in
// place, instead of getting a card each; the storm ends when fewer than
// Threshold arrive for a whole Window, and the card then says so.
//
// The storm's state is one record per channel in the deliveries bucket
// (key "storm.<channel, base64url>"), changed only with compare-and-set,
// so every replica sees one storm and one card:
//
//   - admit decides, for a new incident about to get its card, whether it
//     joins the storm (one CAS that counts the arrival and lists it); its
//     chat delivery then records the storm's id instead of a card.
//   - Every change of a listed incident (joining, a new status) bumps the
//     storm's generation. The job of the latest change draws the card, at
//     most once every Redraw (a lease and NextDraw in the record, and
//     bus.Later until then): jobs of earlier changes hand over to it and
//     finish, so a storm of 500 costs a few edits, not 500.
//   - The card is posted under a lease whose nonce is in the card's tag: a
//     post whose outcome is unknown is looked for before posting again.
//   - A durable timer (storm.<channel>) ends the storm; its final draw is
//     a chat job, retried like any delivery.
//
// Listed incidents post no thread replies; the people an escalation level
// mentions for them are mentioned in the storm card's thread instead, in
// one reply per draw. Pages never wait for any of this: they are another
// sink.

// StormConfig tunes storm mode (slack.storm_threshold, slack.storm_window).
type StormConfig struct {
	// Threshold is how many new incidents one channel may get within
	// Window, each with its card, before the next ones join the channel's
	// storm card. Critical incidents have a budget of their own, the same
	// size: up to Threshold of them per Window still get their own card
	// (and thread, for escalation mentions and buttons) during a storm of
	// warnings. 0 turns storm mode off.
	Threshold int
	// Window is the sliding window of Threshold; the storm ends once a
	// whole Window passed with fewer arrivals. Default 1m.
	Window time.Duration
	// Redraw is the least time between two edits of a storm card
	// (default 3s): changes in between are drawn together.
	Redraw time.Duration
	// MaxListed caps the incidents a storm lists by id, severity, status
	// and title (its record is one KV value); later ones are counted by
	// severity only. Default 1000.
	MaxListed int
}

// Storm defaults.
const (
	DefaultStormThreshold = 20
	DefaultStormWindow    = time.Minute
	DefaultStormRedraw    = 3 * time.Second
)

func (c StormConfig) withDefaults() StormConfig {
	if c.Threshold < 0 {
		c.Threshold = 0
	}
	if c.Window <= 0 {
		c.Window = DefaultStormWindow
	}
	if c.Redraw <= 0 {
		c.Redraw = DefaultStormRedraw
	}
	if c.MaxListed <= 0 {
		c.MaxListed = defaultStormListed
	}
	return c
}

const defaultStormListed = 1000

// maxStormTitle caps a listed incident's title in the record.
const maxStormTitle = 120

// stormRecord is one channel's storm state.
type stormRecord struct {
	// Channel is the channel as routed.
	Channel string `json:"channel"`
	// Recent and RecentCritical are the latest arrivals of new incidents
	// (non-critical, critical) within the window, at most Threshold each.
	Recent         []arrival `json:"recent,omitempty"`
	RecentCritical []arrival `json:"recent_critical,omitempty"`
	// LastOver is when an arrival last found its window full.
	LastOver time.Time `json:"last_over,omitzero"`

	// ID names the latest storm (its card's tag): "STORM-3F2A1C".
	ID     string    `json:"id,omitempty"`
	Active bool      `json:"active,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	// Members are the incidents listed, in order of arrival; Unlisted
	// counts by severity those that joined past MaxListed.
	Members  []stormMember   `json:"members,omitempty"`
	Unlisted map[string]int  `json:"unlisted,omitempty"`
	Gen      int64           `json:"gen"`
	DrawnGen int64           `json:"drawn_gen"`
	NextDraw time.Time       `json:"next_draw,omitzero"`
	Card     *notify.CardRef `json:"card,omitempty"`
	Lease    *Lease          `json:"lease,omitempty"`
	Failed   string          `json:"failed,omitempty"`
	// Calls are escalation levels called for listed incidents, with the
	// people to mention, not yet posted in the card's thread: the next
	// draw posts them in one reply.
	Calls []stormCall `json:"calls,omitempty"`
}

type stormCall struct {
	ID      string   `json:"id"`
	Mention []string `json:"mention"`
}

type arrival struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	// Storm is the storm it joined, if it did.
	Storm string `json:"storm,omitempty"`
}

type stormMember struct {
	ID       string          `json:"id"`
	Severity notify.Severity `json:"severity"`
	Status   notify.Status   `json:"status"`
	Title    string          `json:"title"`
	At       time.Time       `json:"at"`
	// Version is the incident's version listed; Gen the storm's
	// generation that listed it. CalledSeq is the last timeline entry
	// whose mentions were queued in Calls.
	Version   int64 `json:"version"`
	Gen       int64 `json:"gen"`
	CalledSeq int64 `json:"called_seq,omitempty"`
}

func (s *stormRecord) member(id string) int {
	return slices.IndexFunc(s.Members, func(m stormMember) bool { return m.ID == id })
}

// stormKey is the key of channel's storm record, and of its end timer.
func stormKey(channel string) string {
	return "storm." + base64.RawURLEncoding.EncodeToString([]byte(channel))
}

func (e *Engine) loadStorm(ctx context.Context, key string) (*stormRecord, uint64, error) {
	ent, err := e.deliveries.Get(ctx, key)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load storm %s: %w", key, err)
	}
	var s stormRecord
	if err := json.Unmarshal(ent.Value, &s); err != nil {
		return nil, 0, fmt.Errorf("decode storm %s: %w", key, err)
	}
	return &s, ent.Revision, nil
}

func (e *Engine) storeStorm(ctx context.Context, key string, s *stormRecord, rev uint64) (uint64, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return 0, fmt.Errorf("encode storm %s: %w", key, err)
	}
	if rev == 0 {
		rev, err = e.deliveries.Create(ctx, key, b)
	} else {
		rev, err = e.deliveries.Update(ctx, key, b, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("record storm of %s: %w", s.Channel, err)
	}
	return rev, nil
}

// window keeps the arrivals within the window, the latest n at most.
func window(as []arrival, since time.Time, n int) []arrival {
	as = slices.DeleteFunc(as, func(a arrival) bool { return a.At.Before(since) })
	if len(as) > n {
		as = as[len(as)-n:]
	}
	return as
}

// admit decides whether a new incident, about to get its card, joins its
// channel's storm instead; when it does, its delivery records the storm.
// It is idempotent: an incident admitted before gets the same answer.
// A conflict (isConflict) means: read again and retry.
func (e *Engine) admit(ctx context.Context, rec *Record, del *Delivery, rev uint64, view *renderer) (bool, error) {
	cfg := e.cfg.Storm
	channel := e.runbook(rec).Route(rec.Severity).Channel
	if cfg.Threshold <= 0 || channel == "" {
		return false, nil
	}
	key := stormKey(channel)
	s, srev, err := e.loadStorm(ctx, key)
	if err != nil {
		return false, err
	}
	if s == nil {
		s = &stormRecord{Channel: channel}
	}
	now := e.now()
	joined := s.ID != "" && s.member(rec.ID) >= 0
	seen := false
	for _, a := range slices.Concat(s.Recent, s.RecentCritical) {
		if a.ID == rec.ID {
			seen = true
			joined = joined || (a.Storm != "" && a.Storm == s.ID)
		}
	}
	started := false
	if !joined && !seen {
		since := now.Add(-cfg.Window)
		s.Recent = window(s.Recent, since, cfg.Threshold)
		s.RecentCritical = window(s.RecentCritical, since, cfg.Threshold)
		recent := &s.Recent
		if rec.Severity == notify.SeverityCritical {
			recent = &s.RecentCritical
		}
		over := len(*recent) >= cfg.Threshold
		if over {
			s.LastOver = now
		}
		// A storm's last card must be drawn before the next storm
		// takes the record: until then, cards of their own.
		settled := s.ID == "" || s.DrawnGen >= s.Gen || s.Failed != ""
		switch {
		case rec.Severity == notify.SeverityCritical && !over:
		case s.Active:
			joined = true
		case over && settled:
			s.ID = "STORM-" + strings.ToUpper(nonce()[:6])
			s.Active, s.Since, s.Until = true, now, time.Time{}
			s.Members, s.Unlisted, s.Calls, s.Card, s.Lease, s.Failed, s.NextDraw = nil, nil, nil, nil, nil, "", time.Time{}
			joined, started = true, true
		}
		a := arrival{ID: rec.ID, At: now}
		if joined {
			a.Storm = s.ID
		}
		*recent = window(append(*recent, a), since, cfg.Threshold)
		if joined {
			s.Gen++
			if len(s.Members) < cfg.MaxListed {
				inc := view.render(ctx, e, rec)
				s.Members = append(s.Members, stormMember{ID: rec.ID, Severity: rec.Severity, Status: rec.Status,
					Title: notify.Truncate(inc.Title, maxStormTitle), At: now, Version: rec.Version, Gen: s.Gen})
			} else {
				if s.Unlisted == nil {
					s.Unlisted = map[string]int{}
				}
				s.Unlisted[string(rec.Severity)]++
			}
		}
		if _, err := e.storeStorm(ctx, key, s, srev); err != nil {
			return false, err
		}
	}
	if started {
		e.log.Warn("alert storm: new incidents in this channel are listed on one card", "channel", channel, "storm", s.ID,
			"threshold", cfg.Threshold, "window", cfg.Window)
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.storm_started", Detail: channel, Attrs: map[string]string{"storm": s.ID}})
	}
	if !joined {
		return false, nil
	}
	gen := s.Gen
	if i := s.member(rec.ID); i >= 0 {
		gen = s.Members[i].Gen
	}
	next := *del
	next.Storm, next.StormChannel, next.Channel = s.ID, channel, channel
	next.StormGen = max(next.StormGen, gen)
	next.CardVersion = max(next.CardVersion, rec.Version)
	next.RepliedSeq = max(next.RepliedSeq, rec.lastSeq())
	if _, err := e.storeDelivery(ctx, SinkChat, rec.ID, &next, rev); err != nil {
		return false, err
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.stormed", Incident: rec.ID, Attrs: map[string]string{"channel": channel, "storm": s.ID}})
	return true, nil
}

// stormStep brings a listed incident's storm in line, one step: list its
// new version, record it, or see the card drawn (drawing it when no later
// change will). A conflict (isConflict) means: read again and retry.
func (e *Engine) stormStep(ctx context.Context, rec *Record, del *Delivery, rev uint64, view *renderer) error {
	key := stormKey(del.StormChannel)
	s, srev, err := e.loadStorm(ctx, key)
	if err != nil {
		return err
	}
	next := *del
	if s == nil || s.ID != del.Storm || s.Failed != "" {
		// A later storm took the channel's record (this one's card shows
		// the incident as it last was), or the card cannot be posted.
		next.CardVersion = max(next.CardVersion, rec.Version)
		next.RepliedSeq = max(next.RepliedSeq, rec.lastSeq())
		next.StormDone = next.StormGen
		if s != nil && s.ID == del.Storm {
			next.Failed = "storm card: " + s.Failed
		}
		_, err := e.storeDelivery(ctx, SinkChat, rec.ID, &next, rev)
		return err
	}
	// Thread replies of a listed incident are not posted: hundreds of
	// them would flood the channel as its cards would have. /incident
	// show ID has its timeline.
	version, gen := rec.Version, next.StormGen // counted, not listed
	if i := s.member(rec.ID); i >= 0 {
		m := &s.Members[i]
		if calls := callsAfter(rec, max(m.CalledSeq, next.RepliedSeq)); len(calls) > 0 {
			// An escalation level called people: they are mentioned
			// in the card's thread, with every incident calling them
			// since the last draw, in one reply.
			s.Gen++
			s.Calls = append(s.Calls, stormCall{ID: rec.ID, Mention: calls})
			m.CalledSeq, m.Gen = rec.lastSeq(), s.Gen
			_, err := e.storeStorm(ctx, key, s, srev)
			return err
		}
		if m.Version < rec.Version {
			inc := view.render(ctx, e, rec)
			s.Gen++
			m.Severity, m.Status, m.Title, m.Version, m.Gen = rec.Severity, rec.Status, notify.Truncate(inc.Title, maxStormTitle), rec.Version, s.Gen
			_, err := e.storeStorm(ctx, key, s, srev)
			return err
		}
		version, gen = m.Version, m.Gen
	}
	if next.CardVersion < version || next.RepliedSeq < rec.lastSeq() || next.StormGen < gen {
		next.CardVersion = max(next.CardVersion, version)
		next.RepliedSeq = max(next.RepliedSeq, rec.lastSeq())
		next.StormGen = max(next.StormGen, gen)
		_, err := e.storeDelivery(ctx, SinkChat, rec.ID, &next, rev)
		return err
	}
	if s.DrawnGen >= next.StormGen || s.Gen > next.StormGen {
		// Drawn, or a later change's job draws it (that job is not done
		// before the card shows its change, and so this one's).
		next.StormDone = next.StormGen
		_, err := e.storeDelivery(ctx, SinkChat, rec.ID, &next, rev)
		return err
	}
	return e.drawStorm(ctx, key)
}

var (
	errStormRedraw = errors.New("the storm card was edited moments ago; the next edit waits")
	errStormBusy   = errors.New("too many concurrent changes to the storm record")
)

// drawStorm posts or edits the storm card of key when it lags its record:
// under the record's lease, at most once every Redraw. It returns nil once
// the card shows the record (or cannot be shown), and a bus.Retry to come
// back when the card's turn comes.
func (e *Engine) drawStorm(ctx context.Context, key string) error {
	for range 16 {
		s, rev, err := e.loadStorm(ctx, key)
		if err != nil || s == nil || s.Failed != "" || s.DrawnGen >= s.Gen {
			return err
		}
		now := e.now()
		if l := s.Lease; l != nil && now.Before(l.Until) {
			return bus.Later(errLeased, min(l.Until.Sub(now), e.cfg.Storm.Redraw)+100*time.Millisecond)
		}
		if s.Card != nil && now.Before(s.NextDraw) {
			return bus.Later(errStormRedraw, s.NextDraw.Sub(now)+50*time.Millisecond)
		}
		pseudo := &Record{ID: s.ID}
		if l := s.Lease; l != nil && l.Op == "post" && s.Card == nil {
			// A post whose worker died mid-call may have reached the
			// chat: look for it before posting again.
			var ref notify.CardRef
			var found bool
			err := e.call(ctx, SinkChat, "find", pseudo, func(ctx context.Context) error {
				var err error
				ref, found, err = e.chat.FindCard(ctx, s.Channel, notify.CardTag{IncidentID: s.ID, Nonce: l.Nonce}, l.Since.Add(-findSkew))
				return err
			})
			switch {
			case err != nil && notify.IsRetryable(err):
				return retryAfter(err, e.cfg.RetryMax)
			case err != nil:
				e.log.Warn("cannot look for a storm card whose post outcome is unknown; posting again", "storm", s.ID, "err", err)
			case found:
				e.log.Info("found the storm card of an interrupted post; not posting again", "storm", s.ID, "ts", ref.TS)
				if err := e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) {
					if n.Card == nil {
						n.Card = &ref
					}
				}); err != nil {
					return err
				}
				continue
			}
		}
		op := "update"
		if s.Card == nil {
			op = "post"
		}
		l := &Lease{Op: op, Nonce: nonce(), Since: now, Until: now.Add(e.cfg.EffectTimeout + LeaseMargin)}
		s.Lease, s.NextDraw = l, now.Add(e.cfg.Storm.Redraw)
		if rev, err = e.storeStorm(ctx, key, s, rev); err != nil {
			if isConflict(err) {
				continue
			}
			return err
		}
		inc := stormIncident(s, now)
		var ref notify.CardRef
		if op == "post" {
			err = e.call(ctx, SinkChat, "post", pseudo, func(ctx context.Context) error {
				var err error
				ref, err = e.chat.PostCard(ctx, s.Channel, inc, notify.CardTag{IncidentID: s.ID, Nonce: l.Nonce})
				return err
			})
		} else {
			err = e.call(ctx, SinkChat, "update", pseudo, func(ctx context.Context) error { return e.chat.UpdateCard(ctx, *s.Card, inc) })
		}
		if err == nil && len(s.Calls) > 0 {
			card := ref
			if s.Card != nil {
				card = *s.Card
			}
			u := callsUpdate(s.Calls, now)
			err = e.call(ctx, SinkChat, "reply", pseudo, func(ctx context.Context) error { return e.chat.Reply(ctx, card, inc, u) })
			if err != nil && op == "post" {
				// The card is out: record it, and post the calls on the
				// next attempt.
				_ = e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) {
					if n.ID == s.ID && n.Card == nil {
						n.Card = &ref
					}
				})
				return retryAfter(err, e.cfg.RetryMax)
			}
		}
		if err != nil {
			return e.stormFailed(ctx, key, s, rev, l, err)
		}
		gen, called := s.Gen, len(s.Calls)
		if err := e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) {
			if n.ID != s.ID {
				return
			}
			n.DrawnGen = max(n.DrawnGen, gen)
			if op == "post" && n.Card == nil {
				n.Card = &ref
			}
			if called > 0 && len(n.Calls) >= called {
				n.Calls = slices.Clone(n.Calls[called:])
			}
		}); err != nil {
			return err
		}
		if s.Active {
			e.armStormEnd(ctx, key, s)
		}
		attrs := map[string]string{"storm": s.ID, "channel": s.Channel, "listed": strconv.Itoa(len(inc.Storm.Entries))}
		if op == "post" {
			attrs["ts"] = ref.TS
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.storm_" + map[string]string{"post": "posted", "update": "updated"}[op], Attrs: attrs})
		return nil
	}
	return bus.Later(errStormBusy, 100*time.Millisecond)
}

// settleStorm records the outcome of a storm card call made under lease l
// (f changes the record) and drops the lease, whatever else changed.
func (e *Engine) settleStorm(ctx context.Context, key string, s *stormRecord, rev uint64, l *Lease, f func(*stormRecord)) error {
	for range 32 {
		next := *s
		if next.Lease != nil && next.Lease.Nonce == l.Nonce {
			next.Lease = nil
		}
		f(&next)
		_, err := e.storeStorm(ctx, key, &next, rev)
		if !isConflict(err) {
			return err
		}
		if s, rev, err = e.loadStorm(ctx, key); err != nil {
			return err
		}
		if s == nil {
			return nil
		}
	}
	return fmt.Errorf("record storm %s: too many concurrent changes", key)
}

// stormFailed handles a failed storm card call like failed does a card's:
// a retryable failure comes back later (a post that may have gone through
// leaves its lease, expired, so that the next attempt looks first); a
// card that is gone is posted anew; a post that fails for good stops the
// storm's card (audited), and the chat deliveries of its incidents still
// waiting for it record why.
func (e *Engine) stormFailed(ctx context.Context, key string, s *stormRecord, rev uint64, l *Lease, err error) error {
	if notify.IsRetryable(err) {
		_ = e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) {
			if l.Op == "post" && !errors.Is(err, notify.ErrNotSent) {
				expired := *l
				expired.Until = e.now()
				n.Lease = &expired
			}
		})
		return retryAfter(err, e.cfg.RetryMax)
	}
	why := redact.Error(err).Error()
	if l.Op == "update" {
		e.log.Warn("cannot edit the storm card; posting it anew", "storm", s.ID, "err", err)
		if err := e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) { n.Card = nil }); err != nil {
			return err
		}
		return bus.Retry(err, 0)
	}
	e.log.Error("storm card delivery failed permanently", "storm", s.ID, "channel", s.Channel, "err", err)
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.storm_failed", Detail: why, Attrs: map[string]string{"storm": s.ID}})
	return e.settleStorm(ctx, key, s, rev, l, func(n *stormRecord) { n.Failed = why })
}

// callsAfter is the people escalation levels called in rec's timeline
// after seq, each once.
func callsAfter(rec *Record, seq int64) []string {
	var out []string
	for _, u := range rec.Timeline {
		if u.Seq > seq {
			for _, m := range u.Mention {
				if !slices.Contains(out, m) {
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// maxCallIDs caps the incident ids one calls reply names.
const maxCallIDs = 200

// callsUpdate is the storm thread's reply for calls: every person called,
// mentioned once, and the incidents that called them.
func callsUpdate(calls []stormCall, now time.Time) notify.Update {
	var ids, mention []string
	for _, c := range calls {
		if !slices.Contains(ids, c.ID) {
			ids = append(ids, c.ID)
		}
		for _, m := range c.Mention {
			if !slices.Contains(mention, m) {
				mention = append(mention, m)
			}
		}
	}
	text := fmt.Sprintf("Escalation levels called for %d listed incident(s): ", len(ids))
	if len(ids) > maxCallIDs {
		text += strings.Join(ids[:maxCallIDs], ", ") + fmt.Sprintf(" and %d more", len(ids)-maxCallIDs)
	} else {
		text += strings.Join(ids, ", ")
	}
	return notify.Update{Kind: "escalated", Text: text + ". /incident show ID says more.", At: now, Mention: mention}
}

// rank orders severities worst first (critical 0), unknown ones last.
func rank(s notify.Severity) int { return 3 - severityRank[s] }

// stormIncident is the storm card's model: the incidents worst first,
// open before resolved, then in order of arrival.
func stormIncident(s *stormRecord, now time.Time) notify.Incident {
	st := &notify.Storm{Channel: s.Channel, Since: s.Since, Over: !s.Active, Until: s.Until}
	worst := notify.SeverityInfo
	allResolved := true
	for _, m := range s.Members {
		st.Entries = append(st.Entries, notify.StormEntry{ID: m.ID, Severity: m.Severity, Status: m.Status, Title: m.Title, At: m.At})
		if rank(m.Severity) < rank(worst) {
			worst = m.Severity
		}
		allResolved = allResolved && m.Status == notify.StatusResolved
	}
	slices.SortStableFunc(st.Entries, func(a, b notify.StormEntry) int {
		return cmp.Or(cmp.Compare(rank(a.Severity), rank(b.Severity)),
			cmp.Compare(statusRank(a.Status), statusRank(b.Status)), a.At.Compare(b.At))
	})
	for sev, n := range s.Unlisted {
		if st.Unlisted == nil {
			st.Unlisted = map[notify.Severity]int{}
		}
		st.Unlisted[notify.Severity(sev)] += n
	}
	status := notify.StatusFiring
	if !s.Active || allResolved {
		status = notify.StatusResolved
	}
	return notify.Incident{ID: s.ID, Key: "storm." + s.ID, Version: s.Gen, Title: "Alert storm in " + s.Channel,
		Severity: worst, Status: status, StartedAt: s.Since, ResolvedAt: s.Until, UpdatedAt: now, Storm: st}
}

func statusRank(s notify.Status) int {
	if s == notify.StatusResolved {
		return 1
	}
	return 0
}

// StormTimerEventType is the type of a fired storm end check.
const StormTimerEventType = "engine.storm_due"

// stormJobEventType is a chat job that draws a storm card (its last, after
// the storm ended).
const stormJobEventType = "engine.storm_draw"

type stormTimer struct {
	Key   string `json:"key"`
	Storm string `json:"storm"`
}

// armStormEnd sets the storm's end check for a window after the last
// arrival that found its window full. Every draw arms it again (setting a
// timer key replaces it), so a storm whose starter died before arming it
// still ends.
func (e *Engine) armStormEnd(ctx context.Context, key string, s *stormRecord) {
	at := s.LastOver.Add(e.cfg.Storm.Window)
	data, _ := json.Marshal(stormTimer{Key: key, Storm: s.ID})
	ev := bus.Event{ID: fmt.Sprintf("%s.%s.%d", key, s.ID, at.UnixNano()), Source: "engine", Type: StormTimerEventType,
		Time: at, Subject: key, Data: data}
	if err := e.timers.Schedule(ctx, key, at, ev); err != nil {
		e.log.Warn("cannot arm the storm's end check; the next edit of its card arms it", "storm", s.ID, "err", err)
	}
}

// stormDue ends a storm whose window passed with fewer arrivals than the
// threshold, and queues its last draw; a storm still going checks again
// at its new end.
func (e *Engine) stormDue(ctx context.Context, d *bus.Delivery) error {
	var t stormTimer
	if err := json.Unmarshal(d.Event.Data, &t); err != nil {
		return bus.Poison(fmt.Errorf("decode storm timer: %w", err))
	}
	for range 32 {
		s, rev, err := e.loadStorm(ctx, t.Key)
		if err != nil || s == nil || s.ID != t.Storm {
			return err
		}
		if s.Active {
			now := e.now()
			if end := s.LastOver.Add(e.cfg.Storm.Window); now.Before(end) {
				e.armStormEnd(ctx, t.Key, s)
				return nil
			}
			s.Active, s.Until = false, now
			s.Gen++
			if _, err := e.storeStorm(ctx, t.Key, s, rev); err != nil {
				if isConflict(err) {
					continue
				}
				return err
			}
			e.log.Info("alert storm over", "channel", s.Channel, "storm", s.ID, "incidents", len(s.Members))
			e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.storm_over", Detail: s.Channel,
				Attrs: map[string]string{"storm": s.ID, "incidents": strconv.Itoa(len(s.Members))}})
		}
		if s.DrawnGen >= s.Gen || s.Failed != "" {
			return nil
		}
		ev := bus.Event{ID: fmt.Sprintf("%s.%s.%d", t.Key, s.ID, s.Gen), Source: "engine", Type: stormJobEventType,
			Time: e.now(), Subject: t.Key, Data: []byte(t.Key)}
		if _, err := e.pub.PublishTo(ctx, JobSubject(SinkChat), ev); err != nil {
			return fmt.Errorf("queue the last draw of storm %s: %w", s.ID, err)
		}
		return nil
	}
	return bus.Later(errStormBusy, 100*time.Millisecond)
}
