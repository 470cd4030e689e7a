package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// sinkBot is the environment of a built bot that talks to slackSrv and pd
// with otherwise default settings, on fresh loopback ports and data
// directory; its embedded NATS also listens on natsAddr, for waitQuiet.
func sinkBot(t testing.TB, slackSrv *slacktestutil.Server, pd *testenv.PagerDuty) (env []string, addr, natsAddr string) {
	addr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	natsAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env = botEnv(addr, t.TempDir(),
		"INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(),
		"INCIDENTBOT_PAGERDUTY_ROUTING_KEY=R0UT1NGKEY0000000000000000000000",
		"INCIDENTBOT_PAGERDUTY_EVENTS_URL="+pd.URL,
		"INCIDENTBOT_BUS_LISTEN="+natsAddr,
	)
	return env, addr, natsAddr
}

// criticalAlerts builds n Alertmanager v4 notifications from the
// single-alert fixture, each its own group (groupKey, labels and
// fingerprint changed), so that each becomes its own critical incident of
// the high-error-rate runbook: a card and a page. Alert i carries the
// service label alertService(i), which the card's text and the page's
// summary show.
func criticalAlerts(t testing.TB, n int) [][]byte {
	t.Helper()
	base := fixture(t, "webhook.firing.single.json")
	out := make([][]byte, n)
	for i := range n {
		out[i] = alertAs(t, base, alertService(i), 0xe2e0000+i)
	}
	return out
}

