package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/input"
)

// Approvals. A remediation step runs only when its runbook's policy is
// met; whether it is, is decided by Decide, a pure function of the policy,
// the request, the votes cast and the time, so every replica (and a test)
// decides the same from the same record.
//
// Who is an approver is resolved when a vote is cast, outside apply: the
// Slack handler checks the voter against the policy's user ids and user
// groups (through usergroups.users.list, cached) and records on the vote
// the approver entry they matched (Vote.As). A person who matches none is
// refused at once, ephemerally, and no vote is sent; Decide counts only
// votes whose As is still in the policy.

// ApprovalPolicy is a step's approval policy (the runbook's `approval`).
type ApprovalPolicy struct {
	// Approvers are Slack user ids (U…, W…), user group handles (@oncall)
	// or ids (S…), or roles (role:sre).
	Approvers         []string      `json:"approvers,omitempty"`
	MinApprovals      int           `json:"min_approvals"`
	AllowSelfApproval bool          `json:"allow_self_approval,omitempty"`
	Expires           time.Duration `json:"expires"`
}

// Vote is one person's approve or deny of a request.
type Vote struct {
	By      input.Actor `json:"by"`
	At      time.Time   `json:"at"`
	Approve bool        `json:"approve"`
	// Hash is the plan hash the voter saw.
	Hash string `json:"hash"`
	// As is the policy's approver entry the voter matched when voting:
	// their own user id, or a group they were a member of.
	As string `json:"as"`
}

// Decision is what Decide found.
type Decision struct {
	State DecisionState
	// Approvals are the distinct people whose approval counts, in order.
	Approvals []input.Actor
	// Need is how many more approvals are needed while pending.
	Need int
	// Reason says why in a sentence, for the card and the audit trail.
	Reason string
}

// DecisionState is where a request stands.
type DecisionState string

// States of a request.
const (
	DecisionPending  DecisionState = "pending"
	DecisionApproved DecisionState = "approved"
	DecisionDenied   DecisionState = "denied"
	DecisionExpired  DecisionState = "expired"
	// DecisionVoid: the plan changed since the request; its votes bound to
	// the old plan count for nothing.
	DecisionVoid DecisionState = "void"
)

// Decide says whether a request made by requester at requestedAt for the
// plan with hash reqHash is approved under p at now, given the votes.
// curHash is the hash of the plan as resolved now: when it differs from
// reqHash, the plan changed and the request is void. Votes for another
// hash, by a person who is not an approver under p, or by the requester
// (unless p allows it) do not count; each person counts once, with their
// latest vote. One deny from an approver denies. A request past its
// expiry is expired, whatever the votes.
func Decide(p ApprovalPolicy, votes []Vote, requester Mark, reqHash, curHash string, now time.Time) Decision {
	if curHash != "" && curHash != reqHash {
		return Decision{State: DecisionVoid, Reason: fmt.Sprintf("the plan changed since it was requested (plan %s, now %s): request it again", short(reqHash), short(curHash))}
	}
	if p.Expires > 0 && !now.Before(requester.At.Add(p.Expires)) {
		return Decision{State: DecisionExpired, Reason: fmt.Sprintf("the request by %s expired after %s", requester.By, p.Expires)}
	}
	min := max(p.MinApprovals, 1)
	// Each person's latest vote on this plan.
	latest := map[string]Vote{}
	var order []string
	for _, v := range votes {
		if v.Hash != reqHash {
			continue
		}
		if ok, _ := MayApprove(p, v.By, v.As, requester.By); !ok {
			continue
		}
		id := personID(v.By)
		cur, seen := latest[id]
		if !seen {
			order = append(order, id)
		}
		if !seen || v.At.After(cur.At) {
			latest[id] = v
		}
	}
	var yes []input.Actor
	for _, id := range order {
		v := latest[id]
		if !v.Approve {
			return Decision{State: DecisionDenied, Reason: "denied by " + v.By.String()}
		}
		yes = append(yes, v.By)
	}
	if len(yes) >= min {
		return Decision{State: DecisionApproved, Approvals: yes, Reason: "approved by " + actors(yes)}
	}
	d := Decision{State: DecisionPending, Approvals: yes, Need: min - len(yes)}
	d.Reason = fmt.Sprintf("%d of %d approvals", len(yes), min)
	if len(yes) > 0 {
		d.Reason += " (" + actors(yes) + ")"
	}
	return d
}

