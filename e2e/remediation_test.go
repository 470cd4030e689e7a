package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// flagRunbook is the trials' runbook. Its steps disable, in the app's real
// Redis, the feature flag named by the label `flag` of the incident's
// first firing alert, under three approval policies. Approvers are Slack
// user ids, so no user group is looked up.
const flagRunbook = `name: flag-trial
title: "Flag trial on {{ .Labels.flag }}"
priority: 10
match:
  matchers: ['alertname="FlagTrial"']
routing:
  critical: {channel: "#trials", page: false}
assessment: [{text: look}]
remediation:
  - id: disable
    title: Disable the flag
    action: featureflag.disable
    params: {flag: "{{ .Labels.flag }}"}
    approval: {approvers: [U0ADA, U0BOB, U0CAT], min_approvals: 1, expires: 10m}
  - id: quorum
    title: Disable the flag, two people agreeing
    action: featureflag.disable
    params: {flag: "{{ .Labels.flag }}"}
    approval: {approvers: [U0ADA, U0BOB, U0CAT], min_approvals: 2, expires: 10m}
  - id: hasty
    title: Disable the flag, now or never
    action: featureflag.disable
    params: {flag: "{{ .Labels.flag }}"}
    approval: {approvers: [U0ADA, U0BOB, U0CAT], min_approvals: 1, expires: 3s}
`

// People of the trials: Ada, Bob and Cat are approvers; Dan is not.
const (
	userAda = "U0ADA"
	userBob = "U0BOB"
	userCat = "U0CAT"
	userDan = "U0DAN"
)

// trialEffectTimeout is engine.effect_timeout in the trials: a run has 3s
// before it counts as begun and never finished (kill -9 scenario).
const trialEffectTimeout = 3 * time.Second

// TestRemediationThroughServe shows remediation end to end through the
// built `serve` binary: signed Slack slash commands over real HTTP, an
// Alertmanager webhook, a real redis-server holding the app's feature
// flags, an external NATS server as the bus, and slack-go's test server
// for the card and its thread. Each scenario has its own bus, Redis and
// Slack and asserts on the Redis key (and how many SETs Redis ever ran),
// the card and thread, and `incidentbot audit --json`. The scenarios run
// at once.
func TestRemediationThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary with redis-server and NATS")
	}
	if _, err := buildBot(); err != nil {
		t.Fatalf("build incidentbot: %v", err)
	}
	scenarios := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ApprovedByAnotherRunsOnce", trialApprovedByAnother},
		{"SelfApprovalRefused", trialSelfApproval},
		{"QuorumNeedsTwoPeople", trialQuorum},
		{"ExpiredRequestCannotRun", trialExpired},
		{"DoubleClickAndRedeliveryRunOnce", trialDoubleClick},
		{"ThreeServesOneBusRunOnce", trialThreeServes},
		{"Kill9MidRunOutcomeUnknown", trialKill9},
		{"UnansweredSetOutcomeUnknown", trialUnansweredSet},
		{"ChangedPlanVoidsApproval", trialChangedPlan},
		{"FreezeBlocksEverything", trialFreeze},
	}
	var wg sync.WaitGroup
	for _, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(sc.name, sc.run)
		}()
	}
	wg.Wait()
}

// 1. Requested by Ada, approved by Bob: one run, verified.
func trialApprovedByAnother(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.fire(addr, "alpha")
	if got := tr.slash(addr, userAda, "run "+id+" disable"); !strings.Contains(got, "Requested `disable`") {
		t.Fatalf("request: %q", got)
	}
	tr.waitCard("the request on the card", "pending: requested by ada")
	if got := tr.slash(addr, userBob, "approve "+id+" disable"); !strings.Contains(got, "approval of `disable`") {
		t.Fatalf("approve: %q", got)
	}
	tr.waitCard("the run verified on the card", "verified: SET feature:alpha false (was missing); verified")
	tr.waitThread("the result in the thread", "✅ disable ran and is verified")
	tr.settle()
	tr.wantFlag("alpha", "false")
	tr.wantSets(1)
	a := tr.waitAudit(id, "the whole story", func(a auditTrail) bool { return a.count("remediation.verified", "disable") == 1 })
	a.want(t, "remediation.requested", "disable", 1, "actor_id", userAda, "state", "pending")
	a.want(t, "remediation.approved", "disable", 1, "actor_id", userBob, "state", "approved")
	a.want(t, "remediation.ran", "disable", 1, "action", "featureflag.disable", "target", "redis feature:alpha")
	a.want(t, "remediation.started", "disable", 1)
	a.want(t, "remediation.verified", "disable", 1, "result", "verified")
	a.sameHash(t, "disable")
}

