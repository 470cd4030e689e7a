package slack_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// limitedLog is a slog handler that closes limited when the sink says a
// channel was rate limited, i.e. once its gate is closed.
type limitedLog struct {
	once    sync.Once
	limited chan struct{}
}

func (h *limitedLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *limitedLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "rate limited the channel") {
		h.once.Do(func() { close(h.limited) })
	}
	return nil
}
func (h *limitedLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *limitedLog) WithGroup(string) slog.Handler      { return h }

func gatedChat(t *testing.T, srv *slacktestutil.Server, rate float64, burst int) (*nslack.Chat, <-chan struct{}) {
	t.Helper()
	h := &limitedLog{limited: make(chan struct{})}
	cfg := nslack.DefaultConfig()
	cfg.Token = token
	cfg.APIURL = srv.URL()
	cfg.Timeout = 5 * time.Second
	cfg.ChannelRate, cfg.ChannelBurst = rate, burst
	cfg.Logger = slog.New(h)
	chat, err := nslack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return chat, h.limited
}

func inc(id string, sev notify.Severity) notify.Incident {
	i := incident()
	i.ID, i.Title, i.Severity = id, "storm "+id, sev
	return i
}

// A 429 with Retry-After for a channel holds every caller's calls into
// that channel — posts, replies and edits, by name or by id — until the
// window the server announced has passed, while another channel's calls go
// on.
func TestRetryAfterClosesTheChannelForEveryCaller(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, limited := gatedChat(t, srv, 0, 1) // no pacing: only Retry-After holds calls
	ctx := t.Context()
	ref, err := chat.PostCard(ctx, "#alpha", inc("A-0", notify.SeverityCritical), tag)
	if err != nil {
		t.Fatal(err)
	}

	srv.RateLimitChannel("#alpha", 1, 2*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	wg.Go(func() { errs <- chat.UpdateCard(ctx, ref, inc("A-0", notify.SeverityCritical)) }) // the one that gets the 429
	<-limited
	for i := range 8 {
		wg.Go(func() {
			_, err := chat.PostCard(ctx, "#alpha", inc(fmt.Sprint("A-", i+1), notify.SeverityCritical), tag)
			errs <- err
		})
	}
	for i := range 3 {
		wg.Go(func() {
			errs <- chat.Reply(ctx, ref, inc("A-0", notify.SeverityCritical), notify.Update{Kind: "note", Text: fmt.Sprint("reply ", i)})
		})
	}
	for i := range 5 {
		wg.Go(func() {
			_, err := chat.PostCard(ctx, "#beta", inc(fmt.Sprint("B-", i), notify.SeverityWarning), tag)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	arr := srv.Arrivals()
	limitAt := -1
	for i, a := range arr {
		if a.RetryAfter > 0 {
			limitAt = i
		}
	}
	if limitAt < 0 {
		t.Fatal("no call was rate limited")
	}
	limit := arr[limitAt]
	opens := limit.At.Add(limit.RetryAfter)
	alpha := func(ch string) bool { return ch == "#alpha" || ch == ref.Channel }
	var inWindow, alphaAfter, betaHeld int
	firstAlphaAfter := -1
	for i, a := range arr[limitAt+1:] {
		switch {
		case alpha(a.Channel):
			alphaAfter++
			if a.At.Before(opens) {
				inWindow++
			}
			if firstAlphaAfter < 0 {
				firstAlphaAfter = i
			}
		case a.Channel == "#beta" && firstAlphaAfter >= 0:
			betaHeld++
		}
	}
	if inWindow > 0 {
		t.Errorf("%d of %d calls into #alpha landed during its Retry-After window (%s from %s)",
			inWindow, alphaAfter, limit.RetryAfter, limit.At.Format(time.StampMicro))
	}
	if alphaAfter != 1+8+3 {
		t.Errorf("%d calls into #alpha after the rate limit, want 12 (the edit again, 8 cards, 3 replies)", alphaAfter)
	}
	if betaHeld > 0 {
		t.Errorf("%d calls into #beta waited for #alpha's window to end", betaHeld)
	}
	if n := len(srv.Posts()); n != 1+8+3+5 {
		t.Errorf("%d posts accepted, want 17", n)
	}
}

// When calls queue at a channel's gate, critical incidents' cards go
// before warnings', whatever order they came in.
func TestCriticalCardsGoFirst(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, limited := gatedChat(t, srv, 5, 1) // paced, so the order of turns is the order of arrival
	ctx := t.Context()

	srv.RateLimitChannel("#gamma", 1, 2*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	post := func(i notify.Incident) {
		wg.Go(func() {
			_, err := chat.PostCard(ctx, "#gamma", i, tag)
			errs <- err
		})
	}
	post(inc("WARN-0", notify.SeverityWarning)) // gets the 429 and waits again
	<-limited
	for i := range 6 {
		post(inc(fmt.Sprint("WARN-", i+1), notify.SeverityWarning))
		if i%2 == 1 {
			post(inc(fmt.Sprint("CRIT-", i/2), notify.SeverityCritical))
		}
	}
	post(inc("INFO-0", notify.SeverityInfo))
	const queued = 1 + 6 + 3 + 1
	for chat.Waiting("#gamma") < queued {
		if srv.Attempts(slacktestutil.PostMessage) > 1 {
			t.Fatalf("the channel opened before %d calls queued (%d did): machine too slow for a 2 s window", queued, chat.Waiting("#gamma"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	var order []string
	for _, m := range srv.Posts() {
		for _, f := range strings.Fields(m.Text) {
			if strings.Contains(f, "-") {
				order = append(order, f)
				break
			}
		}
	}
	got := strings.Join(order, " ")
	for i, m := range srv.Posts() {
		want := "WARN-"
		switch {
		case i < 3:
			want = "CRIT-"
		case i == queued-1:
			want = "INFO-"
		}
		if !strings.Contains(m.Text, want) {
			t.Fatalf("post %d is not a %s card; posts in order: %s", i, want, got)
		}
	}
}

// A channel closed past the caller's deadline hands the call back at once,
// retryable, saying when the channel opens: a worker is not held.
func TestClosedPastDeadlineIsHandedBack(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, limited := gatedChat(t, srv, 0, 1)
	srv.RateLimitChannel("#delta", 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := chat.PostCard(ctx, "#delta", inc("D-0", notify.SeverityCritical), tag)
	<-limited
	var ne *notify.Error
	if !errors.As(err, &ne) || !ne.Retryable || ne.RetryAfter < 20*time.Second {
		t.Fatalf("err = %#v, want retryable with RetryAfter about 30s", err)
	}
	if ctx.Err() != nil {
		t.Error("the caller waited until its deadline")
	}
	// A later caller, with no deadline issue, is handed back as well.
	ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	if _, err := chat.PostCard(ctx2, "#delta", inc("D-1", notify.SeverityCritical), tag); !notify.IsRetryable(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if n := srv.Attempts(slacktestutil.PostMessage); n != 1 {
		t.Errorf("%d calls reached Slack, want 1 (the rate limited one)", n)
	}
}

// Calls whose turn would come past their deadline — too many ahead at the
// pace, behind a Retry-After — are handed back at once, unsent and
// retryable, so the engine redelivers them later instead of holding a
// worker; a critical card arriving later still gets a turn; nothing is
// looked for, since nothing was sent.
func TestTurnsPastTheDeadlineAreHandedBack(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, limited := gatedChat(t, srv, 1, 1)
	srv.RateLimitChannel("#eps", 1, 2*time.Second)
	call := func(i notify.Incident) error {
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		_, err := chat.PostCard(ctx, "#eps", i, tag)
		return err
	}
	var wg sync.WaitGroup
	type result struct {
		id  string
		err error
	}
	results := make(chan result, 32)
	wg.Go(func() { results <- result{"WARN-0", call(inc("WARN-0", notify.SeverityWarning))} })
	<-limited
	for i := range 10 {
		id := fmt.Sprint("WARN-", i+1)
		wg.Go(func() { results <- result{id, call(inc(id, notify.SeverityWarning))} })
	}
	wg.Go(func() { results <- result{"CRIT-0", call(inc("CRIT-0", notify.SeverityCritical))} })
	wg.Wait()
	close(results)

	posted, handedBack := 0, 0
	for r := range results {
		var ne *notify.Error
		switch {
		case r.err == nil:
			posted++
		case errors.Is(r.err, notify.ErrNotSent) && errors.As(r.err, &ne) && ne.Retryable:
			handedBack++
		default:
			t.Errorf("%s: err = %v, want posted or handed back unsent", r.id, r.err)
		}
		if r.id == "CRIT-0" && r.err != nil {
			t.Errorf("the critical card was not posted: %v", r.err)
		}
	}
	if handedBack == 0 {
		t.Errorf("no call handed back; %d posted", posted)
	}
	if n := srv.Attempts(slacktestutil.PostMessage); n != 1+posted {
		t.Errorf("%d posts reached Slack, want %d (the rate limited one and the %d posted)", n, 1+posted, posted)
	}
	if n := srv.Attempts(slacktestutil.History); n != 0 {
		t.Errorf("%d conversations.history lookups, want none: nothing unsent can have been posted", n)
	}
	t.Logf("%d posted, %d handed back", posted, handedBack)
}
