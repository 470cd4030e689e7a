package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

var t0 = time.Date(2025, 8, 13, 14, 0, 0, 0, time.UTC)

func testEnv(now time.Time) applyEnv {
	return applyEnv{
		Now: now, ReopenWindow: time.Hour, Runbook: "rb", Key: "inc.test",
		Severity: func(l map[string]string) notify.Severity { return notify.Severity(l["severity"]) },
		Levels: []notify.EscalationLevel{
			{Name: "L1", After: 0, Who: "@oncall"}, {Name: "L2", After: 30 * time.Minute, Who: "@senior", Mention: []string{"S0SENIORS"}}, {Name: "L3", After: time.Hour, Who: "@arch"},
		},
		NewID: func() string { return "INC-TEST" },
	}
}

func sig(fp string, st signal.Status, starts time.Time) input.Input {
	s := signal.Signal{Source: "alertmanager", Type: "alertmanager.alert", GroupKey: "g", Fingerprint: fp, Status: st,
		Labels: map[string]string{"alertname": "A" + fp, "severity": "critical"}, StartsAt: starts}
	if st == signal.Resolved {
		s.EndsAt = starts.Add(20 * time.Minute)
	}
	return input.Input{Kind: input.Signal, ID: "sig/" + fp + string(st), At: starts, Signal: s}
}

func cmd(kind input.Kind, id string, at time.Time, who string) input.Input {
	return input.Input{Kind: kind, ID: id, At: at, Incident: "INC-TEST", Actor: input.Actor{ID: who, Name: who, Via: "slack"}, Text: "text " + id}
}

// apply1 applies one input the way the engine does.
func apply1(r *Record, in input.Input, now time.Time) (*Record, Result) {
	return applyWith(testEnv, r, in, now)
}

func applyWith(envAt func(time.Time) applyEnv, r *Record, in input.Input, now time.Time) (*Record, Result) {
	if in.Kind == input.Signal {
		return applySignals(r, []input.Input{in}, envAt(now))
	}
	return applyInput(r, in, envAt(now))
}