// alertAs is the single-alert notification base made its own group: its
// service label is svc (in the group key too) and its fingerprint fp.
func alertAs(t testing.TB, base []byte, svc string, fp int) []byte {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(base, &p); err != nil {
		t.Fatal(err)
	}
	alert := p["alerts"].([]any)[0].(map[string]any)
	alert["labels"].(map[string]any)["service"] = svc
	alert["fingerprint"] = fmt.Sprintf("%016x", fp)
	p["groupLabels"].(map[string]any)["service"] = svc
	p["commonLabels"].(map[string]any)["service"] = svc
	p["groupKey"] = fmt.Sprintf(`{}/{severity="critical"}:{alertname="HighErrorRate", service=%q}`, svc)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alertService names the service of alert i; alertOf reads i back from a
// card's text or a page's summary.
func alertService(i int) string { return fmt.Sprintf("svc-%04d", i) }

var serviceRE = regexp.MustCompile(`svc-(\d{4})\b`)

func alertOf(text string) (int, bool) {
	m := serviceRE.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	i, err := strconv.Atoi(m[1])
	return i, err == nil
}

// sendAll posts every body at once, as a burst, and returns when each was
// answered or failed: the time each got its 200 (zero when it did not).
func sendAll(addr string, bodies [][]byte) []time.Time {
	answered := make([]time.Time, len(bodies))
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := deliver(addr, b); err == nil && code == http.StatusOK {
				answered[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	return answered
}

// cardsByAlert counts the cards (top-level posts) per alert and returns
// the post time of each alert's first card (from its ts) and the incident
// id the card shows.
func cardsByAlert(s *slacktestutil.Server) (count map[int]int, first map[int]time.Time, incident map[int]string) {
	count, first, incident = map[int]int{}, map[int]time.Time{}, map[int]string{}
	for _, c := range cards(s) {
		i, ok := alertOf(c.Text)
		if !ok {
			continue
		}
		count[i]++
		if _, seen := first[i]; !seen {
			first[i] = tsTime(c.TS)
			incident[i] = incidentIDRE.FindString(c.Text)
		}
	}
	return count, first, incident
}

var incidentIDRE = regexp.MustCompile(`INC-[0-9A-Z]+`)

// tsTime reads a Slack ts ("seconds.micros") as a time.
func tsTime(ts string) time.Time {
	f, err := strconv.ParseFloat(ts, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMicro(int64(f * 1e6))
}

// triggersByAlert counts PagerDuty trigger events per alert and per dedup
// key, and returns when each alert's first trigger arrived and its key.
func triggersByAlert(pd *testenv.PagerDuty) (count map[int]int, perKey map[string]int, first map[int]time.Time, key map[int]string) {
	count, perKey, first, key = map[int]int{}, map[string]int{}, map[int]time.Time{}, map[int]string{}
	for _, ev := range pd.Events() {
		if ev.EventAction != "trigger" {
			continue
		}
		perKey[ev.DedupKey]++
		i, ok := alertOf(ev.Payload.Summary)
		if !ok {
			continue
		}
		count[i]++
		if _, seen := first[i]; !seen {
			first[i], key[i] = ev.Received, ev.DedupKey
		}
	}
	return count, perKey, first, key
}

// busConsumers are the durable consumers whose backlog says whether the
// bot has work left: the input consumer and each sink's delivery jobs.
var busConsumers = [][2]string{
	{"INCIDENTBOT_EVENTS", "engine"},
	{"INCIDENTBOT_DELIVERIES", "deliver-chat"},
	{"INCIDENTBOT_DELIVERIES", "deliver-pager"},
}

// waitQuiet waits until the bot whose embedded NATS listens on natsAddr
// has no work left: every consumer in busConsumers has nothing undelivered
// and nothing unacknowledged (in flight, waiting out a lease or a retry,
// or held by a process that died and not yet redelivered), twice in a row
// half a second apart. It returns false when timeout passes first.
func waitQuiet(t testing.TB, natsAddr string, timeout time.Duration) bool {
	t.Helper()
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to the bot's nats: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	idle := 0
	for time.Now().Before(deadline) {
		if backlog(t, js) == 0 {
			idle++
		} else {
			idle = 0
		}
		if idle == 2 {
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

func backlog(t testing.TB, js jetstream.JetStream) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	for _, c := range busConsumers {
		cons, err := js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Logf("consumer %s/%s: %v", c[0], c[1], err)
			return -1
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Logf("consumer %s/%s info: %v", c[0], c[1], err)
			return -1
		}
		n += int(info.NumPending) + info.NumAckPending
	}
	return n
}

// envInt reads a positive integer setting of these tests from the
// environment, or returns def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// envDuration reads a duration setting of these tests from the
// environment, or returns def.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 40s", name, v)
	}
	return d
}

// percentile returns the p-th percentile (0..1, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

// explainMissing logs, for alerts answered 200 that got no card or page,
// where their trail stops in the bot's NATS at natsAddr: the stored event,
// the input consumer's position, the incident record, its id index entry
// and its deliveries.
func explainMissing(t testing.TB, natsAddr string, services []string) {
	t.Helper()
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	if err != nil {
		t.Logf("explain: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("explain: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	trail := map[string][]string{}
	if st, err := js.Stream(ctx, "INCIDENTBOT_EVENTS"); err == nil {
		if info, err := st.Info(ctx); err == nil {
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					continue
				}
				for _, svc := range services {
					if strings.Contains(string(m.Data), `"`+svc+`"`) {
						trail[svc] = append(trail[svc], fmt.Sprintf("event seq %d stored", seq))
					}
				}
			}
		}
	}
	if c, err := js.Consumer(ctx, "INCIDENTBOT_EVENTS", "engine"); err == nil {
		if ci, err := c.Info(ctx); err == nil {
			t.Logf("explain: input consumer: delivered up to %d, acked up to %d, %d pending, %d unacked",
				ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending)
		}
	}
	get := func(bucket, key string) string {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return err.Error()
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return "none"
		}
		return string(e.Value())
	}
	if kv, err := js.KeyValue(ctx, "incidentbot_incidents"); err == nil {
		if keys, err := kv.ListKeys(ctx); err == nil {
			for k := range keys.Keys() {
				e, err := kv.Get(ctx, k)
				if err != nil {
					continue
				}
				var rec struct {
					ID      string `json:"id"`
					Version int64  `json:"version"`
				}
				_ = json.Unmarshal(e.Value(), &rec)
				for _, svc := range services {
					if strings.Contains(string(e.Value()), `"`+svc+`"`) {
						trail[svc] = append(trail[svc], fmt.Sprintf("record %s %s version %d; index: %s; chat: %s; pager: %s",
							k, rec.ID, rec.Version, get("incidentbot_incident_ids", "id."+strings.TrimPrefix(rec.ID, "INC-")),
							get("incidentbot_deliveries", "chat."+rec.ID), get("incidentbot_deliveries", "pager."+rec.ID)))
					}
				}
			}
		}
	}
	for _, svc := range services {
		t.Logf("explain: %s: %v", svc, trail[svc])
	}
}