// 2. Ada may not approve her own request, nor Dan anything: each is told
// so, ephemerally, and nothing runs. Bob's denial then closes it.
func trialSelfApproval(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.requested(addr, "disable")
	if got := tr.slash(addr, userAda, "approve "+id+" disable"); !strings.HasPrefix(got, "⛔") || !strings.Contains(got, "you requested this step") {
		t.Fatalf("self-approval: %q, want a refusal saying she requested it", got)
	}
	if got := tr.slash(addr, userDan, "approve "+id+" disable"); !strings.HasPrefix(got, "⛔") || !strings.Contains(got, "not an approver") {
		t.Fatalf("approval by a non-approver: %q, want a refusal", got)
	}
	// Orders after the refusals (nothing was sent for them): a denial.
	if got := tr.slash(addr, userBob, "deny "+id+" disable"); !strings.Contains(got, "denial of `disable`") {
		t.Fatalf("deny: %q", got)
	}
	tr.waitCard("the denial", "denied: requested by ada")
	tr.settle()
	tr.wantFlag("alpha", "")
	tr.wantSets(0)
	a := tr.waitAudit(id, "the refusals and the denial", func(a auditTrail) bool { return a.count("slack.refused", "") == 2 })
	a.want(t, "remediation.denied", "disable", 1, "actor_id", userBob, "state", "denied")
	a.want(t, "remediation.ran", "disable", 0)
	for _, r := range a.of("slack.refused", "") {
		if r.Attrs["actor_id"] != userAda && r.Attrs["actor_id"] != userDan {
			t.Errorf("refusal of %s audited, want ada's and dan's: %+v", r.Attrs["actor_id"], r)
		}
	}
}

// 3. min_approvals: 2 needs two distinct people: Bob approving twice is
// one approval; Cat's makes two, and the step runs once.
func trialQuorum(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.requested(addr, "quorum")
	tr.slash(addr, userBob, "approve "+id+" quorum")
	tr.waitCard("Bob's approval counted", "1 of 2 approvals (bob (slack))")
	if got := tr.slash(addr, userBob, "approve "+id+" quorum"); strings.HasPrefix(got, "⛔") {
		t.Fatalf("Bob's second approval refused at once (%q): want it accepted and not counted", got)
	}
	tr.settle()
	if c := tr.card(); !strings.Contains(c, "1 of 2 approvals (bob (slack))") {
		t.Fatalf("after Bob approved twice the card says:\n%s\nwant 1 of 2 approvals", c)
	}
	tr.wantSets(0)
	tr.slash(addr, userCat, "approve "+id+" quorum")
	tr.waitCard("the run", "approved by bob (slack), cat (slack)")
	tr.waitCard("the run verified", "verified: SET feature:alpha false")
	tr.settle()
	tr.wantFlag("alpha", "false")
	tr.wantSets(1)
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.verified", "quorum") == 1 })
	a.want(t, "remediation.approved", "quorum", 1, "actor_id", userBob, "state", "pending")
	a.want(t, "remediation.approved", "quorum", 1, "actor_id", userCat, "state", "approved")
	a.want(t, "remediation.ran", "quorum", 1)
	a.want(t, "remediation.verified", "quorum", 1, "result", "verified")
}

// 4. A request that expires (after 3s) cannot run: the card says
// expired, and approving afterwards is refused.
func trialExpired(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.requested(addr, "hasty")
	tr.waitCard("the request expired", "expired: requested by ada")
	tr.waitThread("the expiry in the thread", "The request for hasty expired")
	if got := tr.slash(addr, userBob, "approve "+id+" hasty"); !strings.Contains(got, "already expired") {
		t.Fatalf("approval after expiry: %q, want a refusal saying it expired", got)
	}
	tr.settle()
	if c := tr.card(); !strings.Contains(c, "expired: requested by ada") {
		t.Fatalf("card after the late approval:\n%s", c)
	}
	tr.wantFlag("alpha", "")
	tr.wantSets(0)
	a := tr.waitAudit(id, "the expiry", func(a auditTrail) bool { return a.count("remediation.expired", "hasty") == 1 })
	a.want(t, "remediation.approved", "hasty", 0)
	a.want(t, "remediation.ran", "hasty", 0)
}

