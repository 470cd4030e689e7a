package testenv

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPagerDutyDownUp(t *testing.T) {
	pd := StartPagerDuty(t)
	send := func(ctx context.Context) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, pd.URL+"/v2/enqueue",
			strings.NewReader(`{"routing_key":"r","event_action":"trigger","dedup_key":"INC-1"}`))
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	pd.Down(PagerDutyFailure{Status: 500})
	if code, err := send(t.Context()); err != nil || code != 500 {
		t.Fatalf("while down: %d %v, want 500", code, err)
	}
	pd.Down(PagerDutyFailure{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := send(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("while hanging: %v, want the client's timeout", err)
	}
	if n := len(pd.Events()); n != 0 {
		t.Fatalf("%d events recorded during the outage", n)
	}

	pd.Up()
	before := time.Now()
	if code, err := send(t.Context()); err != nil || code != http.StatusAccepted {
		t.Fatalf("after the outage: %d %v, want 202", code, err)
	}
	evs := pd.Events()
	if len(evs) != 1 || evs[0].DedupKey != "INC-1" || evs[0].Received.Before(before) {
		t.Fatalf("events = %+v", evs)
	}
	if n := pd.Attempts(); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
}

func TestPagerDutyHangingRequestDoesNotBlockStop(t *testing.T) {
	var pd *PagerDuty
	t.Run("hang", func(t *testing.T) {
		pd = StartPagerDuty(t)
		pd.Down(PagerDutyFailure{Hang: true})
		go func() {
			req, _ := http.NewRequest(http.MethodPost, pd.URL+"/v2/enqueue", strings.NewReader(`{}`))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		deadline := time.Now().Add(5 * time.Second)
		for pd.Attempts() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}) // the subtest's cleanup stops the server with the request hanging
	if pd.Attempts() != 1 {
		t.Fatalf("attempts = %d, want 1", pd.Attempts())
	}
}