// summary is the state an order must not change: everything but the
// timeline's order and the bookkeeping of versions and tokens.
func summary(r *Record) string {
	if r == nil {
		return "<nil>"
	}
	var alerts []string
	for fp, a := range r.Alerts {
		alerts = append(alerts, fp+"="+string(a.Status))
	}
	slices.Sort(alerts)
	var notes []string
	for id, n := range r.Notes {
		notes = append(notes, id+":"+n.Text)
	}
	slices.Sort(notes)
	ack := "-"
	if r.Ack != nil {
		ack = r.Ack.By.ID + "@" + r.Ack.At.Format("15:04")
	}
	man := "-"
	if r.ManualResolve != nil {
		man = r.ManualResolve.By.ID
	}
	s := fmt.Sprintf("status=%s sev=%s alerts=%v ack=%s manual=%s notes=%v started=%s esc.next=%d",
		r.Status, r.Severity, alerts, ack, man, notes, r.StartedAt.Format("15:04"), r.Escalation.Next)
	if len(r.Steps) > 0 || len(r.EarlyVotes) > 0 {
		var steps []string
		for id, q := range r.Steps {
			steps = append(steps, fmt.Sprintf("%s=%s(%s) plan %s by %s decided %s timer=%v", id, q.State, q.Reason, q.Hash,
				q.Requested.By.ID, q.DecidedAt.Format("15:04"), q.Token != ""))
		}
		slices.Sort(steps)
		s += fmt.Sprintf(" steps=%v early=%d", steps, len(r.EarlyVotes))
	}
	return s
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

// TestApplyIsOrderIndependent feeds one incident's alerts and commands in
// every order, each input delivered twice, and wants one final state.
func TestApplyIsOrderIndependent(t *testing.T) {
	cases := []struct {
		name string
		// opener is applied first (an incident must exist for commands).
		opener input.Input
		ins    []input.Input
		want   string
		// quorum, when set, gives the incident's runbook the step
		// disable-feature needing that many approvals (stepEnv).
		quorum int
	}{
		{
			name:   "acks, an unack, a note and a second alert",
			opener: sig("1", signal.Firing, t0),
			ins: []input.Input{
				cmd(input.Ack, "c1", t0.Add(1*time.Minute), "ada"),
				cmd(input.Ack, "c2", t0.Add(2*time.Minute), "bob"),
				cmd(input.Unack, "c3", t0.Add(3*time.Minute), "ada"),
				cmd(input.Ack, "c4", t0.Add(4*time.Minute), "cy"),
				cmd(input.Note, "c5", t0.Add(5*time.Minute), "ada"),
				sig("2", signal.Firing, t0.Add(30*time.Second)),
			},
			want: "status=acknowledged sev=critical alerts=[1=firing 2=firing] ack=cy@14:04 manual=- notes=[c5:text c5] started=14:00 esc.next=1",
		},
		{
			name:   "a resolve by hand while an alert still fires, and an ack after it",
			opener: sig("1", signal.Firing, t0),
			ins: []input.Input{
				sig("2", signal.Firing, t0.Add(time.Minute)),
				cmd(input.Resolve, "c1", t0.Add(5*time.Minute), "ada"),
				cmd(input.Ack, "c2", t0.Add(6*time.Minute), "bob"),
				sig("1", signal.Resolved, t0),
			},
			want: "status=resolved sev=critical alerts=[1=resolved 2=firing] ack=bob@14:06 manual=ada notes=[] started=14:00 esc.next=1",
		},
		{
			name:   "every alert resolves, then a late ack does not reopen",
			opener: sig("1", signal.Firing, t0),
			ins: []input.Input{
				sig("1", signal.Resolved, t0),
				cmd(input.Ack, "c1", t0.Add(25*time.Minute), "ada"),
				cmd(input.Note, "c2", t0.Add(26*time.Minute), "ada"),
			},
			want: "status=resolved sev=critical alerts=[1=resolved] ack=ada@14:25 manual=- notes=[c2:text c2] started=14:00 esc.next=1",
		},
		{
			// With two replicas a vote sent right after its request can
			// be applied first; votes count in the order they were cast.
			name:   "a request, two approvals and a deny cast after them",
			opener: sig("1", signal.Firing, t0),
			quorum: 2,
			ins: []input.Input{
				stepCmd(input.Request, "s1", t0.Add(1*time.Minute), "ada", "disable-feature", "h1", ""),
				stepCmd(input.Approve, "s2", t0.Add(2*time.Minute), "bob", "disable-feature", "h1", "bob"),
				stepCmd(input.Approve, "s3", t0.Add(3*time.Minute), "cy", "disable-feature", "h1", "@oncall"),
				stepCmd(input.Deny, "s4", t0.Add(4*time.Minute), "dan", "disable-feature", "h1", "@oncall"),
			},
			want: "status=firing sev=critical alerts=[1=firing] ack=- manual=- notes=[] started=14:00 esc.next=1 " +
				"steps=[disable-feature=approved(approved by bob (slack), cy (slack)) plan h1 by ada decided 14:03 timer=false] early=0",
		},
		{
			name:   "a request, two approvals and a deny cast between them",
			opener: sig("1", signal.Firing, t0),
			quorum: 2,
			ins: []input.Input{
				stepCmd(input.Request, "s1", t0.Add(1*time.Minute), "ada", "disable-feature", "h1", ""),
				stepCmd(input.Approve, "s2", t0.Add(2*time.Minute), "bob", "disable-feature", "h1", "bob"),
				stepCmd(input.Deny, "s4", t0.Add(150*time.Second), "dan", "disable-feature", "h1", "@oncall"),
				stepCmd(input.Approve, "s3", t0.Add(3*time.Minute), "cy", "disable-feature", "h1", "@oncall"),
			},
			want: "status=firing sev=critical alerts=[1=firing] ack=- manual=- notes=[] started=14:00 esc.next=1 " +
				"steps=[disable-feature=denied(denied by dan (slack)) plan h1 by ada decided 14:02 timer=false] early=0",
		},
		{
			name:   "the requester's own approval does not count, early or not",
			opener: sig("1", signal.Firing, t0),
			quorum: 1,
			ins: []input.Input{
				stepCmd(input.Request, "s1", t0.Add(1*time.Minute), "ada", "disable-feature", "h1", ""),
				stepCmd(input.Approve, "s2", t0.Add(2*time.Minute), "ada", "disable-feature", "h1", "ada"),
				stepCmd(input.Approve, "s3", t0.Add(3*time.Minute), "bob", "disable-feature", "h1", "bob"),
			},
			want: "status=firing sev=critical alerts=[1=firing] ack=- manual=- notes=[] started=14:00 esc.next=1 " +
				"steps=[disable-feature=approved(approved by bob (slack)) plan h1 by ada decided 14:03 timer=false] early=0",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			envAt := testEnv
			if tc.quorum > 0 {
				envAt = func(now time.Time) applyEnv { return stepEnv(now, tc.quorum) }
			}
			for _, p := range permutations(len(tc.ins)) {
				now := t0.Add(10 * time.Second)
				r, _ := applyWith(envAt, nil, tc.opener, now)
				var order []string
				for _, i := range p {
					in := tc.ins[i]
					order = append(order, in.ID)
					for range 2 { // every input redelivered
						now = now.Add(time.Second)
						r, _ = applyWith(envAt, r, in, now)
					}
				}
				if got := summary(r); got != tc.want {
					t.Fatalf("order %v:\n got  %s\n want %s", order, got, tc.want)
				}
			}
		})
	}
}

