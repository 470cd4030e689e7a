package slack

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the rendered card (run go test ./notify/slack -update and review the diff)\ngot:\n%s", path, got)
	}
}

func TestBlocksGolden(t *testing.T) {
	tests := []struct {
		name string
		inc  notify.Incident
	}{
		{"firing_critical_remediation", firingCritical()},
		{"resolved", resolvedWarning()},
		{"truncated_alerts", truncatedAlerts()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card := map[string]any{"text": FallbackText(tt.inc), "blocks": Blocks(tt.inc, RenderOptions{})}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // keep < > & readable in the golden files
			enc.SetIndent("", "  ")
			if err := enc.Encode(card); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, buf.Bytes())
			checkLimits(t, Blocks(tt.inc, RenderOptions{}))
		})
	}
}

// checkLimits asserts Block Kit's limits on rendered blocks.
func checkLimits(t *testing.T, blocks []slack.Block) {
	t.Helper()
	if len(blocks) > maxBlocks {
		t.Errorf("%d blocks, limit %d", len(blocks), maxBlocks)
	}
	text := func(o *slack.TextBlockObject, limit int, what string) {
		if o == nil {
			return
		}
		if n := utf8.RuneCountInString(o.Text); n > limit {
			t.Errorf("%s: %d characters, limit %d", what, n, limit)
		}
		if !utf8.ValidString(o.Text) {
			t.Errorf("%s: invalid UTF-8", what)
		}
	}
	for i, b := range blocks {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			text(b.Text, maxHeaderText, "header")
		case *slack.SectionBlock:
			text(b.Text, maxSectionText, "section")
			if len(b.Fields) > maxFields {
				t.Errorf("block %d: %d fields, limit %d", i, len(b.Fields), maxFields)
			}
			for _, f := range b.Fields {
				text(f, maxFieldText, "field")
			}
			if b.Text == nil && len(b.Fields) == 0 {
				t.Errorf("block %d: empty section", i)
			}
		case *slack.ContextBlock:
			if n := len(b.ContextElements.Elements); n > maxContextElems {
				t.Errorf("block %d: %d context elements", i, n)
			}
			for _, e := range b.ContextElements.Elements {
				if o, ok := e.(*slack.TextBlockObject); ok {
					text(o, maxSectionText, "context")
				}
			}
		}
	}
}

func TestBlocksLimitsWithHugeIncident(t *testing.T) {
	long := strings.Repeat("é&<>🔥", 2000) // multi-byte, escaping grows it
	inc := firingCritical()
	inc.Title, inc.Summary = long, long
	inc.Labels = map[string]string{}
	for i := range 40 {
		inc.Labels[string(rune('a'+i%26))+long[:i+1]] = long
	}
	for range 500 {
		inc.Alerts = append(inc.Alerts, notify.Alert{Name: long, Summary: long, Status: notify.StatusFiring, Labels: map[string]string{"x": long}})
	}
	for range 100 {
		inc.Assessment = append(inc.Assessment, notify.Step{Text: long, Link: "https://x.example/?q=" + long})
		inc.Remediation = append(inc.Remediation, notify.Proposal{Title: long, Plan: long, Approval: long, Action: long})
		inc.Escalation = append(inc.Escalation, notify.EscalationLevel{Name: long, Who: long})
		inc.Links = append(inc.Links, notify.Link{Text: long, URL: "https://x.example/" + long})
	}
	blocks := Blocks(inc, RenderOptions{MaxAlerts: 1000, MaxProposals: 1000})
	checkLimits(t, blocks)
	if _, err := json.Marshal(blocks); err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(FallbackText(inc)); n > maxFallbackText {
		t.Errorf("fallback text %d characters", n)
	}
}

