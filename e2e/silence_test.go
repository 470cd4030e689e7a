package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	silencepkg "github.com/incidentbot/incidentbot/silence"
)

// amSilence is a silence as Alertmanager's API v2 lists it.
type amSilence struct {
	ID        string `json:"id"`
	Status    struct{ State string }
	Comment   string `json:"comment"`
	CreatedBy string `json:"createdBy"`
	Matchers  []struct{ Name, Value string }
}

func amGet(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func activeSilences(t *testing.T, am *testenv.Alertmanager) []amSilence {
	var all, out []amSilence
	amGet(t, am.URL+"/api/v2/silences", &all)
	for _, s := range all {
		if s.Status.State == "active" {
			out = append(out, s)
		}
	}
	return out
}

// TestSilenceFromSlackAgainstRealAlertmanager: a person silences an
// incident of two alerts; the silence is created in a real Alertmanager
// on the labels the alerts share, by that person, with the incident's id
// in its comment, and shown on the card. A third alert of the group that
// starts meanwhile is suppressed by Alertmanager: the bot never hears of
// it. Asking again makes no second silence. Unsilence expires it, and the
// suppressed alert reaches the bot at the next notification.
func TestSilenceFromSlackAgainstRealAlertmanager(t *testing.T) {
	var am *testenv.Alertmanager
	bot := serveInProcess(t, slog.LevelInfo, func(c *config.Config) {
		am = testenv.StartAlertmanager(t, "http://"+c.Listen+alertmanager.Path, token)
		c.Alertmanager.URL = am.URL
		c.Alertmanager.SilenceMax = 2 * time.Hour
	})
	ctx := context.Background()
	start := time.Now().Add(-time.Minute).UTC()
	alert := func(instance string) testenv.Alert {
		return testenv.Alert{Labels: map[string]string{"alertname": "HighLatency", "severity": "warning", "service": "api", "instance": instance},
			Annotations: map[string]string{"summary": "High latency detected"}, StartsAt: start}
	}
	if err := am.Post(ctx, alert("a"), alert("b")); err != nil {
		t.Fatal(err)
	}
	var rec *engine.Record
	eventually(t, 30*time.Second, "an incident of two alerts", func() bool {
		recs, err := bot.srv.Engine.Incidents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if len(r.Alerts) == 2 {
				rec = r
			}
		}
		return rec != nil && len(cards(bot.slack)) == 1
	})
	ada := input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}
	silence := command.Command{Verb: input.Silence, Incident: rec.ID, By: ada, RequestID: "click-1", Duration: time.Hour}

	// Refused at once: too long.
	tooLong := silence
	tooLong.Duration = 3 * time.Hour
	if _, err := bot.srv.Commands.Send(ctx, tooLong); !errors.Is(err, command.ErrSilenceTooLong) || !strings.Contains(err.Error(), "2h") {
		t.Fatalf("3h silence: %v, want ErrSilenceTooLong naming the 2h maximum", err)
	}
	// An earlier attempt whose outcome was unknown (the worker died after
	// Alertmanager took it) left a silence carrying the incident's marker:
	// the reconciler finds and extends it instead of making a second.
	client, err := silencepkg.New(silencepkg.Config{URL: am.URL})
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := client.Create(ctx, silencepkg.Silence{Matchers: map[string]string{"alertname": "HighLatency", "service": "api", "severity": "warning"},
		StartsAt: time.Now(), EndsAt: time.Now().Add(10 * time.Minute), CreatedBy: "Ada", Comment: rec.ID + " (" + silencepkg.Marker(rec.ID) + ")"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bot.srv.Commands.Send(ctx, silence); err != nil {
		t.Fatal(err)
	}
	var sil amSilence
	eventually(t, 20*time.Second, "a silence in Alertmanager", func() bool {
		s := activeSilences(t, am)
		if len(s) == 1 {
			sil = s[0]
		}
		return len(s) == 1
	})
	matchers := map[string]string{}
	for _, m := range sil.Matchers {
		matchers[m.Name] = m.Value
	}
	if sil.ID != orphan {
		t.Fatalf("silence %s, want the interrupted attempt's %s extended", sil.ID, orphan)
	}
	if sil.CreatedBy != "Ada" || !strings.Contains(sil.Comment, "incidentbot:"+rec.ID) || len(matchers) != 3 ||
		matchers["alertname"] != "HighLatency" || matchers["service"] != "api" || matchers["severity"] != "warning" {
		t.Fatalf("silence %+v, want by Ada, marked with %s, on the three shared labels", sil, rec.ID)
	}
	card := cards(bot.slack)[0]
	eventually(t, 20*time.Second, "the card showing the silence", func() bool {
		cur, _ := bot.slack.Card(card.Channel, card.TS)
		return strings.Contains(cur.Text+string(cur.Blocks), "by Ada (slack) (silence "+sil.ID[:8])
	})
	thread := func() string {
		var b strings.Builder
		for _, m := range bot.slack.Thread(card.Channel, card.TS) {
			b.WriteString(m.Text + "\n")
		}
		return b.String()
	}
	eventually(t, 10*time.Second, "the thread saying so", func() bool {
		return strings.Contains(thread(), "Silenced until") && strings.Contains(thread(), sil.ID[:8])
	})

	// A new alert of the group that the silence matches: suppressed, the
	// bot hears nothing of it.
	if err := am.Post(ctx, alert("c")); err != nil {
		t.Fatal(err)
	}
	var amAlerts []struct {
		Labels map[string]string
		Status struct {
			State      string
			SilencedBy []string
		}
	}
	eventually(t, 10*time.Second, "Alertmanager to mark the new alert suppressed", func() bool {
		amGet(t, am.URL+"/api/v2/alerts", &amAlerts)
		for _, a := range amAlerts {
			if a.Labels["instance"] == "c" {
				return a.Status.State == "suppressed" && len(a.Status.SilencedBy) == 1 && a.Status.SilencedBy[0] == sil.ID
			}
		}
		return false
	})
	time.Sleep(5 * time.Second) // group_interval is 2s: a notification would have come
	if got, _ := bot.srv.Engine.Get(ctx, rec.ID); len(got.Alerts) != 2 {
		t.Fatalf("the bot heard of %d alerts while silenced, want the 2 from before", len(got.Alerts))
	}

	// Asking again — a retried request, then a second click — makes no
	// second silence.
	again := silence
	again.RequestID = "click-2"
	for _, c := range []command.Command{silence, again} {
		if _, err := bot.srv.Commands.Send(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	if s := activeSilences(t, am); len(s) != 1 || s[0].ID != sil.ID {
		t.Fatalf("after asking twice more: %+v, want the one silence %s", s, sil.ID)
	}

	// Unsilence: expired in Alertmanager, and the suppressed alert arrives.
	bob := input.Actor{ID: "U0BOB", Name: "Bob", Via: "slack"}
	if _, err := bot.srv.Commands.Send(ctx, command.Command{Verb: input.Unsilence, Incident: rec.ID, By: bob, RequestID: "click-3"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the silence expired", func() bool {
		var all []amSilence
		amGet(t, am.URL+"/api/v2/silences", &all)
		return len(all) == 1 && all[0].Status.State == "expired"
	})
	eventually(t, 20*time.Second, "the thread saying it expired", func() bool {
		return strings.Contains(thread(), "Silence "+sil.ID[:8]+"… expired (asked by Bob (slack))")
	})
	eventually(t, 30*time.Second, "the suppressed alert to reach the bot", func() bool {
		got, _ := bot.srv.Engine.Get(ctx, rec.ID)
		return len(got.Alerts) == 3
	})

	// Every step is in the audit trail, with who.
	trail, err := bot.srv.Bus.AuditTrail(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"incident.silence_requested": "Ada (slack)", "notify.silence.created": "Ada (slack)",
		"incident.silenced": "Ada (slack)", "incident.unsilence_requested": "Bob (slack)", "notify.silence.expired": "Bob (slack)",
		"incident.silence_expired": "Bob (slack)"}
	for _, r := range trail {
		if who, ok := want[r.Kind]; ok && r.Incident == rec.ID && r.Actor == who && !r.Time.IsZero() {
			delete(want, r.Kind)
		}
	}
	if len(want) > 0 {
		t.Fatalf("audit trail lacks %v", want)
	}
}