func TestApplySaysWhyNothingChanged(t *testing.T) {
	r, res := apply1(nil, sig("1", signal.Firing, t0), t0)
	if res.change != opened || r.Status != notify.StatusFiring {
		t.Fatalf("open: %v %s", res, r.Status)
	}
	tests := []struct {
		name  string
		in    input.Input
		stale bool
		why   string
	}{
		{"a timer with an old token", input.Input{Kind: input.EscalationDue, ID: "t1", At: t0, Incident: r.ID, Token: "old"}, true, "escalation timer no longer current"},
		{"an unknown kind", input.Input{Kind: "dance", ID: "x", Incident: r.ID}, false, `unknown input kind "dance"`},
	}
	for _, tc := range tests {
		_, res := apply1(r, tc.in, t0.Add(time.Minute))
		if res.Changed() || res.Stale != tc.stale || res.Reason != tc.why {
			t.Errorf("%s: %+v, want no change, stale=%v, %q", tc.name, res, tc.stale, tc.why)
		}
	}
	ackedRec, res := apply1(r, cmd(input.Ack, "a1", t0.Add(time.Minute), "ada"), t0.Add(time.Minute))
	if res.change != acked {
		t.Fatalf("ack: %v", res)
	}
	if _, res := apply1(ackedRec, cmd(input.Ack, "a1", t0.Add(time.Minute), "ada"), t0.Add(2*time.Minute)); res.Changed() || res.Reason != "already applied" {
		t.Fatalf("the same command twice: %+v", res)
	}
	second, _ := apply1(ackedRec, cmd(input.Ack, "a2", t0.Add(3*time.Minute), "bob"), t0.Add(3*time.Minute))
	if second.Ack.By.ID != "ada" || len(second.Timeline) != len(ackedRec.Timeline) {
		t.Fatalf("a second, later ack took over or spoke: %+v, %d entries", second.Ack, len(second.Timeline))
	}
	if _, res := apply1(nil, cmd(input.Ack, "a3", t0, "ada"), t0); res.Changed() || !res.Stale {
		t.Fatalf("ack of nothing: %+v", res)
	}
}

