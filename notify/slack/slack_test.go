package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

const token = "xoxb-123456789-SECRET-token-do-not-leak"

var t0 = time.Date(2025, 8, 13, 14, 2, 11, 0, time.UTC)

// tag is the tag of the cards the tests post.
var tag = notify.CardTag{IncidentID: "INC-1", Nonce: "0123abcd"}

func incident() notify.Incident {
	return notify.Incident{
		ID: "INC-1", Title: "RPC down", Severity: notify.SeverityCritical, Status: notify.StatusFiring,
		Labels: map[string]string{"service": "api"}, StartedAt: t0, UpdatedAt: t0,
	}
}

// sleeps records the waits of a retry policy instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

type observed struct {
	mu      sync.Mutex
	results []string
}

func (o *observed) observe(sink, op, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.results = append(o.results, sink+"/"+op+"/"+result)
}

// slogTo logs to w.
func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func newChat(t *testing.T, srv *slacktestutil.Server, log *bytes.Buffer) (*nslack.Chat, *sleeps, *observed) {
	t.Helper()
	s, o := &sleeps{}, &observed{}
	cfg := nslack.DefaultConfig()
	cfg.Token = token
	cfg.APIURL = strings.TrimSuffix(srv.URL(), "/") // New adds the slash back
	cfg.Timeout = 5 * time.Second
	cfg.Retry.Sleep = s.sleep
	cfg.Retry.Rand = func() float64 { return 0 }
	cfg.Observer = o.observe
	if log != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	chat, err := nslack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return chat, s, o
}

