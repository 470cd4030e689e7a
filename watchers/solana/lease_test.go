package solana

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/lease"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// sharedBus is one in-process bus with the buckets replicas share.
type sharedBus struct {
	b                    *bus.Bus
	state, views, leases bus.KV
}

func openSharedBus(t *testing.T) *sharedBus {
	t.Helper()
	ctx := context.Background()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := bus.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	sb := &sharedBus{b: b}
	for _, x := range []struct {
		kv   *bus.KV
		spec bus.BucketSpec
	}{{&sb.state, StateBucket}, {&sb.views, rpcview.Bucket}, {&sb.leases, lease.Bucket}} {
		if *x.kv, err = b.EnsureBucket(ctx, x.spec); err != nil {
			t.Fatalf("ensure bucket %s: %v", x.spec.Name, err)
		}
	}
	return sb
}

// busTee publishes to the bus and records what the bus took, once per id.
type busTee struct {
	b   *bus.Bus
	rec *recorder
}

func (p busTee) Publish(ctx context.Context, ev bus.Event) (bus.PublishResult, error) {
	res, err := p.b.Publish(ctx, ev)
	if err == nil {
		_, _ = p.rec.Publish(ctx, ev)
	}
	return res, err
}

type sharingReplica struct {
	name string
	w    *Watchers
	stop func()
}

// startSharing runs watchers that share sb's leases as replica name.
func startSharing(t *testing.T, sb *sharedBus, cfg Config, rec *recorder, name string) *sharingReplica {
	t.Helper()
	w, err := New(cfg, busTee{sb.b, rec}, rpcview.Store{KV: sb.views}, sb.state, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.Share(sb.leases, name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	r := &sharingReplica{name: name, w: w}
	r.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not return after cancel", name)
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *sharingReplica) leads(watcher string) bool {
	return testutil.ToFloat64(r.w.m.leader.WithLabelValues(watcher)) == 1
}

// leaders names the replicas leading watcher.
func leaders(rs []*sharingReplica, watcher string) []string {
	var names []string
	for _, r := range rs {
		if r.leads(watcher) {
			names = append(names, r.name)
		}
	}
	return names
}

func leaderOf(t *testing.T, rs []*sharingReplica, watcher string) *sharingReplica {
	t.Helper()
	var got *sharingReplica
	eventually(t, "one leader of "+watcher, func() bool {
		n := 0
		for _, r := range rs {
			if r.leads(watcher) {
				got, n = r, n+1
			}
		}
		return n == 1
	})
	return got
}

// leasedConfig has long intervals, so each watcher's start is counted at
// the node (one probe of each kind per start), and a 1s lease.
func leasedConfig(srv *solanatest.Server) Config {
	cfg := txConfig(srv)
	cfg.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1}}
	cfg.Health.Interval = time.Hour
	cfg.BalanceInterval = time.Hour
	cfg.Tx.PollInterval = time.Hour
	cfg.ProgramPollInterval = time.Hour
	cfg.LeaseTTL = time.Second
	return cfg
}

// TestReplicasShareTheWatchers: three replicas on one bus run each
// watcher once between them, not three times; when the one running a
// watcher stops, another takes it over and probing continues.
func TestReplicasShareTheWatchers(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	srv.StoreAccount(programData, solanatest.Account{Data: programDataBytes(100, key(multisig))})
	srv.SetBalance(hotWallet, 5000)
	sb := openSharedBus(t)
	cfg := leasedConfig(srv)
	rec := newRecorder()
	var rs []*sharingReplica
	for _, n := range []string{"a", "b", "c"} {
		rs = append(rs, startSharing(t, sb, cfg, rec, n))
	}
	watchers := []string{"solana.health", "solana.balances", "solana.tx.payments", "solana.program.payments"}
	for _, w := range watchers {
		leaderOf(t, rs, w)
	}
	eventually(t, "each watcher started once", func() bool {
		return srv.Calls("getHealth") == 1 && srv.Calls("getBalance") == 1 &&
			srv.Calls("getSignaturesForAddress") == 1 && srv.Calls("getAccountInfo") >= 1 &&
			srv.Subscriptions("logsSubscribe") == 1 && srv.Subscriptions("accountSubscribe") == 1
	})
	time.Sleep(3 * cfg.LeaseTTL) // several renewals: nobody else starts them
	for _, m := range []string{"getHealth", "getBalance", "getSignaturesForAddress"} {
		if n := srv.Calls(m); n != 1 {
			t.Errorf("%s called %d times by three replicas, want once (one replica's worth)", m, n)
		}
	}
	// A ProgramData watch polls at start and again once subscribed (the
	// two may coalesce): one replica's worth is one or two.
	if n := srv.Calls("getAccountInfo"); n > 2 {
		t.Errorf("getAccountInfo called %d times by three replicas, want one replica's worth (at most 2)", n)
	}
	for _, m := range []string{"logsSubscribe", "accountSubscribe"} {
		if n := srv.Subscriptions(m); n != 1 {
			t.Errorf("%d %s subscriptions from three replicas, want 1", n, m)
		}
	}
	for _, w := range watchers {
		if l := leaders(rs, w); len(l) != 1 {
			t.Errorf("%s led by %v, want one replica", w, l)
		}
	}

	// The health leader stops: another takes over and probes.
	old := leaderOf(t, rs, "solana.health")
	old.stop()
	var rest []*sharingReplica
	for _, r := range rs {
		if r != old {
			rest = append(rest, r)
		}
	}
	eventually(t, "another replica probes", func() bool { return srv.Calls("getHealth") == 2 })
	if l := leaderOf(t, rest, "solana.health"); l == old {
		t.Fatal("the stopped replica still leads")
	}
	for _, w := range watchers {
		leaderOf(t, rest, w) // every watcher runs on one of the two left
	}
	if got := rec.count("solana.program.upgraded"); got != 0 {
		t.Fatalf("a takeover reported %d upgrades of an unchanged program", got)
	}
}