func TestEscalationLadder(t *testing.T) {
	r, _ := apply1(nil, sig("1", signal.Firing, t0), t0)
	// L1 (after 0) is the opening itself; L2 is armed for +30m.
	if r.Escalation.Next != 1 || !r.Escalation.DueAt.Equal(t0.Add(30*time.Minute)) || r.Escalation.Token == "" {
		t.Fatalf("after open: %+v", r.Escalation)
	}
	tok := r.Escalation.Token
	due := input.Input{Kind: input.EscalationDue, ID: "timer." + tok, At: t0.Add(30 * time.Minute), Incident: r.ID, Token: tok}
	r2, res := apply1(r, due, t0.Add(30*time.Minute))
	if res.change != escalated || r2.Escalation.Next != 2 || !r2.Escalation.DueAt.Equal(t0.Add(time.Hour)) || r2.Escalation.Token == tok {
		t.Fatalf("L2 due: %v %+v", res, r2.Escalation)
	}
	if u := r2.Timeline[len(r2.Timeline)-1]; u.Kind != "escalated" || u.Text != "No acknowledgement after 30m: escalating to L2 → @senior" || fmt.Sprint(u.Mention) != "[S0SENIORS]" {
		t.Fatalf("timeline: %+v", u)
	}
	// The same timer again (redelivered) is fenced.
	if _, res := apply1(r2, due, t0.Add(31*time.Minute)); res.Changed() {
		t.Fatalf("a fired timer again: %+v", res)
	}
	// An ack disarms; an unack resumes from L3 with the same gap.
	r3, _ := apply1(r2, cmd(input.Ack, "a", t0.Add(40*time.Minute), "ada"), t0.Add(40*time.Minute))
	if r3.Escalation.Token != "" {
		t.Fatalf("ack left a timer armed: %+v", r3.Escalation)
	}
	r4, _ := apply1(r3, cmd(input.Unack, "u", t0.Add(50*time.Minute), "ada"), t0.Add(50*time.Minute))
	if r4.Escalation.Token == "" || !r4.Escalation.DueAt.Equal(t0.Add(50*time.Minute+30*time.Minute)) {
		t.Fatalf("unack: %+v", r4.Escalation)
	}
	// Escalate by hand jumps to L3 now; nothing is left after it.
	r5, res := apply1(r4, cmd(input.Escalate, "e", t0.Add(51*time.Minute), "ada"), t0.Add(51*time.Minute))
	if res.change != escalated || r5.Escalation.Next != 3 || r5.Escalation.Token != "" {
		t.Fatalf("escalate: %v %+v", res, r5.Escalation)
	}
	if _, res := apply1(r5, cmd(input.Escalate, "e2", t0.Add(52*time.Minute), "ada"), t0.Add(52*time.Minute)); res.Changed() || res.Reason != "no escalation level left" {
		t.Fatalf("escalate past the top: %+v", res)
	}
}

func TestTruncationNoticeFollowsTheLatestNotification(t *testing.T) {
	in := sig("1", signal.Firing, t0)
	in.Truncated = 3
	r, _ := apply1(nil, in, t0)
	if r.TruncatedAlerts != 3 {
		t.Fatalf("truncated %d, want 3", r.TruncatedAlerts)
	}
	in.Truncated = 0 // the same alert, now in a complete notification
	r2, res := apply1(r, in, t0.Add(time.Minute))
	if !res.Changed() || r2.TruncatedAlerts != 0 || r2.Version <= r.Version {
		t.Fatalf("a complete notification left the notice: %+v, truncated %d", res, r2.TruncatedAlerts)
	}
	if _, res := apply1(r2, in, t0.Add(2*time.Minute)); res.Changed() {
		t.Fatalf("a repeat changed the incident: %+v", res)
	}
}

