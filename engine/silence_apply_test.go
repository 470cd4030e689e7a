package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/signal"
)

func silenceEnv(now time.Time) applyEnv {
	env := testEnv(now)
	env.Silences, env.SilenceMax = true, 24*time.Hour
	return env
}

func silenceCmd(id string, at time.Time, d time.Duration) input.Input {
	in := cmd(input.Silence, id, at, "ada")
	in.Duration = d
	return in
}

func TestSilenceWish(t *testing.T) {
	rec, _ := applySignals(nil, []input.Input{sig("1", signal.Firing, t0), sig("2", signal.Firing, t0)}, testEnv(t0))
	// Both alerts share only severity; the matchers are what they share.
	rec.Alerts["1"].Labels = map[string]string{"alertname": "HighErrorRate", "service": "api", "pod": "a"}
	rec.Alerts["2"].Labels = map[string]string{"alertname": "HighErrorRate", "service": "api", "pod": "b"}
	now := t0.Add(time.Minute)

	t.Run("refusals say why", func(t *testing.T) {
		off := testEnv(now)
		if _, res := applyInput(rec, silenceCmd("s0", now, time.Hour), off); res.Changed() || res.Reason != ReasonNoSilencer {
			t.Fatalf("without a silencer: %v", res)
		}
		if _, res := applyInput(rec, silenceCmd("s0", now, 25*time.Hour), silenceEnv(now)); res.Changed() || !strings.Contains(res.Reason, "longer than the maximum of 24h") {
			t.Fatalf("25h: %v", res)
		}
		chain := clone(rec)
		chain.Source = "solana"
		if _, res := applyInput(chain, silenceCmd("s0", now, time.Hour), silenceEnv(now)); res.Changed() || res.Reason != ReasonOnChain {
			t.Fatalf("on-chain: %v", res)
		}
	})

	s1, res := applyInput(rec, silenceCmd("s1", now, time.Hour), silenceEnv(now))
	if res.change != silenceRequested || s1.Silence == nil {
		t.Fatalf("silence: %v", res)
	}
	w := s1.Silence
	if w.Gen != 1 || !w.Until.Equal(now.Add(time.Hour)) || w.By.Name != "ada" || len(w.Matchers) != 2 ||
		w.Matchers["alertname"] != "HighErrorRate" || w.Matchers["service"] != "api" {
		t.Fatalf("wish %+v, want gen 1 until +1h on the common labels", w)
	}

	// Asked again (another click): no second silence; a longer one extends.
	if _, res := applyInput(s1, silenceCmd("s1", now, time.Hour), silenceEnv(now)); res.Changed() || res.Reason != "already applied" {
		t.Fatalf("same request twice: %v", res)
	}
	if _, res := applyInput(s1, silenceCmd("s2", now.Add(time.Second), 30*time.Minute), silenceEnv(now)); res.Changed() || !strings.HasPrefix(res.Reason, "already silenced until") {
		t.Fatalf("shorter request: %v", res)
	}
	s2, res := applyInput(s1, silenceCmd("s3", now.Add(10*time.Minute), time.Hour), silenceEnv(now))
	if res.change != silenceRequested || s2.Silence.Gen != 1 || !s2.Silence.Until.Equal(now.Add(70*time.Minute)) {
		t.Fatalf("extension: %v %+v", res, s2.Silence)
	}

	// The reconciler reports the silence; a report for an older wish is stale.
	tok := silenceToken(1, s2.Silence.Until)
	s3, res := applyInput(s2, input.Input{Kind: input.SilenceCreated, ID: "c1", Incident: "INC-TEST", Text: "1a2b3c4d-5e6f", Token: tok, At: now}, silenceEnv(now))
	if res.change != silenced || s3.Silence.ID != "1a2b3c4d-5e6f" || !strings.Contains(lastText(s3), "Silenced until 15:11 UTC by ada (slack) (silence 1a2b3c4d…)") {
		t.Fatalf("created: %v %q", res, lastText(s3))
	}
	if _, res := applyInput(s3, input.Input{Kind: input.SilenceCreated, ID: "c2", Incident: "INC-TEST", Text: "x", Token: silenceToken(7, now)}, silenceEnv(now)); !res.Stale {
		t.Fatalf("report for another wish: %v", res)
	}

	// Unsilence, then a silence asked before it arrives late: stale.
	u, res := applyInput(s3, cmd(input.Unsilence, "u1", now.Add(20*time.Minute), "bob"), silenceEnv(now))
	if res.change != unsilenceRequested || u.Silence.Unsilenced == nil || u.Silence.Unsilenced.By.Name != "bob" {
		t.Fatalf("unsilence: %v", res)
	}
	if _, res := applyInput(u, silenceCmd("late", now.Add(15*time.Minute), time.Hour), silenceEnv(now)); !res.Stale {
		t.Fatalf("silence older than the unsilence: %v", res)
	}
	if _, res := applyInput(u, cmd(input.Unsilence, "u2", now.Add(21*time.Minute), "bob"), silenceEnv(now)); res.Changed() {
		t.Fatalf("second unsilence: %v", res)
	}
	// After it, a new silence is a new wish.
	n, res := applyInput(u, silenceCmd("s4", now.Add(30*time.Minute), time.Hour), silenceEnv(now.Add(30*time.Minute)))
	if res.change != silenceRequested || n.Silence.Gen != 2 || n.Silence.ID != "" {
		t.Fatalf("new wish: %v %+v", res, n.Silence)
	}
}

