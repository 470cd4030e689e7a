package alertmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
)

// payloadTemplate returns a webhook body with n alerts whose groupKey
// holds a placeholder, so every request can be made unique (the bus
// deduplicates repeats, which would flatter the ingest figure).
func payloadTemplate(b *testing.B, n int) (prefix, suffix []byte) {
	var m map[string]any
	if err := json.Unmarshal(fixture(b, "webhook.firing.grouped.json"), &m); err != nil {
		b.Fatal(err)
	}
	base := m["alerts"].([]any)
	alerts := make([]any, 0, n)
	for i := range n {
		a := map[string]any{}
		for k, v := range base[i%len(base)].(map[string]any) {
			a[k] = v
		}
		a["fingerprint"] = fmt.Sprintf("%016x", i+1)
		alerts = append(alerts, a)
	}
	m["alerts"] = alerts
	m["groupKey"] = "@@"
	body, _ := json.Marshal(m)
	i := bytes.Index(body, []byte("@@"))
	return body[:i], body[i+2:]
}

// decodeOnly is the baseline: a bare handler that reads and decodes the
// payload and answers 200.
func decodeOnly() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, alertmanager.DefaultMaxBodyBytes))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if _, err := alertmanager.Decode(body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"accepted"}`+"\n")
	})
}

// drive sends n unique requests with c concurrent clients and returns the
// elapsed time.
func drive(b *testing.B, url string, n, c int, prefix, suffix []byte, seq *atomic.Int64) time.Duration {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, len(prefix)+len(suffix)+20)
			for next.Add(1) <= int64(n) {
				buf = append(buf[:0], prefix...)
				buf = strconv.AppendInt(buf, seq.Add(1), 10)
				buf = append(buf, suffix...)
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(buf))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkIngest measures webhook ingest — authenticate, decode, derive
// the id and durably publish to in-process JetStream (file store) — beside
// the decode-only baseline in the same run, with 16 concurrent clients on
// loopback. It reports requests/s and alerts/s for both and their ratio,
// and the CPU each path costs per request and their ratio.
func BenchmarkIngest(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			prefix, suffix := payloadTemplate(b, n)
			cfg := bus.DefaultConfig()
			cfg.DataDir = b.TempDir()
			bb, err := bus.Open(context.Background(), cfg, discardLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer bb.Close()
			rc, err := alertmanager.New(bearer(), alertmanager.Deps{Publisher: bb})
			if err != nil {
				b.Fatal(err)
			}
			base := httptest.NewServer(decodeOnly())
			defer base.Close()
			ingest := httptest.NewServer(rc)
			defer ingest.Close()
			var seq atomic.Int64
			const clients = 16
			// Warm both paths (connections, JIT of the stream).
			drive(b, base.URL, 200, clients, prefix, suffix, &seq)
			drive(b, ingest.URL, 200, clients, prefix, suffix, &seq)
			b.ResetTimer()
			// Alternate the two in rounds so drift in machine load
			// affects both alike.
			var dBase, dIngest, cBase, cIngest time.Duration
			const rounds = 4
			for r := range rounds {
				k := b.N / rounds
				if r == rounds-1 {
					k = b.N - k*(rounds-1)
				}
				c0 := cpuTime()
				dBase += drive(b, base.URL, k, clients, prefix, suffix, &seq)
				c1 := cpuTime()
				dIngest += drive(b, ingest.URL, k, clients, prefix, suffix, &seq)
				cBase, cIngest = cBase+c1-c0, cIngest+cpuTime()-c1
			}
			b.StopTimer()
			baseRate := float64(b.N) / dBase.Seconds()
			ingestRate := float64(b.N) / dIngest.Seconds()
			b.ReportMetric(baseRate, "decode-req/s")
			b.ReportMetric(ingestRate, "ingest-req/s")
			b.ReportMetric(ingestRate*float64(n), "ingest-alerts/s")
			b.ReportMetric(ingestRate/baseRate, "ratio")
			// The process's CPU per request (server, JetStream and the
			// clients alike) for each path, and their ratio: what the
			// wall-clock ratio tends to when the cores are saturated,
			// and steadier than it when other jobs share the machine.
			b.ReportMetric(float64(cBase.Microseconds())/float64(b.N), "decode-cpu-µs/req")
			b.ReportMetric(float64(cIngest.Microseconds())/float64(b.N), "ingest-cpu-µs/req")
			if cIngest > 0 {
				b.ReportMetric(float64(cBase)/float64(cIngest), "cpu-ratio")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