// 5. The request double-clicked and redelivered (Slack retrying the same
// trigger), the approval likewise, at once; then both redelivered after
// the run: one request, one approval, one run.
func trialDoubleClick(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.fire(addr, "alpha")
	all := func(user, text string, triggers ...string) {
		var wg sync.WaitGroup
		for _, tg := range triggers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := tr.slashAs(addr, user, text, tg); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	all(userAda, "run "+id+" disable", "req.1", "req.1", "req.2")
	tr.waitCard("the request", "pending: requested by ada")
	all(userBob, "approve "+id+" disable", "apv.1", "apv.1", "apv.2")
	tr.waitCard("the run verified", "verified: SET feature:alpha false")
	all(userAda, "run "+id+" disable", "req.1")
	all(userBob, "approve "+id+" disable", "apv.1")
	if got := tr.slash(addr, userCat, "run "+id+" disable"); !strings.Contains(got, "already ran for this plan (verified): it never runs twice") {
		t.Errorf("a new request after the run: %q, want it refused as already run", got)
	}
	tr.settle()
	tr.wantFlag("alpha", "false")
	tr.wantSets(1)
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.verified", "disable") == 1 })
	a.want(t, "remediation.requested", "disable", 1)
	a.want(t, "remediation.approved", "disable", 1, "actor_id", userBob)
	a.want(t, "remediation.ran", "disable", 1)
	a.want(t, "remediation.verified", "disable", 1, "result", "verified")
}

// 6. Three serve processes on one NATS: the alert reaches the first, the
// request the second, Bob's approval the third and (double-clicked) the
// first. One card, one run.
func trialThreeServes(t *testing.T) {
	tr := newTrial(t, "")
	addrs := []string{tr.serve(), tr.serve(), tr.serve()}
	id := tr.fire(addrs[0], "alpha")
	tr.slash(addrs[1], userAda, "run "+id+" disable")
	tr.waitCard("the request", "pending: requested by ada")
	var wg sync.WaitGroup
	for _, addr := range []string{addrs[2], addrs[0]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tr.slashAs(addr, userBob, "approve "+id+" disable", ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	tr.waitCard("the run verified", "verified: SET feature:alpha false")
	tr.settle()
	tr.wantFlag("alpha", "false")
	tr.wantSets(1)
	if n := len(cards(tr.slack)); n != 1 {
		t.Errorf("%d cards, want 1", n)
	}
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.verified", "disable") == 1 })
	a.want(t, "remediation.ran", "disable", 1)
	a.want(t, "remediation.verified", "disable", 1, "result", "verified")
}

// 7. kill -9 while the run's SET is on its way to Redis (a proxy holds
// it): the SET then lands, as a command in flight does, and the key is
// reset to a sentinel. After the restart the card says "outcome unknown"
// once the run's deadline has passed, and nothing runs again: the
// sentinel stays, and Redis ran no other SET.
func trialKill9(t *testing.T) {
	rd := testenv.StartRedis(t)
	proxy := startRedisProxy(t, rd)
	tr := newTrialWith(t, rd, proxy.url())
	addr := tr.serve()
	first := tr.bots[0]
	id := tr.requested(addr, "disable")
	hold := proxy.holdNextSet()
	tr.slash(addr, userBob, "approve "+id+" disable")
	select {
	case <-hold.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the approved run never sent its SET")
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	hold.release()
	eventually(t, 10*time.Second, "the SET in flight landing", func() bool { return tr.flag("alpha") == "false" })
	if err := rd.Client.Set(context.Background(), "feature:alpha", "sentinel", 0).Err(); err != nil {
		t.Fatal(err)
	}

	tr.restart(first, addr)
	tr.waitCard("outcome unknown on the card", "❓ outcome unknown: check, then retry by hand")
	tr.waitThread("outcome unknown in the thread", "❓ disable: outcome unknown")
	if got := tr.slash(addr, userAda, "run "+id+" disable"); !strings.Contains(got, "already ran for this plan (unknown): it never runs twice") {
		t.Errorf("a new request after the crash: %q, want it refused as already run", got)
	}
	tr.settle()
	tr.wantFlag("alpha", "sentinel")
	tr.wantSets(2) // the run's, once, and the sentinel
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.result", "disable") == 1 })
	a.want(t, "remediation.ran", "disable", 1)
	a.want(t, "remediation.result", "disable", 1, "result", "unknown")
}

// 7b. Redis takes the run's SET and does not answer before the client's
// read timeout (3s), with the run's deadline (15s) far off: the run's
// outcome is unknown, not failed, and the SET is never sent again (a
// retry would apply it twice and record as the state before the value
// it had itself set). Released, the held SET lands once.
func trialUnansweredSet(t *testing.T) {
	rd := testenv.StartRedis(t)
	proxy := startRedisProxy(t, rd)
	tr := newTrialWith(t, rd, proxy.url())
	tr.env = append(tr.env, "INCIDENTBOT_ENGINE_EFFECT_TIMEOUT=15s")
	addr := tr.serve()
	id := tr.requested(addr, "disable")
	hold := proxy.holdNextSet()
	tr.slash(addr, userBob, "approve "+id+" disable")
	select {
	case <-hold.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the approved run never sent its SET")
	}
	tr.waitCard("outcome unknown on the card", "❓ outcome unknown: check, then retry by hand")
	hold.release()
	eventually(t, 10*time.Second, "the held SET landing", func() bool { return tr.flag("alpha") == "false" })
	tr.settle()
	tr.wantSets(1)
	if c := tr.card(); strings.Contains(c, "failed:") || strings.Contains(c, "verified") {
		t.Errorf("card:\n%s\nwant only outcome unknown", c)
	}
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.result", "disable") == 1 })
	a.want(t, "remediation.ran", "disable", 1)
	a.want(t, "remediation.result", "disable", 1, "result", "unknown")
}

// 8. The plan is bound to the alert the incident shows: when its first
// alert resolves and another, naming another flag, keeps firing, the plan
// changes (feature:beta, not feature:alpha). Bob's approval of the old
// plan is void once Cat approves what resolves now; a new request for the
// new plan runs it, and feature:alpha is never touched.
func trialChangedPlan(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	alpha := trialAlert{flag: "alpha", startsAt: tr.start}
	id := tr.requested(addr, "quorum")
	tr.slash(addr, userBob, "approve "+id+" quorum")
	tr.waitCard("Bob's approval", "1 of 2 approvals (bob (slack))")

	alpha.endsAt = time.Now().UTC()
	mustDeliver(t, addr, trialWebhook(tr.group, alpha, trialAlert{flag: "beta", startsAt: tr.start.Add(30 * time.Second)}))
	tr.waitCard("the card showing beta", "Flag trial on beta")
	tr.slash(addr, userCat, "approve "+id+" quorum")
	tr.waitCard("the request void", "void: requested by ada")
	if c := tr.card(); !strings.Contains(c, "the plan changed since it was requested") {
		t.Fatalf("void card does not say why:\n%s", c)
	}
	tr.settle()
	tr.wantSets(0)

	if got := tr.slash(addr, userAda, "run "+id+" quorum"); !strings.Contains(got, "feature:beta") {
		t.Fatalf("new request: %q, want the plan for feature:beta", got)
	}
	tr.waitCard("the new request", "pending: requested by ada")
	tr.slash(addr, userBob, "approve "+id+" quorum")
	tr.waitCard("Bob's approval", "1 of 2 approvals")
	tr.slash(addr, userCat, "approve "+id+" quorum")
	tr.waitCard("the run verified", "verified: SET feature:beta false")
	tr.settle()
	tr.wantFlag("beta", "false")
	tr.wantFlag("alpha", "")
	tr.wantSets(1)
	a := tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.verified", "quorum") == 1 })
	void := a.of("remediation.approved", "quorum")
	if len(void) == 0 || !auditHasAttr(void, "state", "void") {
		t.Errorf("no void approval audited: %+v", void)
	}
	a.want(t, "remediation.ran", "quorum", 1, "target", "redis feature:beta")
}

// 9. `/incident freeze` blocks everything: a request is refused, a vote is
// refused, and an approval that reached the bus anyway (accepted by a
// replica just before the freeze) is void instead of run. After
// `/incident unfreeze` the step is requested, approved and run.
func trialFreeze(t *testing.T) {
	tr := newTrial(t, "")
	addr := tr.serve()
	id := tr.requested(addr, "disable")
	if got := tr.slash(addr, userCat, "freeze game day"); !strings.Contains(got, "Freeze accepted") {
		t.Fatalf("freeze: %q", got)
	}
	tr.waitCard("the freeze on the card", "Remediation frozen by cat (slack)")
	if got := tr.slash(addr, userAda, "run "+id+" quorum"); !strings.Contains(got, "nothing is requested, approved or run") {
		t.Fatalf("request while frozen: %q", got)
	}
	if got := tr.slash(addr, userBob, "approve "+id+" disable"); !strings.Contains(got, "nothing is requested, approved or run") {
		t.Fatalf("approval while frozen: %q", got)
	}
	// A replica that checked the switch just before it was set sends
	// Bob's approval anyway: the engine checks it again before running.
	a := tr.waitAudit(id, "the request", func(a auditTrail) bool { return a.count("remediation.requested", "disable") == 1 })
	hash := a.of("remediation.requested", "disable")[0].Attrs["hash"]
	tr.sendCommand(command.Command{Verb: input.Approve, Incident: id, Step: "disable", Hash: hash, As: userBob,
		By: input.Actor{ID: userBob, Name: "bob", Via: "slack", Transport: slackin.TransportHTTP}, RequestID: "slash:late-approval"})
	tr.waitCard("the approval void", "void: requested by ada")
	if c := tr.card(); !strings.Contains(c, "nothing runs; request it again once unfrozen") {
		t.Fatalf("void card does not say it was frozen:\n%s", c)
	}
	tr.settle()
	tr.wantSets(0)

	if got := tr.slash(addr, userCat, "unfreeze"); !strings.Contains(got, "Unfreeze accepted") {
		t.Fatalf("unfreeze: %q", got)
	}
	tr.waitThread("the unfreeze in the thread", "Remediation unfrozen by cat (slack)")
	tr.slash(addr, userAda, "run "+id+" disable")
	tr.waitCard("the new request", "pending: requested by ada")
	tr.slash(addr, userBob, "approve "+id+" disable")
	tr.waitCard("the run verified", "verified: SET feature:alpha false")
	if c := tr.card(); strings.Contains(c, "Remediation frozen") {
		t.Errorf("card still shows the freeze:\n%s", c)
	}
	tr.settle()
	tr.wantFlag("alpha", "false")
	tr.wantSets(1)
	a = tr.waitAudit(id, "the result", func(a auditTrail) bool { return a.count("remediation.verified", "disable") == 1 })
	a.want(t, "remediation.void", "disable", 1, "state", "void")
	a.want(t, "remediation.ran", "disable", 1)
	a.want(t, "remediation.verified", "disable", 1, "result", "verified")
	all := tr.auditAll()
	if all.count("remediation.freeze", "") != 1 || all.count("remediation.unfreeze", "") != 1 {
		t.Errorf("freeze and unfreeze not audited once each: %d, %d", all.count("remediation.freeze", ""), all.count("remediation.unfreeze", ""))
	}
}

// trial is one scenario's world: its own NATS server (the bus every serve
// of the scenario shares), redis-server, Slack test server and runbooks,
// and the serve processes started on them.
type trial struct {
	t     *testing.T
	nats  string
	redis *testenv.Redis
	slack *slacktestutil.Server
	env   []string  // every serve's environment but its address
	group string    // the Alertmanager group of the scenario's alerts
	start time.Time // when its first alert started
	bots  []*bot
	seq   atomic.Int64
}

// newTrial starts the world; redisURL "" means the bot talks to Redis
// directly.
func newTrial(t *testing.T, redisURL string) *trial {
	return newTrialWith(t, testenv.StartRedis(t), redisURL)
}

func newTrialWith(t *testing.T, rd *testenv.Redis, redisURL string) *trial {
	t.Helper()
	if redisURL == "" {
		redisURL = rd.URL
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flag-trial.yaml"), []byte(flagRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &trial{t: t, nats: startExternalNATS(t), redis: rd, slack: slacktestutil.Start(t), start: time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond),
		group: strings.ToLower(strings.NewReplacer("/", "-", "#", "-").Replace(t.Name()))}
	tr.env = []string{
		"INCIDENTBOT_BUS_URL=" + tr.nats,
		"INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN=" + token,
		"INCIDENTBOT_SLACK_TOKEN=xoxb-e2e",
		"INCIDENTBOT_SLACK_API_URL=" + tr.slack.URL(),
		"INCIDENTBOT_SLACK_CHANNEL_RATE=0", // the fake Slack has no limit
		"INCIDENTBOT_SLACK_STORM_THRESHOLD=0",
		"INCIDENTBOT_SLACK_SIGNING_SECRET=" + signingSecret,
		"INCIDENTBOT_REDIS_URL=" + redisURL,
		"INCIDENTBOT_RUNBOOKS_DIR=" + dir,
		"INCIDENTBOT_ENGINE_EFFECT_TIMEOUT=" + trialEffectTimeout.String(),
	}
	return tr
}

// startExternalNATS runs a NATS server with JetStream in the test process, as an
// external bus would be (bus.url), and returns its URL.
func startExternalNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready after 10s")
	}
	return ns.ClientURL()
}

// serve starts one more `incidentbot serve` on the trial's bus and
// returns its address once it is ready.
func (tr *trial) serve() string {
	tr.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(tr.t))
	tr.bots = append(tr.bots, startBot(tr.t, append([]string{"INCIDENTBOT_LISTEN=" + addr}, tr.env...)...))
	waitReady(tr.t, addr)
	return addr
}

// restart starts a serve in place of a dead one, on the same address.
func (tr *trial) restart(dead *bot, addr string) {
	tr.t.Helper()
	b := startBot(tr.t, append([]string{"INCIDENTBOT_LISTEN=" + addr}, tr.env...)...)
	for i, o := range tr.bots {
		if o == dead {
			tr.bots[i] = b
		}
	}
	waitReady(tr.t, addr)
}

// fire sends the scenario's alert (its flag label naming flag) to addr as
// Alertmanager does and returns the id of the incident on the card.
func (tr *trial) fire(addr, flag string) string {
	tr.t.Helper()
	mustDeliver(tr.t, addr, trialWebhook(tr.group, trialAlert{flag: flag, startsAt: tr.start}))
	var id string
	eventually(tr.t, 30*time.Second, "the card", func() bool {
		id = incidentIDRE.FindString(tr.card())
		return id != ""
	})
	return id
}

// trialAlert is one alert of the scenario's group.
type trialAlert struct {
	flag             string
	startsAt, endsAt time.Time
}

// trialWebhook is an Alertmanager v4 notification of group with alerts.
func trialWebhook(group string, alerts ...trialAlert) []byte {
	var list []map[string]any
	for _, a := range alerts {
		status, ends := "firing", "0001-01-01T00:00:00Z"
		if !a.endsAt.IsZero() {
			status, ends = "resolved", a.endsAt.Format(time.RFC3339Nano)
		}
		list = append(list, map[string]any{
			"status":       status,
			"labels":       map[string]string{"alertname": "FlagTrial", "group": group, "flag": a.flag, "severity": "critical"},
			"annotations":  map[string]string{"summary": "flag " + a.flag + " misbehaves"},
			"startsAt":     a.startsAt.Format(time.RFC3339Nano),
			"endsAt":       ends,
			"generatorURL": "http://prometheus.example:9090/graph",
			"fingerprint":  fmt.Sprintf("%016x", sha256.Sum256([]byte(group+a.flag)))[:16],
		})
	}
	b, _ := json.Marshal(map[string]any{
		"version": "4", "receiver": "incident-bot", "status": "firing", "truncatedAlerts": 0,
		"groupKey":          fmt.Sprintf(`{}:{alertname="FlagTrial", group=%q}`, group),
		"groupLabels":       map[string]string{"alertname": "FlagTrial", "group": group},
		"commonLabels":      map[string]string{"alertname": "FlagTrial", "group": group, "severity": "critical"},
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager.example:9093",
		"alerts":            list,
	})
	return b
}

var trialNames = map[string]string{userAda: "ada", userBob: "bob", userCat: "cat", userDan: "dan"}

// slash sends `/incident text` as user to the serve at addr, signed with
// the signing secret, with a fresh trigger id, and returns the ephemeral
// answer's text.
func (tr *trial) slash(addr, user, text string) string {
	tr.t.Helper()
	got, err := tr.slashAs(addr, user, text, "")
	if err != nil {
		tr.t.Fatal(err)
	}
	return got
}

// slashAs is slash with the given trigger id ("" for a fresh one): Slack
// retrying a command sends the same one again. Safe from any goroutine.
func (tr *trial) slashAs(addr, user, text, trigger string) (string, error) {
	if trigger == "" {
		trigger = fmt.Sprintf("%d.%d.trial", time.Now().UnixNano(), tr.seq.Add(1))
	}
	body := []byte(url.Values{"user_id": {user}, "user_name": {trialNames[user]}, "command": {"/incident"}, "text": {text},
		"channel_id": {"C1"}, "trigger_id": {trigger}}.Encode())
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(signingSecret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+slackin.CommandsPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("/incident %s: %w", text, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &ans) != nil || ans.ResponseType != "ephemeral" {
		return "", fmt.Errorf("/incident %s by %s: %d %s, want 200 and an ephemeral answer", text, user, resp.StatusCode, raw)
	}
	return ans.Text, nil
}

// sendCommand publishes a command on the trial's bus as a serve does
// once its Slack handler accepted it.
func (tr *trial) sendCommand(c command.Command) {
	tr.t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{URL: tr.nats}, slog.New(slog.DiscardHandler))
	if err != nil {
		tr.t.Fatal(err)
	}
	defer b.Close()
	ids, err := b.KV(ctx, engine.BucketIDs)
	if err != nil {
		tr.t.Fatal(err)
	}
	c.At = time.Now()
	if _, err := command.NewSender(b, kvResolver{ids}).Send(ctx, c); err != nil {
		tr.t.Fatal(err)
	}
}

// kvResolver finds an incident in the engine's id index, as the engine's
// Lookup does.
type kvResolver struct{ ids bus.KV }

func (r kvResolver) Lookup(ctx context.Context, id string) (engine.Ref, error) {
	ent, err := r.ids.Get(ctx, "id."+strings.TrimPrefix(engine.NormalizeID(id), "INC-"))
	if err != nil {
		return engine.Ref{}, fmt.Errorf("look up %s: %w", id, err)
	}
	var ref engine.Ref
	return ref, json.Unmarshal(ent.Value, &ref)
}

// card is the scenario's card as it reads now: its text and every text of
// its blocks; "" before it is posted.
func (tr *trial) card() string {
	cs := cards(tr.slack)
	if len(cs) == 0 {
		return ""
	}
	cur, _ := tr.slack.Card(cs[0].Channel, cs[0].TS)
	var blocks any
	_ = json.Unmarshal(cur.Blocks, &blocks)
	var b strings.Builder
	b.WriteString(cur.Text)
	collectStrings(blocks, &b)
	return b.String()
}

func collectStrings(v any, b *strings.Builder) {
	switch v := v.(type) {
	case string:
		b.WriteString("\n" + v)
	case []any:
		for _, x := range v {
			collectStrings(x, b)
		}
	case map[string]any:
		for _, x := range v {
			collectStrings(x, b)
		}
	}
}

// thread is the text of the card's thread.
func (tr *trial) thread() string {
	cs := cards(tr.slack)
	if len(cs) == 0 {
		return ""
	}
	var b strings.Builder
	for _, m := range tr.slack.Thread(cs[0].Channel, cs[0].TS) {
		b.WriteString(m.Text + "\n")
	}
	return b.String()
}

func (tr *trial) waitCard(what, substr string) {
	tr.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tr.card(), substr) {
		if time.Now().After(deadline) {
			tr.t.Fatalf("timed out waiting for %s: the card never said %q; it says:\n%s", what, substr, tr.card())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tr *trial) waitThread(what, substr string) {
	tr.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tr.thread(), substr) {
		if time.Now().After(deadline) {
			tr.t.Fatalf("timed out waiting for %s: the thread never said %q; it says:\n%s", what, substr, tr.thread())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle leaves room for what must not happen (a second run, a vote that
// should not count) to show.
func (tr *trial) settle() { time.Sleep(2 * time.Second) }

// flag reads feature:<name> in Redis: "" when missing.
func (tr *trial) flag(name string) string {
	v, err := tr.redis.Client.Get(context.Background(), "feature:"+name).Result()
	if err != nil {
		return ""
	}
	return v
}

func (tr *trial) wantFlag(name, want string) {
	tr.t.Helper()
	if got := tr.flag(name); got != want {
		tr.t.Errorf("feature:%s = %q, want %q", name, got, want)
	}
}

// wantSets checks how many SET commands Redis ran since it started
// (INFO commandstats): the runs, and the test's own.
func (tr *trial) wantSets(want int) {
	tr.t.Helper()
	info, err := tr.redis.Client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tr.t.Fatal(err)
	}
	got := 0
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_set:calls="); ok {
			got, _ = strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
		}
	}
	if got != want {
		tr.t.Errorf("Redis ran %d SET commands, want %d", got, want)
	}
}

// auditTrail is what `incidentbot audit --json` printed.
type auditTrail []bus.AuditRecord

// auditRun runs `incidentbot audit --json` with args against the trial's
// bus.
func (tr *trial) auditRun(args ...string) auditTrail {
	tr.t.Helper()
	bin, _ := buildBot()
	cmd := exec.Command(bin, append([]string{"audit", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "INCIDENTBOT_BUS_URL="+tr.nats)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tr.t.Fatalf("incidentbot audit: %v\n%s", err, stderr.String())
	}
	var a auditTrail
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r bus.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tr.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		a = append(a, r)
	}
	return a
}

func (tr *trial) auditAll() auditTrail { return tr.auditRun() }

// waitAudit runs `incidentbot audit --json --incident id` until cond holds
// (the trail is written just after the card is queued).
func (tr *trial) waitAudit(id, what string, cond func(auditTrail) bool) auditTrail {
	tr.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := tr.auditRun("--incident", id)
		if cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("timed out waiting for %s in `incidentbot audit`:\n%s", what, a)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (a auditTrail) String() string {
	var b strings.Builder
	for _, r := range a {
		fmt.Fprintf(&b, "%s %s %s %s %v\n", r.Kind, r.Incident, r.Actor, r.Detail, r.Attrs)
	}
	return b.String()
}

// of returns the records of kind about step ("" for any).
func (a auditTrail) of(kind, step string) []bus.AuditRecord {
	var out []bus.AuditRecord
	for _, r := range a {
		if r.Kind == kind && (step == "" || r.Attrs["step"] == step) {
			out = append(out, r)
		}
	}
	return out
}

func (a auditTrail) count(kind, step string) int { return len(a.of(kind, step)) }

// want fails t unless exactly n records of kind about step have the
// attributes kv (pairs of name and value).
func (a auditTrail) want(t *testing.T, kind, step string, n int, kv ...string) {
	t.Helper()
	got := 0
	for _, r := range a.of(kind, step) {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			ok = ok && r.Attrs[kv[i]] == kv[i+1]
		}
		if ok {
			got++
		}
	}
	if got != n {
		t.Errorf("audit: %d %s records of %s with %v, want %d; the trail:\n%s", got, kind, step, kv, n, a)
	}
}

// sameHash fails t unless every record about step names one plan hash.
func (a auditTrail) sameHash(t *testing.T, step string) {
	t.Helper()
	hashes := map[string]bool{}
	for _, r := range a {
		if r.Attrs["step"] == step && strings.HasPrefix(r.Kind, "remediation.") {
			hashes[r.Attrs["hash"]] = true
		}
	}
	if len(hashes) != 1 || hashes[""] {
		t.Errorf("audit of %s names plan hashes %v, want one", step, hashes)
	}
}

func auditHasAttr(rs []bus.AuditRecord, k, v string) bool {
	for _, r := range rs {
		if r.Attrs[k] == v {
			return true
		}
	}
	return false
}

// redisProxy forwards TCP to a redis-server and can hold the next SET it
// sees, to stand for a command in flight when the bot dies.
type redisProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	next   *proxyHold
}

type proxyHold struct {
	arrived  chan struct{}
	released chan struct{}
	once     sync.Once
}

func (h *proxyHold) release() { h.once.Do(func() { close(h.released) }) }

func startRedisProxy(t *testing.T, rd *testenv.Redis) *redisProxy {
	t.Helper()
	u, err := url.Parse(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{ln: ln, target: u.Host}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		if p.next != nil {
			p.next.release()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *redisProxy) url() string { return "redis://" + p.ln.Addr().String() + "/0" }

// holdNextSet arms the proxy: the next chunk carrying a SET is held until
// release, then forwarded (even if its client is gone by then).
func (p *redisProxy) holdNextSet() *proxyHold {
	h := &proxyHold{arrived: make(chan struct{}), released: make(chan struct{})}
	p.mu.Lock()
	p.next = h
	p.mu.Unlock()
	return h
}

func (p *redisProxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() {
		_, _ = io.Copy(c, s)
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			h := p.next
			if h != nil && bytes.Contains(bytes.ToLower(chunk), []byte("\r\nset\r\n")) {
				p.next = nil
			} else {
				h = nil
			}
			p.mu.Unlock()
			if h != nil {
				close(h.arrived)
				<-h.released
			}
			if _, werr := s.Write(chunk); werr != nil {
				err = werr
			}
		}
		if err != nil {
			s.Close()
			c.Close()
			return
		}
	}
}

// requested fires the alpha alert through addr and has Ada request step
// for its incident, and waits for the card to show the request; it
// returns the incident's id.
func (tr *trial) requested(addr, step string) string {
	tr.t.Helper()
	id := tr.fire(addr, "alpha")
	tr.slash(addr, userAda, "run "+id+" "+step)
	tr.waitCard("the request", "pending: requested by ada")
	return id
}
