// Package report turns incident records into Markdown reports: one
// incident's timeline (fired, posted, paged, acknowledged by whom and
// where, escalated, notes, silences, resolved) with its time to
// acknowledge (TTA: first ack minus first firing), time to resolve (TTR:
// resolution minus first firing) and number of escalations; and a summary
// of many incidents with counts by runbook and severity and the median and
// 90th percentile of TTA and TTR. It reads what the engine stored (the
// record and its deliveries) and nothing else, so the report posted in the
// thread, `/incident report ID` and `incidentbot report` agree.
package report

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify"
)

// Reporter renders one incident's report by id; the Slack handler's
// `/incident report ID` answers with it.
type Reporter interface {
	Report(ctx context.Context, id string) (string, error)
}

// Source reads incidents and their deliveries: *engine.Engine and
// *engine.Reader are one.
type Source interface {
	Get(ctx context.Context, id string) (*engine.Record, error)
	AllIncidents(ctx context.Context) ([]*engine.Record, error)
	Delivery(ctx context.Context, sink string, rec *engine.Record) (*engine.Delivery, error)
}

// Reports renders reports from a Source. It implements Reporter and
// engine.Reports.
type Reports struct {
	src Source
}

// New returns Reports reading src.
func New(src Source) *Reports { return &Reports{src: src} }

// Report renders the report of the incident id names (INC-…, any case).
func (r *Reports) Report(ctx context.Context, id string) (string, error) {
	rec, err := r.src.Get(ctx, id)
	if err != nil {
		return "", fmt.Errorf("report %s: %w", id, err)
	}
	return r.RecordReport(ctx, rec)
}

// RecordReport renders the report of rec, reading its deliveries.
func (r *Reports) RecordReport(ctx context.Context, rec *engine.Record) (string, error) {
	ds := map[string]*engine.Delivery{}
	for _, sink := range []string{engine.SinkChat, engine.SinkPager, engine.SinkSilence} {
		d, err := r.src.Delivery(ctx, sink, rec)
		if err != nil {
			return "", fmt.Errorf("report %s: read %s delivery: %w", rec.ID, sink, err)
		}
		ds[sink] = d
	}
	return Build(rec, ds).Markdown(), nil
}

// Summary renders the summary of the incidents that started at or after
// since.
func (r *Reports) Summary(ctx context.Context, since time.Time) (string, error) {
	recs, err := r.src.AllIncidents(ctx)
	if err != nil {
		return "", fmt.Errorf("summarise incidents: %w", err)
	}
	var reps []Incident
	for _, rec := range recs {
		if !rec.StartedAt.Before(since) {
			reps = append(reps, Build(rec, nil))
		}
	}
	return Summarize(since, reps).Markdown(), nil
}

// Entry is one line of an incident's timeline.
type Entry struct {
	At   time.Time
	Kind string
	Text string
}

// Incident is one incident's report.
type Incident struct {
	ID, Title, Runbook string
	Severity           notify.Severity
	Status             notify.Status
	StartedAt          time.Time
	ResolvedAt         time.Time // zero while open
	// TTA is set when someone acknowledged before the incident resolved;
	// AckedBy names the first who did, and through what.
	TTA     *time.Duration
	AckedBy string
	// TTR is set once the incident resolved.
	TTR         *time.Duration
	Escalations int
	Timeline    []Entry
}

