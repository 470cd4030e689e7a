package silence_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/silence"
)

type apiSilence struct {
	ID       string                 `json:"id"`
	Status   struct{ State string } `json:"status"`
	Comment  string                 `json:"comment"`
	Creator  string                 `json:"createdBy"`
	EndsAt   time.Time              `json:"endsAt"`
	Matchers []struct {
		Name, Value      string
		IsRegex, IsEqual bool
	} `json:"matchers"`
}

// silences reads Alertmanager's silences as its own UI does.
func silences(t *testing.T, am *testenv.Alertmanager) []apiSilence {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []apiSilence
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClientAgainstRealAlertmanager(t *testing.T) {
	am := testenv.StartAlertmanager(t, "http://127.0.0.1:9/unused", "unused-token")
	c, err := silence.New(silence.Config{URL: am.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	marker := silence.Marker("INC-1A2B")
	if _, found, err := c.Find(ctx, marker); err != nil || found {
		t.Fatalf("find before any: %v %v", found, err)
	}
	s := silence.Silence{Matchers: map[string]string{"alertname": "HighErrorRate", "service": "api"}, StartsAt: now, EndsAt: now.Add(time.Hour),
		CreatedBy: "Ada", Comment: "INC-1A2B: silenced from slack by Ada (" + marker + ")"}
	id, err := c.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	got := silences(t, am)
	if len(got) != 1 || got[0].ID != id || got[0].Creator != "Ada" || got[0].Status.State != "active" || len(got[0].Matchers) != 2 ||
		!got[0].Matchers[0].IsEqual || got[0].Matchers[0].IsRegex {
		t.Fatalf("silences in Alertmanager: %+v, want one active, by Ada, two equality matchers", got)
	}
	// A similar incident id does not match the marker; the right one does.
	if _, found, _ := c.Find(ctx, silence.Marker("INC-1A2")); found {
		t.Fatal("marker of INC-1A2 matched INC-1A2B's silence")
	}
	f, found, err := c.Find(ctx, marker)
	if err != nil || !found || f.ID != id || f.State != "active" {
		t.Fatalf("find: %+v %v %v", f, found, err)
	}
	// Extending by id with its start keeps the one silence and its id.
	s.ID, s.StartsAt, s.EndsAt = id, f.StartsAt, now.Add(2*time.Hour)
	id2, err := c.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, g := range silences(t, am) {
		if g.Status.State == "active" {
			active++
			if g.ID != id2 || id2 != id || g.EndsAt.Sub(now.Add(2*time.Hour)).Abs() > time.Second {
				t.Fatalf("extended silence %+v", g)
			}
		}
	}
	if active != 1 {
		t.Fatalf("%d active silences after extending, want 1", active)
	}
	// Expire, twice: both succeed; nothing is found after.
	for range 2 {
		if err := c.Expire(ctx, id2); err != nil {
			t.Fatal(err)
		}
	}
	if _, found, _ := c.Find(ctx, marker); found {
		t.Fatal("expired silence still found")
	}
	if err := c.Expire(ctx, "00000000-0000-0000-0000-000000000000"); err != nil {
		t.Fatalf("expire of an unknown silence: %v", err)
	}
	// A refusal is permanent; an unreachable Alertmanager is retryable.
	_, err = c.Create(ctx, silence.Silence{Matchers: map[string]string{"a": "b"}, StartsAt: now, EndsAt: now.Add(-time.Hour), Comment: "x", CreatedBy: "x"})
	var ne *notify.Error
	if !errors.As(err, &ne) || ne.Retryable {
		t.Fatalf("create ending before it starts: %v, want a permanent error", err)
	}
	down, _ := silence.New(silence.Config{URL: "http://127.0.0.1:9"})
	if _, _, err := down.Find(ctx, marker); !notify.IsRetryable(err) {
		t.Fatalf("unreachable: %v, want retryable", err)
	}
}

func TestClientAuthenticates(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+" "+r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("[]"))
	}))
	defer srv.Close()
	for _, c := range []struct {
		cfg  silence.Config
		want string
	}{
		{silence.Config{URL: srv.URL + "/am/", BearerToken: secret.Secret("tok")}, "/am/api/v2/silences Bearer tok"},
		{silence.Config{URL: srv.URL, Username: "u", Password: secret.Secret("p")}, "/api/v2/silences Basic dTpw"},
	} {
		got = nil
		cl, err := silence.New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := cl.Find(context.Background(), "m"); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != c.want {
			t.Fatalf("request %v, want %q", got, c.want)
		}
	}
	if _, err := silence.New(silence.Config{URL: srv.URL, BearerToken: "a", Username: "u", Password: "p"}); err == nil {
		t.Fatal("both bearer and basic accepted")
	}
}
