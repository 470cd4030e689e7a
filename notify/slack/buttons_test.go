package slack

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

// buttons lists the action ids of the card's buttons.
func buttons(inc notify.Incident) []string {
	var ids []string
	for _, b := range Blocks(inc, RenderOptions{}) {
		if a, ok := b.(*slack.ActionBlock); ok && a.BlockID == ActionsBlockID {
			for _, e := range a.Elements.ElementSet {
				btn := e.(*slack.ButtonBlockElement)
				if btn.Value != ButtonValue(inc.ID, inc.Version) {
					panic("button value " + btn.Value)
				}
				ids = append(ids, btn.ActionID)
			}
		}
	}
	return ids
}

// TestButtonsFollowTheIncident: an open incident has every button, an
// acknowledged one no Acknowledge, a resolved one none; each carries the
// incident id and the card version.
func TestButtonsFollowTheIncident(t *testing.T) {
	inc := notify.Incident{ID: "INC-7F3A2C", Version: 4, Status: notify.StatusFiring, Title: "t"}
	for _, tt := range []struct {
		status notify.Status
		want   []string
	}{
		{notify.StatusFiring, []string{ActionAck, ActionResolve, ActionSilence, ActionEscalate}},
		{notify.StatusAcknowledged, []string{ActionResolve, ActionSilence, ActionEscalate}},
		{notify.StatusResolved, nil},
	} {
		inc.Status = tt.status
		if got := buttons(inc); len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
			t.Errorf("%s: buttons %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestButtonValue(t *testing.T) {
	for _, tt := range []struct {
		in      string
		id      string
		version int64
		ok      bool
	}{
		{ButtonValue("INC-7F3A2C", 12), "INC-7F3A2C", 12, true},
		{"INC-2041", "INC-2041", 0, true},
		{"INC-1@x", "", 0, false},
		{"INC-1@-2", "", 0, false},
		{"@3", "", 0, false},
		{"", "", 0, false},
	} {
		id, v, ok := ParseButtonValue(tt.in)
		if id != tt.id || v != tt.version || ok != tt.ok {
			t.Errorf("ParseButtonValue(%q) = %q %d %v, want %q %d %v", tt.in, id, v, ok, tt.id, tt.version, tt.ok)
		}
	}
}

// stepButtons lists, per step id, the action ids of its buttons, checking
// each value and block id against Block Kit's limits.
func stepButtons(t *testing.T, blocks []slack.Block) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, b := range blocks {
		a, ok := b.(*slack.ActionBlock)
		if !ok || a.BlockID == ActionsBlockID {
			continue
		}
		if len(a.BlockID) > maxBlockID || len(a.Elements.ElementSet) > 25 {
			t.Errorf("actions block %q: %d elements", a.BlockID, len(a.Elements.ElementSet))
		}
		for _, e := range a.Elements.ElementSet {
			btn := e.(*slack.ButtonBlockElement)
			id, version, step, hash, ok := ParseStepButtonValue(btn.Value)
			if !ok || id == "" || version == 0 || len(hash) != shortHash || len(btn.Value) > maxButtonValue || len(btn.ActionID) > maxBlockID {
				t.Errorf("button %s value %q", btn.ActionID, btn.Value)
			}
			if a.BlockID != StepBlockPrefix+step {
				t.Errorf("button of %s in block %s", step, a.BlockID)
			}
			if c := btn.Confirm; c != nil && (len([]rune(c.Title.Text)) > maxConfirmTitle || len([]rune(c.Text.Text)) > maxConfirmText) {
				t.Errorf("confirm of %s too long", btn.ActionID)
			}
			out[step] = append(out[step], btn.ActionID)
		}
	}
	return out
}

// TestStepButtonsFollowTheRequest: each state of a step's request shows
// its buttons: Request (Run when automatic) when nothing is live, Approve
// and Deny while pending, nothing while approved or once it ran; none for
// a plan in error or without a hash, on a resolved incident or while
// frozen. Request, Run and Approve ask to confirm with the plan.
func TestStepButtonsFollowTheRequest(t *testing.T) {
	const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	base := notify.Incident{ID: "INC-7F3A2C", Version: 7, Status: notify.StatusFiring, Title: "t"}
	for _, tt := range []struct {
		name string
		p    notify.Proposal
		edit func(*notify.Incident)
		want []string
	}{
		{"nothing requested", notify.Proposal{}, nil, []string{ActionStepRequest}},
		{"denied", notify.Proposal{State: notify.StepDenied}, nil, []string{ActionStepRequest}},
		{"expired", notify.Proposal{State: notify.StepExpired}, nil, []string{ActionStepRequest}},
		{"void", notify.Proposal{State: notify.StepVoid}, nil, []string{ActionStepRequest}},
		{"automatic", notify.Proposal{Automatic: true}, nil, []string{ActionStepRequest}},
		{"pending", notify.Proposal{State: notify.StepPending}, nil, []string{ActionStepApprove, ActionStepDeny}},
		{"approved (running)", notify.Proposal{State: notify.StepApproved}, nil, nil},
		{"ran", notify.Proposal{State: notify.StepRan}, nil, nil},
		{"plan error", notify.Proposal{Error: "no such deployment"}, nil, nil},
		{"no hash", notify.Proposal{Hash: "-"}, nil, nil},
		{"resolved", notify.Proposal{}, func(i *notify.Incident) { i.Status = notify.StatusResolved }, nil},
		{"frozen", notify.Proposal{State: notify.StepPending}, func(i *notify.Incident) { i.Freeze = "Remediation frozen by ada (slack)" }, nil},
		{"acknowledged", notify.Proposal{State: notify.StepPending}, func(i *notify.Incident) { i.Status = notify.StatusAcknowledged }, []string{ActionStepApprove, ActionStepDeny}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inc := base
			p := tt.p
			p.ID, p.Title, p.Plan = "disable-feature", "Disable escrow", "SET feature:enable_escrow false"
			switch p.Hash {
			case "":
				p.Hash = hash
			case "-":
				p.Hash = ""
			}
			inc.Remediation = []notify.Proposal{p}
			if tt.edit != nil {
				tt.edit(&inc)
			}
			blocks := Blocks(inc, RenderOptions{})
			got := stepButtons(t, blocks)["disable-feature"]
			if !slices.Equal(got, tt.want) {
				t.Fatalf("buttons %v, want %v", got, tt.want)
			}
			for _, b := range blocks {
				a, ok := b.(*slack.ActionBlock)
				if !ok || a.BlockID == ActionsBlockID {
					continue
				}
				for _, e := range a.Elements.ElementSet {
					btn := e.(*slack.ButtonBlockElement)
					if btn.Value != "INC-7F3A2C@7|disable-feature|0123456789ab" {
						t.Errorf("value %q", btn.Value)
					}
					label := btn.Text.Text
					if tt.p.Automatic && label != "Run" || !tt.p.Automatic && btn.ActionID == ActionStepRequest && label != "Request" {
						t.Errorf("%s labelled %q", btn.ActionID, label)
					}
					wantConfirm := btn.ActionID != ActionStepDeny
					if (btn.Confirm != nil) != wantConfirm {
						t.Errorf("%s confirm %v", btn.ActionID, btn.Confirm)
					}
					if btn.Confirm != nil && btn.Confirm.Text.Text != "This will: SET feature:enable_escrow false" {
						t.Errorf("confirm text %q", btn.Confirm.Text.Text)
					}
				}
			}
		})
	}
}