// TestJoinKeepsTheIncidentsRunbook: signals of another runbook of the
// correlation group join the incident: each alert keeps the severity its
// own runbook gives it, the ladder stays the incident's, and the thread and
// card say where the alert came from.
func TestJoinKeepsTheIncidentsRunbook(t *testing.T) {
	opener := sig("a", signal.Firing, t0)
	opener.Signal.Labels["severity"] = "warning"
	rec, res := applySignals(nil, []input.Input{opener}, testEnv(t0))
	if res.change != opened || rec.Severity != notify.SeverityWarning || rec.Escalation.DueAt != t0.Add(30*time.Minute) {
		t.Fatalf("opened: %v, severity %s, due %s", res, rec.Severity, rec.Escalation.DueAt)
	}

	env := testEnv(t0.Add(time.Minute))
	env.Runbook = "other"
	// The other runbook maps every alert to critical and escalates later.
	env.Severity = func(map[string]string) notify.Severity { return notify.SeverityCritical }
	env.Levels = []notify.EscalationLevel{{Name: "X1", After: 0}, {Name: "X2", After: 5 * time.Hour}}
	env.OwnerLevels = testEnv(t0).Levels
	joiner := sig("b", signal.Firing, t0.Add(time.Minute))
	joiner.Signal.Source = "solana"
	joiner.Signal.Labels["severity"] = "warning"
	rec, res = applySignals(rec, []input.Input{joiner}, env)
	if res.change != updated || rec.Runbook != "rb" || rec.Severity != notify.SeverityCritical {
		t.Fatalf("joined: %v, runbook %s, severity %s", res, rec.Runbook, rec.Severity)
	}
	if a := rec.Alerts["a"]; a.Severity != notify.SeverityWarning || a.Runbook != "" {
		t.Errorf("opener's alert: %+v", a)
	}
	if b := rec.Alerts["b"]; b.Severity != notify.SeverityCritical || b.Runbook != "other" || b.Source != "solana" {
		t.Errorf("joined alert: %+v", b)
	}
	if u := rec.Timeline[len(rec.Timeline)-1]; u.Kind != "joined" || u.Text != "Joined from Solana watchers (runbook other): Ab" {
		t.Errorf("timeline: %+v", u)
	}
	if rec.Escalation.Next != 1 || rec.Escalation.DueAt != t0.Add(30*time.Minute) {
		t.Errorf("escalation %+v: want the incident's own L2 at 30m", rec.Escalation)
	}

	// The opener's alert resolving leaves the joined one firing.
	r := sig("a", signal.Resolved, t0)
	rec, _ = applySignals(rec, []input.Input{r}, testEnv(t0.Add(20*time.Minute)))
	if rec.Status != notify.StatusFiring || rec.Severity != notify.SeverityCritical {
		t.Errorf("after the opener resolved: %s %s", rec.Status, rec.Severity)
	}
}

// TestRefreshRedrawsAndChangesNothingElse: a refresh gives the record a new
// version (so the card is drawn again, its plans resolved anew) with no
// timeline entry and nothing else changed; the same refresh again is a
// no-op.
func TestRefreshRedrawsAndChangesNothingElse(t *testing.T) {
	r, _ := apply1(nil, sig("1", "firing", t0), t0)
	at := t0.Add(time.Minute)
	next, res := apply1(r, cmd(input.Refresh, "r1", at, "ada"), at)
	if !res.Changed() || res.String() != "redrawn" {
		t.Fatalf("refresh: %s, want redrawn", res)
	}
	if next.Version != r.Version+1 || len(next.Timeline) != len(r.Timeline) || next.Status != r.Status || next.Ack != nil {
		t.Fatalf("after a refresh: version %d (was %d), %d timeline entries (was %d), status %s; want one version more and nothing else",
			next.Version, r.Version, len(next.Timeline), len(r.Timeline), next.Status)
	}
	if _, res := apply1(next, cmd(input.Refresh, "r1", at, "ada"), at); res.Changed() {
		t.Fatalf("the same refresh again: %s, want no change", res)
	}
	if err := (input.Input{Kind: input.Refresh, ID: "r2", Incident: "INC-TEST"}).Validate(); err != nil {
		t.Fatalf("a refresh input does not validate: %v", err)
	}
}