// Build assembles the report of rec from the record and what its sinks
// recorded (deliveries by sink name; nil or missing ones are skipped).
func Build(rec *engine.Record, deliveries map[string]*engine.Delivery) Incident {
	rep := Incident{ID: rec.ID, Title: title(rec), Runbook: rec.Runbook, Severity: rec.Severity, Status: rec.Status,
		StartedAt: rec.StartedAt}
	if !rec.Open() {
		rep.ResolvedAt = rec.ResolvedAt
		ttr := rec.ResolvedAt.Sub(rec.StartedAt)
		rep.TTR = &ttr
	}
	if a := rec.FirstAck; a != nil && (rec.Open() || !a.At.After(rec.ResolvedAt)) {
		tta := max(a.At.Sub(rec.StartedAt), 0)
		rep.TTA, rep.AckedBy = &tta, a.By.String()
	}
	// At equal times: fired, what the record says (opened), then what the
	// sinks did with it.
	rep.Timeline = append(rep.Timeline, Entry{At: rec.StartedAt, Kind: "fired", Text: firedText(rec)})
	for _, u := range rec.Timeline {
		switch u.Kind {
		case engine.UpdateReport:
			continue
		case "escalated":
			rep.Escalations++
		}
		rep.Timeline = append(rep.Timeline, Entry{At: u.At, Kind: u.Kind, Text: u.Text})
	}
	if d := deliveries[engine.SinkChat]; d != nil && !d.PostedAt.IsZero() {
		rep.Timeline = append(rep.Timeline, Entry{At: d.PostedAt, Kind: "posted", Text: "card posted in " + d.Channel})
	}
	if d := deliveries[engine.SinkPager]; d != nil && !d.PagedAt.IsZero() {
		rep.Timeline = append(rep.Timeline, Entry{At: d.PagedAt, Kind: "paged", Text: "PagerDuty paged (dedup key " + rec.DedupKey() + ")"})
	}
	slices.SortStableFunc(rep.Timeline, func(a, b Entry) int { return a.At.Compare(b.At) })
	return rep
}

// title names the incident by its earliest alert and its summary.
func title(rec *engine.Record) string {
	var first *engine.AlertState
	for _, a := range rec.Alerts {
		if first == nil || a.StartsAt.Before(first.StartsAt) || (a.StartsAt.Equal(first.StartsAt) && a.Fingerprint < first.Fingerprint) {
			first = a
		}
	}
	if first == nil {
		return rec.Runbook
	}
	name := first.Labels["alertname"]
	if name == "" {
		name = first.Type
	}
	if s := first.Annotations["summary"]; s != "" {
		return name + ": " + s
	}
	return name
}

func firedText(rec *engine.Record) string {
	names := map[string]bool{}
	for _, a := range rec.Alerts {
		n := a.Labels["alertname"]
		if n == "" {
			n = a.Type
		}
		names[n] = true
	}
	text := "first alert fired"
	if len(names) > 0 {
		text += ": " + strings.Join(slices.Sorted(maps.Keys(names)), ", ")
	}
	if rec.Source != "" {
		text += " (" + rec.Source + ")"
	}
	return text
}

