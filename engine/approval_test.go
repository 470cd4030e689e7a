package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/input"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	ada := input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}
	bob := input.Actor{ID: "U0BOB", Name: "Bob", Via: "slack"}
	cy := input.Actor{ID: "U0CY", Name: "Cy", Via: "slack"}
	one := ApprovalPolicy{Approvers: []string{"U0ADA", "U0BOB", "@oncall"}, MinApprovals: 1, Expires: 15 * time.Minute}
	two := one
	two.MinApprovals = 2
	self := one
	self.AllowSelfApproval = true
	req := Mark{By: ada, At: t0}
	yes := func(a input.Actor, as string, min int) Vote {
		return Vote{By: a, At: t0.Add(time.Duration(min) * time.Minute), Approve: true, Hash: "h1", As: as}
	}
	no := func(a input.Actor, as string, min int) Vote {
		v := yes(a, as, min)
		v.Approve = false
		return v
	}
	for _, tc := range []struct {
		name  string
		p     ApprovalPolicy
		votes []Vote
		cur   string
		at    time.Duration
		want  DecisionState
		why   string
	}{
		{"no votes", one, nil, "h1", time.Minute, DecisionPending, "0 of 1 approvals"},
		{"a second person approves", one, []Vote{yes(bob, "U0BOB", 1)}, "h1", 2 * time.Minute, DecisionApproved, "approved by Bob (slack)"},
		{"self-approval does not count", one, []Vote{yes(ada, "U0ADA", 1)}, "h1", 2 * time.Minute, DecisionPending, "0 of 1"},
		{"self-approval where allowed", self, []Vote{yes(ada, "U0ADA", 1)}, "h1", 2 * time.Minute, DecisionApproved, "approved by Ada"},
		{"a quorum of 2 needs two people", two, []Vote{yes(bob, "U0BOB", 1), yes(bob, "U0BOB", 2)}, "h1", 3 * time.Minute, DecisionPending, "1 of 2 approvals (Bob (slack))"},
		{"a quorum of 2 met", two, []Vote{yes(bob, "U0BOB", 1), yes(cy, "@oncall", 2)}, "h1", 3 * time.Minute, DecisionApproved, "approved by Bob (slack), Cy (slack)"},
		{"a non-approver does not count", one, []Vote{yes(cy, "", 1)}, "h1", 2 * time.Minute, DecisionPending, "0 of 1"},
		{"a user id approver is that user only", one, []Vote{yes(cy, "U0BOB", 1)}, "h1", 2 * time.Minute, DecisionPending, "0 of 1"},
		{"an entry no longer in the policy", one, []Vote{yes(cy, "@old", 1)}, "h1", 2 * time.Minute, DecisionPending, "0 of 1"},
		{"a deny denies", two, []Vote{yes(bob, "U0BOB", 1), no(cy, "@oncall", 2)}, "h1", 3 * time.Minute, DecisionDenied, "denied by Cy (slack)"},
		{"the latest vote of a person counts", one, []Vote{no(bob, "U0BOB", 1), yes(bob, "U0BOB", 2)}, "h1", 3 * time.Minute, DecisionApproved, "approved by Bob"},
		{"expired", one, []Vote{yes(bob, "U0BOB", 1)}, "h1", 15 * time.Minute, DecisionExpired, "expired after 15m0s"},
		{"votes for another plan", one, []Vote{{By: bob, At: t0, Approve: true, Hash: "h0", As: "U0BOB"}}, "h1", time.Minute, DecisionPending, "0 of 1"},
		{"the plan changed", one, []Vote{yes(bob, "U0BOB", 1)}, "h2", 2 * time.Minute, DecisionVoid, "the plan changed since it was requested (plan h1, now h2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.p, tc.votes, req, "h1", tc.cur, t0.Add(tc.at))
			if d.State != tc.want || !strings.Contains(d.Reason, tc.why) {
				t.Errorf("Decide = %s %q, want %s containing %q", d.State, d.Reason, tc.want, tc.why)
			}
		})
	}
}

func TestMayApprove(t *testing.T) {
	ada := input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}
	p := ApprovalPolicy{Approvers: []string{"U0ADA", "@oncall"}, MinApprovals: 1}
	if ok, why := MayApprove(p, ada, "U0ADA", ada); ok || !strings.Contains(why, "does not let the requester approve") {
		t.Errorf("self: %v %q", ok, why)
	}
	if ok, why := MayApprove(p, input.Actor{ID: "U0EVE", Via: "slack"}, "", ada); ok || !strings.Contains(why, "it needs U0ADA, @oncall") {
		t.Errorf("stranger: %v %q", ok, why)
	}
	if ok, _ := MayApprove(p, input.Actor{ID: "U0BOB", Via: "slack"}, "@oncall", ada); !ok {
		t.Error("group member refused")
	}
}