func TestSilenceOp(t *testing.T) {
	now := t0
	until := now.Add(time.Hour)
	w := &SilenceWish{Gen: 2, Until: until}
	for _, c := range []struct {
		name string
		w    *SilenceWish
		d    Delivery
		want string
	}{
		{"nothing wanted", nil, Delivery{}, ""},
		{"new wish", w, Delivery{}, "create"},
		{"older one still held", w, Delivery{SilenceGen: 1, SilenceID: "old"}, "expire"},
		{"older one expired", w, Delivery{SilenceGen: 1, SilenceID: "old", SilenceExpired: true}, "create"},
		{"created, not yet on the record", w, Delivery{SilenceGen: 2, SilenceID: "id", SilenceUntil: until}, "confirm"},
		{"extended", &SilenceWish{Gen: 2, Until: until.Add(time.Hour), ID: "id", CreatedUntil: until}, Delivery{SilenceGen: 2, SilenceID: "id", SilenceUntil: until}, "create"},
		{"in line", &SilenceWish{Gen: 2, Until: until, ID: "id", CreatedUntil: until}, Delivery{SilenceGen: 2, SilenceID: "id", SilenceUntil: until}, ""},
		{"refused for this wish", w, Delivery{SilenceGen: 2, Failed: "400"}, ""},
		{"ended before it was made", &SilenceWish{Gen: 2, Until: now}, Delivery{}, ""},
		{"unsilenced", &SilenceWish{Gen: 2, Until: until, ID: "id", Unsilenced: &Mark{}}, Delivery{SilenceGen: 2, SilenceID: "id", SilenceUntil: until}, "expire"},
		{"unsilenced before any record: look", &SilenceWish{Gen: 2, Until: until, Unsilenced: &Mark{}}, Delivery{}, "expire"},
		{"expired, not yet on the record", &SilenceWish{Gen: 2, Until: until, ID: "id", Unsilenced: &Mark{}}, Delivery{SilenceGen: 2, SilenceID: "id", SilenceExpired: true}, "confirm"},
		{"expired and recorded", &SilenceWish{Gen: 2, Until: until, ID: "id", Unsilenced: &Mark{}, Expired: true}, Delivery{SilenceGen: 2, SilenceID: "id", SilenceExpired: true}, ""},
	} {
		if got := silenceOp(c.w, &c.d, now); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
