package slack

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/incidentbot/incidentbot/notify"
)

// BenchmarkGate measures a turn at an open gate (the cost every call into
// a channel pays), with every goroutine on one channel or spread over 64.
func BenchmarkGate(b *testing.B) {
	for _, channels := range []int{1, 64} {
		b.Run(fmt.Sprint(channels, "-channels"), func(b *testing.B) {
			g := newGate(1e9, 1<<30, nil) // paced, never short of tokens
			var n atomic.Int64
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				ch := fmt.Sprint("C", n.Add(1)%int64(channels))
				sev := notify.SeverityWarning
				if n.Load()%2 == 0 {
					sev = notify.SeverityCritical
				}
				for pb.Next() {
					if err := g.wait(ctx, "bench", ch, sev); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