// TestLostLeaseStopsTheWatcher: when the health watcher's lease is
// overwritten behind its holder, the holder stops probing and another
// replica (the holder included) takes it over once the intruder's value
// goes unrenewed for a TTL.
func TestLostLeaseStopsTheWatcher(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	sb := openSharedBus(t)
	cfg := leasedConfig(srv)
	cfg.Programs, cfg.Wallets = nil, nil
	rec := newRecorder()
	rs := []*sharingReplica{startSharing(t, sb, cfg, rec, "a"), startSharing(t, sb, cfg, rec, "b")}
	first := leaderOf(t, rs, "solana.health")
	eventually(t, "one probe", func() bool { return srv.Calls("getHealth") == 1 })
	if _, err := sb.leases.Put(context.Background(), lease.Key("solana.health"), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the holder lets go", func() bool { return !first.leads("solana.health") })
	leaderOf(t, rs, "solana.health")
	eventually(t, "the new holder probes", func() bool { return srv.Calls("getHealth") == 2 })
}

// TestTakeoverContinuesAnOpenEpisode: the replica that took the health
// watcher over reports the recovery of the outage its predecessor
// reported, under the id the predecessor would have used, and no second
// outage.
func TestTakeoverContinuesAnOpenEpisode(t *testing.T) {
	srv := solanatest.NewServer()
	defer srv.Close()
	sb := openSharedBus(t)
	cfg := leasedConfig(srv)
	cfg.Programs, cfg.Wallets = nil, nil
	cfg.Health.Interval = 20 * time.Millisecond
	rec := newRecorder()
	srv.SetHealth(solanatest.HealthBehind, 187)
	rs := []*sharingReplica{startSharing(t, sb, cfg, rec, "a"), startSharing(t, sb, cfg, rec, "b")}
	first := leaderOf(t, rs, "solana.health")
	eventually(t, "the outage reported", func() bool { return rec.count("solana.rpc.unhealthy") == 1 })
	eventually(t, "the episode stored", func() bool {
		var st map[string]endpointState
		ok, err := first.w.loadState(context.Background(), healthKey, &st)
		return err == nil && ok && !st["primary"].Healthy
	})
	first.stop()
	var second *sharingReplica
	for _, r := range rs {
		if r != first {
			second = r
		}
	}
	eventually(t, "the other replica takes over", func() bool { return second.leads("solana.health") })
	time.Sleep(5 * cfg.Health.Interval) // rounds of the same outage
	srv.SetHealth(solanatest.HealthOK, 0)
	eventually(t, "the recovery reported", func() bool { return rec.count("solana.rpc.recovered") == 1 })
	evs, _ := rec.ofType("solana.rpc.unhealthy")
	if len(evs) != 1 {
		t.Fatalf("%d outage events, want the predecessor's one", len(evs))
	}
	_, sigs := rec.ofType("solana.rpc.unhealthy")
	rev, _ := rec.ofType("solana.rpc.recovered")
	want := stableID("solana.rpc.recovered", "primary", sigs[0].StartsAt.UTC().Format(time.RFC3339Nano))
	if rev[0].ID != want {
		t.Fatalf("recovered id %s, want %s (the episode the predecessor opened)", rev[0].ID, want)
	}
}

// TestFollowerReadsTheLeadersView: a replica that does not run the health
// watcher reads from the endpoint the leader's stored view ranks best, not
// from the configured primary.
func TestFollowerReadsTheLeadersView(t *testing.T) {
	primary, backup := solanatest.NewServer(), solanatest.NewServer()
	defer primary.Close()
	defer backup.Close()
	sb := openSharedBus(t)
	cfg := leasedConfig(primary)
	cfg.Programs, cfg.Wallets = nil, nil
	cfg.Health.Interval = 20 * time.Millisecond
	cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Name: "backup-1", URL: backup.URL(), Role: "backup"})
	// The leader elsewhere found the primary down.
	view := rpcview.View{UpdatedAt: time.Now().UTC(), Endpoints: []rpcview.Endpoint{
		{Name: "backup-1", Role: rpcview.RoleBackup, Healthy: true},
		{Name: "primary", Role: rpcview.RolePrimary, Healthy: false, LastError: "getHealth: node unhealthy"},
	}}
	if err := (rpcview.Store{KV: sb.views}).Put(context.Background(), view); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.leases.Create(context.Background(), lease.Key("solana.health"), []byte("leader elsewhere")); err != nil {
		t.Fatal(err)
	}
	r := startSharing(t, sb, cfg, newRecorder(), "follower")
	eventually(t, "the follower picks the backup", func() bool { return r.w.pick(false).cfg.Name == "backup-1" })
}
