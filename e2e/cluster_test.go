package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// natsCluster is a 3-node NATS JetStream cluster inside the test process,
// each node with its own client port, route port and store directory.
type natsCluster struct {
	nodes  []*server.Server
	names  []string
	urls   []string // client URLs, nats://127.0.0.1:port
	stores []string // JetStream store directories
}

// startNATSCluster starts three clustered JetStream nodes on loopback.
// Every node gets the full route list (a node without routes never becomes
// ready; see LIBRARIES.md). It returns once each node accepts clients; the
// JetStream meta group may not have a leader yet.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	const n = 3
	c := &natsCluster{}
	clientPorts, routePorts := make([]int, n), make([]int, n)
	var routes []*url.URL
	for i := range n {
		clientPorts[i], routePorts[i] = testenv.FreePort(t), testenv.FreePort(t)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(routePorts[i])})
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		store := t.TempDir()
		s, err := server.NewServer(&server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			Cluster:    server.ClusterOpts{Name: "incidentbot-e2e", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     routes,
			JetStream:  true,
			StoreDir:   store,
			// Bounds independent of the machine's disk, far above what
			// the test stores (the audit stream reserves its 4 MiB).
			JetStreamMaxMemory: 256 << 20,
			JetStreamMaxStore:  4 << 30,
			NoLog:              true,
			NoSigs:             true,
		})
		if err != nil {
			t.Fatalf("nats node %s: %v", name, err)
		}
		s.Start()
		c.nodes, c.names, c.stores = append(c.nodes, s), append(c.names, name), append(c.stores, store)
		c.urls = append(c.urls, "nats://127.0.0.1:"+strconv.Itoa(clientPorts[i]))
	}
	t.Cleanup(func() {
		for _, s := range c.nodes {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	for i, s := range c.nodes {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats node %s not ready", c.names[i])
		}
	}
	return c
}

// node returns the running node named name, or -1.
func (c *natsCluster) node(name string) int {
	for i, n := range c.names {
		if n == name {
			return i
		}
	}
	return -1
}

// clusterState reports what is not yet settled in the cluster: no meta
// leader, a node not current, or a stream or consumer without a leader or
// with a replica that is offline or behind. Empty means settled.
func clusterState(ctx context.Context, c *natsCluster, alive []bool, js jetstream.JetStream) string {
	leader := false
	for i, s := range c.nodes {
		if !alive[i] {
			continue
		}
		leader = leader || s.JetStreamIsLeader()
		if !s.JetStreamIsCurrent() {
			return c.names[i] + " not current with the meta group"
		}
	}
	if !leader {
		return "no meta leader"
	}
	want := 0
	for _, a := range alive {
		want += btoi(a)
	}
	want-- // peers besides the leader
	check := func(what string, ci *jetstream.ClusterInfo) string {
		if ci == nil || ci.Leader == "" {
			return what + ": no leader"
		}
		current := 0
		for _, p := range ci.Replicas {
			if p.Current && !p.Offline {
				current++
			}
		}
		if current < want {
			return fmt.Sprintf("%s: %d of %d live peers current", what, current, want)
		}
		return ""
	}
	streams := js.ListStreams(ctx)
	n := 0
	for info := range streams.Info() {
		n++
		if s := check("stream "+info.Config.Name, info.Cluster); s != "" {
			return s
		}
		st, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			return err.Error()
		}
		cons := st.ListConsumers(ctx)
		for ci := range cons.Info() {
			if ci.Config.Durable == "" && ci.Config.MemoryStorage && ci.Config.Replicas <= 1 {
				// An ordered consumer (a watch of a bucket) has one replica
				// by design: its client makes a new one if its server goes.
				continue
			}
			if s := check("consumer "+info.Config.Name+"/"+ci.Name, ci.Cluster); s != "" {
				return s
			}
		}
		if err := cons.Err(); err != nil {
			return err.Error()
		}
	}
	if err := streams.Err(); err != nil {
		return err.Error()
	}
	if n == 0 {
		return "no streams yet"
	}
	return ""
}

