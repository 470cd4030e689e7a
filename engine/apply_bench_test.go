package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/signal"
)

// BenchmarkApplySignals measures the pure state change of one alert
// joining an open incident of n alerts (the engine's CPU per signal,
// without the bus).
func BenchmarkApplySignals(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			var r *Record
			for i := range n {
				r, _ = apply1(r, sig(fmt.Sprint(i), signal.Firing, t0), t0)
			}
			in := []input.Input{sig("new", signal.Firing, t0.Add(time.Minute))}
			env := testEnv(t0.Add(time.Minute))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, res := applySignals(r, in, env); !res.Changed() {
					b.Fatal("no change")
				}
			}
		})
	}
}

// BenchmarkDecideInTime measures deciding a request from n votes in the
// order they were cast (a Decide per prefix: quadratic in the votes).
func BenchmarkDecideInTime(b *testing.B) {
	for _, n := range []int{2, 16, 64} {
		b.Run(fmt.Sprintf("votes=%d", n), func(b *testing.B) {
			p := ApprovalPolicy{Approvers: []string{"@oncall"}, MinApprovals: n + 1, Expires: time.Hour}
			var votes []Vote
			for i := range n {
				votes = append(votes, Vote{By: input.Actor{ID: fmt.Sprint("U", i), Via: "slack"}, At: t0.Add(time.Duration(n-i) * time.Second),
					Approve: true, Hash: "h", As: "@oncall"})
			}
			req := Mark{By: input.Actor{ID: "UREQ", Via: "slack"}, At: t0}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if d, _ := decideInTime(p, votes, req, "h", t0.Add(time.Minute)); d.State != DecisionPending {
					b.Fatal(d.State)
				}
			}
		})
	}
}
