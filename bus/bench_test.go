package bus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/incidentbot/incidentbot/bus"
)

// BenchmarkPublish measures durable publishes to the embedded JetStream
// (file store): one at a time (latency) and from 16 goroutines.
func BenchmarkPublish(b *testing.B) {
	data := make([]byte, 1500)
	for _, par := range []int{1, 16} {
		b.Run("parallel="+strconv.Itoa(par), func(b *testing.B) {
			bb := openBus(b, b.TempDir())
			defer bb.Close()
			var seq atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			if par == 1 {
				for b.Loop() {
					ev := bus.Event{ID: strconv.FormatInt(seq.Add(1), 10), Source: "test", Type: "test.x", Data: data}
					if _, err := bb.Publish(context.Background(), ev); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ev := bus.Event{ID: strconv.FormatInt(seq.Add(1), 10), Source: "test", Type: "test.x", Data: data}
					if _, err := bb.Publish(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