// waitSettled waits until clusterState is empty twice in a row.
func waitSettled(t *testing.T, c *natsCluster, alive []bool, js jetstream.JetStream, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, ok := "", 0
	for ok < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not settled after %s: %s", timeout, last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = clusterState(ctx, c, alive, js)
		cancel()
		if last == "" {
			ok++
		} else {
			ok = 0
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// deliverTimeout posts body to the bot at addr as deliver does, with a
// bound on the whole exchange (Alertmanager's default is 10s).
func deliverTimeout(client *http.Client, addr string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+alertmanager.Path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestScaleOutCluster: three bots share a 3-node NATS JetStream cluster
// (streams and buckets with 3 replicas), all started together while the
// cluster is young. A burst of distinct critical alerts goes round-robin
// to the three bots; a delivery that does not get a 200 is retried on the
// next bot, as Alertmanager would retry it. Once a third of the burst is
// acknowledged, the NATS node leading the events stream is shut down
// abruptly (in-process, no leadership transfer) and one bot is SIGKILLed;
// the burst goes on. Then every acknowledged alert has exactly one card
// and exactly one PagerDuty trigger (one trigger per dedup key, the
// incident id the card shows), and an alert that was never acknowledged
// has at most one of each. The one repeat tolerated is a trigger the
// killed bot had in flight, re-sent by a survivor with the same dedup key;
// a front per bot before the PagerDuty server proves which bot sent what,
// and the count is logged (judgeCluster; E2E_CLUSTER_STRICT=1 refuses it).
//
// It also logs figures for docs/capacity.md (not asserted): acknowledged
// alerts per second, the largest engine backlog seen, the streams' sizes,
// the size of records and delivery entries, and bytes on disk per
// incident on a surviving node.
//
//	E2E_CLUSTER_ALERTS   alerts in the burst (default 180)
//	E2E_CLUSTER_LOGS     1: log the surviving bots' output even when the test passes
//	E2E_CLUSTER_STRICT   1: a trigger re-sent after the kill fails the test too (see judgeCluster)
func TestScaleOutCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3 NATS nodes and 3 bots; about a minute")
	}
	alerts := envInt(t, "E2E_CLUSTER_ALERTS", 180)
	if _, err := buildBot(); err != nil {
		t.Fatalf("build incidentbot: %v", err)
	}
	bodies := criticalAlerts(t, alerts)
	slackSrv := slacktestutil.Start(t)
	pd := testenv.StartPagerDuty(t)

	began := time.Now()
	cl := startNATSCluster(t)
	alive := []bool{true, true, true}
	metaLeader := make(chan time.Duration, 1)
	go func() { // when the young cluster elects its meta leader, for the log
		for time.Since(began) < 2*time.Minute {
			for _, s := range cl.nodes {
				if s.JetStreamIsLeader() {
					metaLeader <- time.Since(began)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// The bots start at once, on a cluster that may not have elected its
	// meta leader yet: provisioning must wait for it (bus/start.go).
	addrs := make([]string, 3)
	bots := make([]*bot, 3)
	fronts := &pdFronts{pd: pd}
	for i := range bots {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		bots[i] = startBot(t, botEnv(addrs[i], t.TempDir(),
			"INCIDENTBOT_BUS_URL="+strings.Join(cl.urls, ","),
			"INCIDENTBOT_BUS_REPLICAS=3",
			"INCIDENTBOT_BUS_AUDIT_MAX_BYTES=4194304", // reserved on every node
			"INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(),
			"INCIDENTBOT_PAGERDUTY_ROUTING_KEY=R0UT1NGKEY0000000000000000000000",
			"INCIDENTBOT_PAGERDUTY_EVENTS_URL="+fronts.url(t, i),
		)...)
	}
	for _, a := range addrs {
		eventually(t, 90*time.Second, "bot "+a+" ready", func() bool {
			resp, err := http.Get("http://" + a + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	ready := time.Since(began)
	select {
	case d := <-metaLeader:
		t.Logf("meta leader elected %s after the cluster started; three bots ready after %s", d.Round(time.Millisecond), ready.Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Logf("three bots ready %s after the cluster started; no meta leader seen", ready.Round(time.Millisecond))
	}
	nc, err := nats.Connect(strings.Join(cl.urls, ","), nats.Timeout(5*time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to the cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Kill only once every stream and consumer has all three replicas
	// current: then losing one node cannot lose acknowledged data, and a
	// loss would be the bot's.
	waitSettled(t, cl, alive, js, 90*time.Second)
	t.Logf("cluster settled (meta leader, every stream and consumer with 3 current replicas) %s after it started", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	evInfo, err := mustStream(ctx, js, "INCIDENTBOT_EVENTS")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	victimNode := cl.node(evInfo.Cluster.Leader)
	if victimNode < 0 {
		t.Fatalf("events stream leader %q is not a node of the cluster", evInfo.Cluster.Leader)
	}
	const victimBot = 0

	// The burst: alert i goes first to bot i%3; anything but a 200 moves it
	// to the next bot, with a growing pause after each round.
	client := &http.Client{Timeout: 10 * time.Second}
	answered := make([]time.Time, alerts)
	var nAnswered, retries atomic.Int64
	var killedAt atomic.Pointer[time.Time]
	var cardsAtKill atomic.Int64
	var start time.Time // when the burst began
	killOnce := sync.Once{}
	kill := func() {
		killOnce.Do(func() {
			now := time.Now()
			killedAt.Store(&now)
			cardsAtKill.Store(int64(len(cards(slackSrv))))
			if err := bots[victimBot].cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill bot: %v", err)
			}
			cl.nodes[victimNode].Shutdown()
			alive[victimNode] = false
			t.Logf("ingest before the kill: %d acknowledged in %s by three bots", nAnswered.Load(), now.Sub(start).Round(time.Millisecond))
			t.Logf("killed bot %s and NATS node %s (events stream leader) after %d acknowledged", addrs[victimBot], cl.names[victimNode], nAnswered.Load())
		})
	}
	var maxBacklog atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the engine's backlog during the burst, for the capacity model
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if cons, err := js.Consumer(ctx, "INCIDENTBOT_EVENTS", "engine"); err == nil {
				if ci, err := cons.Info(ctx); err == nil {
					n := int64(ci.NumPending) + int64(ci.NumAckPending)
					for old := maxBacklog.Load(); n > old && !maxBacklog.CompareAndSwap(old, n); old = maxBacklog.Load() {
					}
				}
			}
			cancel()
		}
	}()

	const senders = 12
	work := make(chan int)
	start = time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				giveUp := time.Now().Add(60 * time.Second)
				for try := 0; time.Now().Before(giveUp); try++ {
					b := (i + try) % 3
					if code, err := deliverTimeout(client, addrs[b], bodies[i]); err == nil && code == http.StatusOK {
						answered[i] = time.Now()
						if nAnswered.Add(1) == int64(alerts/3) {
							kill()
						}
						break
					}
					retries.Add(1)
					if try%3 == 2 {
						time.Sleep(time.Duration(try/3+1) * 250 * time.Millisecond)
					}
				}
			}
		}()
	}
	for i := range alerts {
		work <- i
	}
	close(work)
	wg.Wait()
	burst := time.Since(start)
	kill() // in case the burst had fewer acknowledgements than a third
	close(stopSampling)
	<-sampled
	at := *killedAt.Load()
	t.Logf("burst: %d of %d acknowledged in %s (%.0f/s), %d deliveries retried on another bot; largest engine backlog %d",
		nAnswered.Load(), alerts, burst.Round(time.Millisecond), float64(nAnswered.Load())/burst.Seconds(), retries.Load(), maxBacklog.Load())

	// Every acknowledged alert gets its card and its page from the two
	// surviving bots; the dead bot's unacknowledged work is redelivered.
	eventually(t, 120*time.Second, "a card and a page for every acknowledged alert", func() bool {
		cardN, _, _ := cardsByAlert(slackSrv)
		pageN, _, _, _ := triggersByAlert(pd)
		for i := range alerts {
			if !answered[i].IsZero() && (cardN[i] == 0 || pageN[i] == 0) {
				return false
			}
		}
		return true
	})
	done := time.Since(start)
	if !waitQuietJS(t, js, 60*time.Second) {
		t.Errorf("the bots still had work 60s after the last card")
	}
	time.Sleep(3 * time.Second) // a late duplicate (lease of a dead worker) would show by now
	_, firstCard, _ := cardsByAlert(slackSrv)
	var last time.Time
	for _, ts := range firstCard {
		if ts.After(last) {
			last = ts
		}
	}
	var hist [7]int // cards by 5s after the kill
	for _, ts := range firstCard {
		hist[min(max(int(ts.Sub(at)/(5*time.Second)), 0), 6)]++
	}
	t.Logf("cards per 5s after the kill: %v", hist)
	t.Logf("cards: %d out at the kill (%s into the burst); the last one %s after the kill; all cards and pages seen %s after the burst began",
		cardsAtKill.Load(), at.Sub(start).Round(time.Millisecond), last.Sub(at).Round(time.Millisecond), done.Round(time.Millisecond))

	judgeCluster(t, alerts, answered, slackSrv, pd, fronts, victimBot, at)
	if t.Failed() || os.Getenv("E2E_CLUSTER_LOGS") == "1" {
		for i := range bots {
			if i != victimBot {
				t.Logf("bot %s output:\n%s", addrs[i], bots[i].out.String())
			}
		}
	}
	logCapacity(t, js, cl, alive, int(nAnswered.Load()))
}

func mustStream(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", name, err)
	}
	if info.Cluster == nil {
		return nil, errors.New("stream " + name + ": no cluster info")
	}
	return info, nil
}

// waitQuietJS is waitQuiet on a connection the test already has.
func waitQuietJS(t *testing.T, js jetstream.JetStream, timeout time.Duration) bool {
	t.Helper()
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

// pdFronts puts one HTTP front per bot before the PagerDuty test server,
// so that every trigger can be traced to the bot that sent it: it records
// (bot, dedup key, time) and passes the request on.
type pdFronts struct {
	pd   *testenv.PagerDuty
	mu   sync.Mutex
	sent []pdSend
}

type pdSend struct {
	bot    int
	action string
	key    string
	at     time.Time
}

func (f *pdFronts) url(t *testing.T, bot int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var ev testenv.PagerDutyEvent
		_ = json.Unmarshal(body, &ev)
		f.mu.Lock()
		f.sent = append(f.sent, pdSend{bot: bot, action: ev.EventAction, key: ev.DedupKey, at: time.Now()})
		f.mu.Unlock()
		resp, err := http.Post(f.pd.URL+r.URL.Path, r.Header.Get("Content-Type"), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// senders returns, per dedup key, the bots that sent its triggers, in order.
func (f *pdFronts) senders() map[string][]pdSend {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]pdSend{}
	for _, s := range f.sent {
		if s.action == "trigger" {
			out[s.key] = append(out[s.key], s)
		}
	}
	return out
}

// judgeCluster fails t for an acknowledged alert without exactly one card
// and one trigger, an alert with two cards, a card and page naming
// different incidents, or a dedup key triggered twice.
//
// One exception is counted apart, not hidden (as in judgeTrial): a trigger
// the killed bot sent before it died, whose answer it never recorded, is
// sent again by a surviving bot once the job's lease has passed, with the
// same dedup key, which PagerDuty folds into the same alert (its dedup
// key is the incident id). It is accepted only when the per-bot fronts
// show exactly that: two triggers, the first from the killed bot before
// the kill, the second from a survivor after it, and at most pagerWorkers
// of them. With E2E_CLUSTER_STRICT=1 it fails like any other repeat.
func judgeCluster(t *testing.T, n int, answered []time.Time, slackSrv *slacktestutil.Server, pd *testenv.PagerDuty,
	fronts *pdFronts, victim int, killed time.Time) {
	t.Helper()
	strict := os.Getenv("E2E_CLUSTER_STRICT") == "1"
	cardN, _, cardInc := cardsByAlert(slackSrv)
	pageN, perKey, _, pageKey := triggersByAlert(pd)
	by := fronts.senders()
	resent := func(key string) bool {
		s := by[key]
		return perKey[key] == 2 && len(s) == 2 && s[0].bot == victim && !s[0].at.After(killed) &&
			s[1].bot != victim && s[1].at.After(killed)
	}
	var acked, cardsTotal, pagesTotal, unackedDelivered, folded int
	for i := range n {
		ok := !answered[i].IsZero()
		cn, pn := cardN[i], pageN[i]
		cardsTotal += cn
		pagesTotal += pn
		pagesOK := pn == 1 || (!ok && pn == 0)
		if pn == 2 && resent(pageKey[i]) {
			folded++
			pagesOK = !strict
		}
		switch {
		case ok && (cn != 1 || !pagesOK):
			t.Errorf("%s (acknowledged): %d cards, %d triggers; want 1 and 1", alertService(i), cn, pn)
		case !ok && (cn > 1 || !pagesOK):
			t.Errorf("%s (never acknowledged): %d cards, %d triggers; want at most 1 of each", alertService(i), cn, pn)
		}
		acked += btoi(ok)
		unackedDelivered += btoi(!ok && (cn > 0 || pn > 0))
		if cn > 0 && pn > 0 && cardInc[i] != pageKey[i] {
			t.Errorf("%s: card shows %s, page has dedup key %s: two incidents for one alert", alertService(i), cardInc[i], pageKey[i])
		}
	}
	for key, c := range perKey {
		if c > 1 && (strict || !resent(key)) {
			var at []string
			for _, s := range by[key] {
				at = append(at, fmt.Sprintf("bot %d at %s", s.bot, s.at.Sub(killed).Round(time.Millisecond)))
			}
			t.Errorf("dedup key %s triggered %d times: %s from the kill", key, c, strings.Join(at, ", "))
		}
	}
	if folded > pagerWorkers {
		t.Errorf("%d triggers re-sent after the kill; at most %d calls can have been in flight in the killed bot", folded, pagerWorkers)
	}
	t.Logf("acknowledged %d of %d; cards %d, triggers %d (%d dedup keys; %d re-sent after the kill with the same key, in flight in the killed bot); not acknowledged but delivered %d",
		acked, n, cardsTotal, pagesTotal, len(perKey), folded, unackedDelivered)
}

// logCapacity logs the sizes docs/capacity.md is checked against: each
// stream's messages and bytes, the mean size of an incident record and of
// a delivery entry, and the bytes on disk of a surviving node's store per
// acknowledged incident.
func logCapacity(t *testing.T, js jetstream.JetStream, cl *natsCluster, alive []bool, incidents int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		per := 0.0
		if info.State.Msgs > 0 {
			per = float64(info.State.Bytes) / float64(info.State.Msgs)
		}
		t.Logf("capacity: stream %s: %d messages, %d bytes (%.0f B/message), %d subjects",
			info.Config.Name, info.State.Msgs, info.State.Bytes, per, info.State.NumSubjects)
	}
	for _, bucket := range []string{"incidentbot_incidents", "incidentbot_deliveries", "incidentbot_incident_ids"} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Logf("capacity: bucket %s: %v", bucket, err)
			continue
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Logf("capacity: bucket %s keys: %v", bucket, err)
			continue
		}
		var n, total, largest int
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				continue
			}
			n++
			total += len(e.Value())
			largest = max(largest, len(e.Value()))
		}
		if n > 0 {
			t.Logf("capacity: bucket %s: %d keys, mean value %d B, largest %d B", bucket, n, total/n, largest)
		}
	}
	for i, store := range cl.stores {
		if !alive[i] {
			continue
		}
		var apparent, allocated, raft int64
		_ = filepath.WalkDir(store, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			apparent += fi.Size()
			if strings.Contains(path, string(filepath.Separator)+"_js_"+string(filepath.Separator)) {
				raft += fi.Size() // the Raft groups' logs and snapshots
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				allocated += st.Blocks * 512
			}
			return nil
		})
		if incidents > 0 {
			t.Logf("capacity: node %s store: %d B apparent (%d B of it Raft logs), %d B allocated; %d B apparent per incident (%d incidents)",
				cl.names[i], apparent, raft, allocated, apparent/int64(incidents), incidents)
		}
	}
}