// TestThirtyStepsFit: a card with 30 steps, each pending with a long plan
// and status and a long id, stays within Slack's limits, keeps its
// incident buttons and footer, and counts the steps it leaves out.
func TestThirtyStepsFit(t *testing.T) {
	inc := firingCritical()
	inc.Remediation = nil
	long := strings.Repeat("é&<>🔥", 1000)
	for i := range 30 {
		id := fmt.Sprintf("revert-%02d-%s", i, strings.Repeat("x", 60))
		inc.Remediation = append(inc.Remediation, notify.Proposal{ID: id, Title: long, Plan: long, Approval: long, Action: "kubernetes.scale",
			Status: long, State: notify.StepPending, Hash: strings.Repeat("ab", 32)})
	}
	for _, max := range []int{0, 30, 1000} {
		blocks := Blocks(inc, RenderOptions{MaxProposals: max})
		checkLimits(t, blocks)
		if len(blocks) > maxBlocks {
			t.Fatalf("max %d: %d blocks", max, len(blocks))
		}
		steps := stepButtons(t, blocks)
		if len(steps) == 0 {
			t.Fatalf("max %d: no step buttons", max)
		}
		for id, got := range steps {
			if !slices.Equal(got, []string{ActionStepApprove, ActionStepDeny}) {
				t.Errorf("%s: %v", id, got)
			}
		}
		b, err := json.Marshal(blocks)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("+%d more proposals in the runbook", 30-len(steps)); !strings.Contains(string(b), want) {
			t.Errorf("max %d: %d steps shown, no %q", max, len(steps), want)
		}
		if len(buttons(inc)) == 0 || !strings.Contains(string(b), "incidentbot · INC-7F3A2C") {
			t.Errorf("max %d: the incident buttons or the footer were cut", max)
		}
	}
}

// BenchmarkBlocksWithStepButtons renders a card with 8 pending steps,
// each with its buttons and confirm dialogs.
func BenchmarkBlocksWithStepButtons(b *testing.B) {
	inc := firingCritical()
	inc.Remediation = nil
	for i := range 8 {
		inc.Remediation = append(inc.Remediation, notify.Proposal{ID: fmt.Sprintf("step-%d", i), Title: "Restart api pods", Action: "kubernetes.rollout_restart",
			Plan: "deployment solana-dapps/api: rollout restart", Approval: "1 approval from @sre-oncall", State: notify.StepPending, Hash: strings.Repeat("ab", 32)})
	}
	var size int
	for b.Loop() {
		blocks := Blocks(inc, RenderOptions{})
		raw, _ := json.Marshal(blocks)
		size = len(raw)
	}
	b.ReportMetric(float64(size), "bytes/card")
}