func TestEscaping(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"text", esc("a & b <c> <!channel>"), "a &amp; b &lt;c&gt; &lt;!channel&gt;"},
		{"link", link("https://x.example/?a=1&b=<2>|", "a|b <x>"), "<https://x.example/?a=1&amp;b=%3C2%3E%7C|a|b &lt;x&gt;>"},
		{"not a url", link("javascript:alert(1)", "click"), "click"},
		{"code", code("a`b<"), "`aˋb&lt;`"},
		{"truncate keeps utf8", escN("héllo wörld", 4), "hél…"},
		{"clamp does not split entity", clamp("abc&amp;def", 6), "abc…"},
		{"clamp does not split link", clamp("ab <https://x.example|x> cd", 10), "ab …"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestHeaderMentionsAreEscaped(t *testing.T) {
	inc := firingCritical()
	inc.Summary = "<!channel> ping @here"
	blocks := Blocks(inc, RenderOptions{})
	b, _ := json.Marshal(blocks)
	if strings.Contains(string(b), "<!channel>") {
		t.Errorf("an unescaped <!channel> reached the card: %s", b)
	}
}

// TestAssessmentLinesRenderApart: a step's lines (a cause's check below
// its symptoms) stand on lines of their own, indented under the number.
func TestAssessmentLinesRenderApart(t *testing.T) {
	got := assessmentText([]notify.Step{
		{Text: "Check the endpoint"},
		{Text: "Cause — RPC Endpoint Issues: timeouts\nCheck: solana cluster-version --url <rpc-url>"},
	})
	want := "*Assessment*\n1. Check the endpoint\n2. Cause — RPC Endpoint Issues: timeouts\n      Check: solana cluster-version --url &lt;rpc-url&gt;"
	if got != want {
		t.Errorf("assessment:\n%s\nwant:\n%s", got, want)
	}
}

func TestCardSaysWhoResolvedAndWhereEscalationStands(t *testing.T) {
	inc := notify.Incident{ID: "INC-1", Title: "t", Severity: notify.SeverityCritical, Status: notify.StatusResolved,
		ResolvedBy: "Ada (slack) — 1 alert(s) still firing in Alertmanager", EscalationState: "stopped: resolved",
		Escalation: []notify.EscalationLevel{{Name: "L2", After: 30 * time.Minute, Who: "@senior"}}}
	b, err := json.Marshal(Blocks(inc, RenderOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"by Ada (slack) — 1 alert(s) still firing in Alertmanager", "*Escalation* · stopped: resolved"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("card lacks %q:\n%s", want, b)
		}
	}
}

func TestEscalationReplyMentionsTheLevel(t *testing.T) {
	u := notify.Update{Kind: "escalated", Text: "escalating to L2 → @senior <!channel>", Mention: []string{"U0ADA", "S0SENIORS", "<!here>"}}
	got := ReplyText(notify.Incident{ID: "INC-1"}, u)
	if !strings.HasSuffix(got, "\n<@U0ADA> <!subteam^S0SENIORS>") {
		t.Fatalf("reply %q does not end with the mentions (and only valid ids)", got)
	}
	if strings.Contains(got, "<!channel>") || strings.Contains(got, "<!here>") {
		t.Fatalf("reply %q lets text or a bad id mention everyone", got)
	}
}

// TestJoinedSaysWhereAlertsCameFrom: a correlated incident's card says
// which alert joined it from which source, escaped.
func TestJoinedSaysWhereAlertsCameFrom(t *testing.T) {
	inc := firingCritical()
	inc.Joined = []string{"joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)", "joined from <X>"}
	b, _ := json.Marshal(Blocks(inc, RenderOptions{}))
	if !strings.Contains(string(b), `⇢ joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down); joined from \u0026lt;X\u0026gt;`) {
		t.Errorf("card lacks the joined line: %s", b)
	}
	b, _ = json.Marshal(Blocks(firingCritical(), RenderOptions{}))
	if strings.Contains(string(b), "⇢") {
		t.Errorf("a card with nothing joined has a joined line: %s", b)
	}
}
