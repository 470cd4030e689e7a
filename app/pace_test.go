package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestRetryAfterHoldsEveryReplica: two replicas, each with its own Slack
// client, on one NATS. Slack rate limits a channel for one of them; the
// other hears of it over the bus and holds its own calls into that channel
// until the window ends (handing them back unsent when the window outlasts
// their deadline) instead of spending them into the 429 window. Its calls
// into another channel go on.
func TestRetryAfterHoldsEveryReplica(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	acfg := bus.DefaultConfig()
	acfg.DataDir, acfg.Listen = t.TempDir(), "127.0.0.1:"+strconv.Itoa(port)
	busA, err := bus.Open(ctx, acfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer busA.Close()
	bcfg := bus.DefaultConfig()
	bcfg.URL = "nats://" + acfg.Listen
	busB, err := bus.Open(ctx, bcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer busB.Close()

	srv := slacktestutil.Start(t)
	chat := func() *nslack.Chat {
		cfg := nslack.DefaultConfig()
		cfg.Token, cfg.APIURL, cfg.Timeout = "xoxb-test", srv.URL(), 5*time.Second
		cfg.ChannelRate, cfg.ChannelBurst = 0, 1 // no pace: only Retry-After holds calls
		c, err := nslack.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := chat(), chat()
	a.SharePace(sendPace(busA, log))
	heard := make(chan paceNotice, 4)
	if err := listenPace(ctx, busB, log, func(n paceNotice) { b.ClosedElsewhere(n.Channels, n.Until); heard <- n }); err != nil {
		t.Fatal(err)
	}
	inc := func(id string) notify.Incident {
		return notify.Incident{ID: id, Title: "storm " + id, Severity: notify.SeverityCritical, Status: notify.StatusFiring, StartedAt: time.Now()}
	}
	tag := func(id string) notify.CardTag { return notify.CardTag{IncidentID: id, Nonce: "n-" + id} }

	srv.RateLimitChannel("#alpha", 1, 3*time.Second)
	limited := make(chan error, 1)
	go func() { _, err := a.PostCard(ctx, "#alpha", inc("A-1"), tag("A-1")); limited <- err }()
	var n paceNotice
	select {
	case n = <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("the other replica never heard of the Retry-After")
	}
	if len(n.Channels) == 0 || n.Channels[0] != "#alpha" || time.Until(n.Until) < time.Second {
		t.Fatalf("notice %+v: want #alpha closed for about 3s", n)
	}
	before := len(srv.Arrivals())
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err = b.PostCard(short, "#alpha", inc("B-1"), tag("B-1"))
	cancel()
	if !errors.Is(err, notify.ErrNotSent) || !notify.IsRetryable(err) {
		t.Fatalf("the other replica's post into the closed channel: %v; want handed back unsent, retryable", err)
	}
	if got := len(srv.Arrivals()) - before; got != 0 {
		t.Fatalf("%d calls from the other replica reached Slack during the window", got)
	}
	if _, err := b.PostCard(ctx, "#beta", inc("B-2"), tag("B-2")); err != nil {
		t.Fatalf("another channel: %v", err)
	}
	// A patient call waits for the window and lands after it.
	if _, err := b.PostCard(ctx, "#alpha", inc("B-3"), tag("B-3")); err != nil {
		t.Fatal(err)
	}
	if err := <-limited; err != nil {
		t.Fatalf("the rate-limited replica's post: %v", err)
	}
	var limit slacktestutil.Arrival
	for _, ar := range srv.Arrivals() {
		if ar.RetryAfter > 0 {
			limit = ar
		}
	}
	opens := limit.At.Add(limit.RetryAfter)
	for _, ar := range srv.Arrivals() {
		if ar.Channel == "#alpha" && ar.RetryAfter == 0 && ar.At.After(limit.At) && ar.At.Before(opens) {
			t.Errorf("a call into #alpha at %s, inside the window [%s, %s)", ar.At.Format(time.StampMilli),
				limit.At.Format(time.StampMilli), opens.Format(time.StampMilli))
		}
	}
	if got := len(srv.Posts()); got != 3 {
		t.Errorf("%d posts accepted, want 3 (A-1 after the window, B-2, B-3)", got)
	}
}