func TestCardLifecycle(t *testing.T) {
	srv := slacktestutil.Start(t)
	srv.RequireToken(token)
	chat, _, obs := newChat(t, srv, nil)
	ctx := t.Context()

	inc := incident()
	ref, err := chat.PostCard(ctx, "C0INCIDENTS", inc, tag)
	if err != nil {
		t.Fatal(err)
	}
	ref2, err := chat.PostCard(ctx, "C0INCIDENTS", inc, tag)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Channel != "C0INCIDENTS" || ref.TS == "" || ref.TS == ref2.TS {
		t.Fatalf("refs %+v and %+v: want channel C0INCIDENTS and distinct ts", ref, ref2)
	}

	posted, ok := srv.Card(ref.Channel, ref.TS)
	if !ok {
		t.Fatal("card not recorded")
	}
	want, _ := json.Marshal(nslack.Blocks(inc, nslack.RenderOptions{}))
	if !bytes.Equal(posted.Blocks, want) {
		t.Errorf("posted blocks\n%s\nwant\n%s", posted.Blocks, want)
	}
	if posted.Text != nslack.FallbackText(inc) || posted.ThreadTS != "" {
		t.Errorf("posted text %q thread %q", posted.Text, posted.ThreadTS)
	}

	inc.Status, inc.ResolvedAt = notify.StatusResolved, t0.Add(time.Hour)
	if err := chat.UpdateCard(ctx, ref, inc); err != nil {
		t.Fatal(err)
	}
	updated, _ := srv.Card(ref.Channel, ref.TS)
	if !strings.Contains(string(updated.Blocks), "RESOLVED") || !strings.Contains(updated.Text, "[RESOLVED]") {
		t.Errorf("card not updated in place: %s / %s", updated.Text, updated.Blocks)
	}
	if n := len(srv.Updates()); n != 1 {
		t.Errorf("%d chat.update calls, want 1", n)
	}

	if err := chat.Reply(ctx, ref, inc, notify.Update{Seq: 1, Kind: "alerts_resolved", Text: "rpc-a <ok> & healthy", At: t0}); err != nil {
		t.Fatal(err)
	}
	thread := srv.Thread(ref.Channel, ref.TS)
	if len(thread) != 1 || thread[0].ThreadTS != ref.TS || !strings.Contains(thread[0].Text, "rpc-a &lt;ok&gt; &amp; healthy") {
		t.Errorf("thread = %+v", thread)
	}

	wantObs := []string{"slack/post_card/success", "slack/post_card/success", "slack/update_card/success", "slack/reply/success"}
	if strings.Join(obs.results, ",") != strings.Join(wantObs, ",") {
		t.Errorf("observer saw %v, want %v", obs.results, wantObs)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		failures     int
		failure      slacktestutil.Failure
		wantErr      bool
		wantRetry    bool
		wantAttempts int
		wantSleeps   []time.Duration
		// wantLookups counts conversations.history calls: a 5xx may have
		// posted, so each retry after one looks first (and once more after
		// the last); a rate limit or an ok=false answer posted nothing.
		wantLookups int
	}{
		{"500 then success", 2, slacktestutil.Failure{Status: 500}, false, false, 3,
			[]time.Duration{250 * time.Millisecond, 500 * time.Millisecond}, 2},
		// The wait is the channel's gate's (real time), not the policy's.
		{"429 honours Retry-After", 1, slacktestutil.Failure{Status: 429, RetryAfter: time.Second}, false, false, 2,
			nil, 0},
		{"ratelimited in body", 1, slacktestutil.Failure{Error: "ratelimited"}, false, false, 2,
			[]time.Duration{250 * time.Millisecond}, 0},
		{"exhausted", 10, slacktestutil.Failure{Status: 503}, true, true, 4,
			[]time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}, 4},
		{"permanent", 1, slacktestutil.Failure{Error: "channel_not_found"}, true, false, 1, nil, 0},
		{"400 permanent", 1, slacktestutil.Failure{Status: 400}, true, false, 1, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slacktestutil.Start(t)
			chat, sl, obs := newChat(t, srv, nil)
			srv.FailNext(slacktestutil.PostMessage, tt.failures, tt.failure)

			_, err := chat.PostCard(t.Context(), "C1", incident(), tag)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				var ne *notify.Error
				if !errors.As(err, &ne) || ne.Retryable != tt.wantRetry || notify.IsRetryable(err) != tt.wantRetry {
					t.Errorf("err = %#v, want *notify.Error with Retryable %v", err, tt.wantRetry)
				}
				if !strings.HasPrefix(err.Error(), "slack chat.postMessage: ") {
					t.Errorf("error %q does not say what was being done", err)
				}
				wantRes := notify.ResultPermanentError
				if tt.wantRetry {
					wantRes = notify.ResultRetryableError
				}
				if obs.results[0] != "slack/post_card/"+wantRes {
					t.Errorf("observer saw %v", obs.results)
				}
			}
			if got := srv.Attempts(slacktestutil.PostMessage); got != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", got, tt.wantAttempts)
			}
			if got := sl.all(); !equalDurations(got, tt.wantSleeps) {
				t.Errorf("slept %v, want %v", got, tt.wantSleeps)
			}
			if got := srv.Attempts(slacktestutil.History); got != tt.wantLookups {
				t.Errorf("%d conversations.history calls, want %d", got, tt.wantLookups)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetryAfterBeyondDeadlineIsHandedBack(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, sl, _ := newChat(t, srv, nil)
	srv.FailNext(slacktestutil.Update, 1, slacktestutil.Failure{Status: 429, RetryAfter: time.Minute})
	ref, err := chat.PostCard(t.Context(), "C1", incident(), tag)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err = chat.UpdateCard(ctx, ref, incident())
	var ne *notify.Error
	if !errors.As(err, &ne) || !ne.Retryable || ne.RetryAfter <= 50*time.Second || ne.RetryAfter > time.Minute {
		t.Fatalf("err = %#v, want retryable with RetryAfter about 1m", err)
	}
	if len(sl.all()) != 0 {
		t.Errorf("slept %v past the deadline", sl.all())
	}
}

func TestUpdateUnknownCardIsPermanent(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, _, _ := newChat(t, srv, nil)
	err := chat.UpdateCard(t.Context(), notify.CardRef{Channel: "C1", TS: "1.000001"}, incident())
	if err == nil || notify.IsRetryable(err) || !strings.Contains(err.Error(), "message_not_found") {
		t.Fatalf("err = %v, want permanent message_not_found", err)
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	var logs bytes.Buffer
	var errs []error

	srv := slacktestutil.Start(t)
	srv.RequireToken("xoxb-some-other-token")
	chat, _, _ := newChat(t, srv, &logs)
	_, err := chat.PostCard(t.Context(), "C1", incident(), tag) // invalid_auth
	errs = append(errs, err)

	srv2 := slacktestutil.Start(t)
	chat2, _, _ := newChat(t, srv2, &logs)
	srv2.FailNext(slacktestutil.PostMessage, 10, slacktestutil.Failure{Status: 500})
	_, err = chat2.PostCard(t.Context(), "C1", incident(), tag) // retries logged, exhausted
	errs = append(errs, err)

	srv3 := slacktestutil.New()
	chat3, _, _ := newChat(t, srv3, &logs)
	srv3.Close()
	_, err = chat3.PostCard(t.Context(), "C1", incident(), tag) // network error
	errs = append(errs, err)

	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), token) || strings.Contains(fmtErr(err), token) {
			t.Errorf("error carries the token: %v", err)
		}
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("expected retry logs, got %q", logs.String())
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("logs carry the token:\n%s", logs.String())
	}
}

func fmtErr(err error) string {
	b, _ := json.Marshal(err)
	return string(b) + " " + strings.ReplaceAll(err.Error(), "\n", " ")
}

func TestNewRequiresToken(t *testing.T) {
	if _, err := nslack.New(nslack.Config{}); err == nil {
		t.Fatal("New accepted an empty token")
	}
}