// Markdown renders the report.
func (r Incident) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Incident report %s", r.ID)
	if r.Title != "" {
		fmt.Fprintf(&b, ": %s", r.Title)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "- Runbook: %s · Severity: %s · Status: %s\n", orDash(r.Runbook), orDash(string(r.Severity)), orDash(string(r.Status)))
	fmt.Fprintf(&b, "- Started: %s", r.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	if !r.ResolvedAt.IsZero() {
		fmt.Fprintf(&b, " · Resolved: %s", r.ResolvedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	b.WriteString("\n")
	if r.TTA != nil {
		fmt.Fprintf(&b, "- TTA: %s (first acknowledged by %s)\n", Duration(*r.TTA), r.AckedBy)
	} else {
		b.WriteString("- TTA: — (not acknowledged)\n")
	}
	if r.TTR != nil {
		fmt.Fprintf(&b, "- TTR: %s\n", Duration(*r.TTR))
	} else {
		b.WriteString("- TTR: — (still open)\n")
	}
	fmt.Fprintf(&b, "- Escalations: %d\n\n### Timeline (UTC)\n", r.Escalations)
	day := ""
	for _, e := range r.Timeline {
		at := e.At.UTC()
		stamp := at.Format("15:04:05")
		if d := at.Format("2006-01-02"); d != day {
			stamp, day = d+" "+stamp, d
		}
		fmt.Fprintf(&b, "- %s · %s · %s\n", stamp, strings.ReplaceAll(e.Kind, "_", " "), oneLine(e.Text))
	}
	return b.String()
}

// Summary is many incidents at a glance.
type Summary struct {
	Since          time.Time
	Count          int
	ByRunbook      map[string]int
	BySeverity     map[string]int
	TTA, TTR       Stats
	Unresolved     int
	Unacknowledged int
}

// Stats are the median and 90th percentile of a set of durations.
type Stats struct {
	N           int
	Median, P90 time.Duration
}

// Summarize counts incidents by runbook and severity and computes the
// median and p90 of their TTA (over those acknowledged) and TTR (over
// those resolved).
func Summarize(since time.Time, reps []Incident) Summary {
	s := Summary{Since: since, Count: len(reps), ByRunbook: map[string]int{}, BySeverity: map[string]int{}}
	var ttas, ttrs []time.Duration
	for _, r := range reps {
		s.ByRunbook[orDash(r.Runbook)]++
		s.BySeverity[orDash(string(r.Severity))]++
		if r.TTA != nil {
			ttas = append(ttas, *r.TTA)
		} else {
			s.Unacknowledged++
		}
		if r.TTR != nil {
			ttrs = append(ttrs, *r.TTR)
		} else {
			s.Unresolved++
		}
	}
	s.TTA, s.TTR = stats(ttas), stats(ttrs)
	return s
}

// stats computes the median (the mean of the two middle values for an
// even count) and the 90th percentile by nearest rank (the smallest value
// at or above which 90% of them lie).
func stats(ds []time.Duration) Stats {
	n := len(ds)
	if n == 0 {
		return Stats{}
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	med := ds[n/2]
	if n%2 == 0 {
		med = (ds[n/2-1] + ds[n/2]) / 2
	}
	rank := (90*n + 99) / 100 // ceil(0.9 n)
	return Stats{N: n, Median: med, P90: ds[rank-1]}
}

// Markdown renders the summary.
func (s Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Incidents since %s: %d\n", s.Since.UTC().Format("2006-01-02 15:04 UTC"), s.Count)
	if s.Count == 0 {
		return b.String()
	}
	count := func(title string, m map[string]int) {
		fmt.Fprintf(&b, "\n### By %s\n", title)
		keys := slices.SortedFunc(maps.Keys(m), func(a, c string) int {
			return cmp.Or(cmp.Compare(m[c], m[a]), cmp.Compare(a, c))
		})
		for _, k := range keys {
			fmt.Fprintf(&b, "- %s: %d\n", k, m[k])
		}
	}
	count("runbook", s.ByRunbook)
	count("severity", s.BySeverity)
	b.WriteString("\n### Response times\n")
	line := func(name string, st Stats, of string, missing int, why string) {
		if st.N == 0 {
			fmt.Fprintf(&b, "- %s: — (none %s)\n", name, of)
			return
		}
		fmt.Fprintf(&b, "- %s: median %s, p90 %s (over %d %s", name, Duration(st.Median), Duration(st.P90), st.N, of)
		if missing > 0 {
			fmt.Fprintf(&b, "; %d %s", missing, why)
		}
		b.WriteString(")\n")
	}
	line("TTA", s.TTA, "acknowledged", s.Unacknowledged, "never acknowledged")
	line("TTR", s.TTR, "resolved", s.Unresolved, "still open")
	return b.String()
}

// Duration renders a duration exactly to the second: 3m, 1h20m, 45s,
// 2h0m5s.
func Duration(d time.Duration) string {
	d = d.Round(time.Second)
	if d <= 0 {
		return "0s"
	}
	h, m, sec := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var s string
	if h > 0 {
		s += fmt.Sprintf("%dh", h)
	}
	if m > 0 || (h > 0 && sec > 0) {
		s += fmt.Sprintf("%dm", m)
	}
	if sec > 0 {
		s += fmt.Sprintf("%ds", sec)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