// decideInTime decides a request from its votes in the order people cast
// them (their At), not the order the bus delivered them in: the first vote
// that settles the policy settles the request, and votes cast after it
// change nothing. So a set of votes gives one decision whatever order they
// are applied in. It also returns when the request was settled (the
// deciding vote's time; zero while pending). A request past its expiry at
// now is expired, as with Decide.
func decideInTime(p ApprovalPolicy, votes []Vote, requester Mark, hash string, now time.Time) (Decision, time.Time) {
	if d := Decide(p, nil, requester, hash, hash, now); d.State != DecisionPending {
		return d, now
	}
	sorted := slices.Clone(votes)
	slices.SortFunc(sorted, voteOrder)
	for i := range sorted {
		if d := Decide(p, sorted[:i+1], requester, hash, hash, now); d.State != DecisionPending {
			return d, sorted[i].At
		}
	}
	return Decide(p, sorted, requester, hash, hash, now), time.Time{}
}

// voteOrder orders votes by when they were cast; ties (the same instant)
// by who, then how, so the order never depends on arrival.
func voteOrder(a, b Vote) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := strings.Compare(personID(a.By), personID(b.By)); c != 0 {
		return c
	}
	if a.Approve != b.Approve {
		if a.Approve {
			return 1 // a deny first: the safer reading of a tie
		}
		return -1
	}
	if c := strings.Compare(a.Hash, b.Hash); c != 0 {
		return c
	}
	return strings.Compare(a.As, b.As)
}

// MayApprove says whether voter, who matched the approver entry as when
// voting (empty: none), may vote on a request by requester under p; when
// not, why, in a sentence for them.
func MayApprove(p ApprovalPolicy, voter input.Actor, as string, requester input.Actor) (bool, string) {
	if as == "" || !slices.Contains(p.Approvers, as) {
		return false, "you are not an approver of this step: it needs " + strings.Join(p.Approvers, ", ")
	}
	if isUserID(as) && as != voter.ID {
		return false, "you are not an approver of this step: it needs " + strings.Join(p.Approvers, ", ")
	}
	if !p.AllowSelfApproval && personID(voter) == personID(requester) {
		return false, "you requested this step, and its policy does not let the requester approve it: another approver must"
	}
	return true, ""
}

// isUserID reports whether an approver entry is one Slack user (U…, W…).
func isUserID(s string) bool {
	return len(s) > 1 && (s[0] == 'U' || s[0] == 'W') && strings.ToUpper(s) == s
}

// personID identifies a person across votes: their user id in the system
// they came through.
func personID(a input.Actor) string {
	if a.ID != "" {
		return a.Via + ":" + a.ID
	}
	return a.Via + ":name:" + a.Name
}

func actors(as []input.Actor) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// String describes the policy in one line for a card, as the runbook's
// loader does.
func (p ApprovalPolicy) String() string {
	var b strings.Builder
	if p.MinApprovals <= 1 {
		b.WriteString("1 approval")
	} else {
		fmt.Fprintf(&b, "%d approvals", p.MinApprovals)
	}
	if len(p.Approvers) > 0 {
		b.WriteString(" from " + strings.Join(p.Approvers, ", "))
	}
	if p.AllowSelfApproval {
		b.WriteString("; requester may approve")
	} else {
		b.WriteString("; not the requester")
	}
	fmt.Fprintf(&b, "; expires after %s", p.Expires)
	return b.String()
}
