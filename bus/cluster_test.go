package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/incidentbot/incidentbot/bus"
)

// startCluster starts a 3-node JetStream cluster on loopback (every node
// with the full route list) and returns its client URLs once it has a meta
// leader.
func startCluster(t *testing.T) string {
	t.Helper()
	var routes []*url.URL
	client, route := make([]int, 3), make([]int, 3)
	for i := range 3 {
		client[i], route[i] = freePort(t), freePort(t)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(route[i])})
	}
	var nodes []*server.Server
	var urls []string
	for i := range 3 {
		s, err := server.NewServer(&server.Options{ServerName: fmt.Sprint("n", i), Host: "127.0.0.1", Port: client[i],
			Cluster: server.ClusterOpts{Name: "bus-test", Host: "127.0.0.1", Port: route[i]}, Routes: routes,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		nodes = append(nodes, s)
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(client[i]))
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, s := range nodes {
			if s.JetStreamIsLeader() {
				return strings.Join(urls, ",")
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnsureConcurrentOnCluster: replicas starting together ensure the
// same replicated streams and buckets at the same moment. Each must get
// its answer in its first attempt: with nats.go's CreateOrUpdate (update
// first) the server left all three concurrent requests unanswered in
// about one round of two, so every replica waited out the 10s attempt
// deadline per stream and bucket. The contexts here end before that
// deadline, so a request left unanswered fails the test.
func TestEnsureConcurrentOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	urls := startCluster(t)
	var buses []*bus.Bus
	for range 3 {
		cfg := bus.DefaultConfig()
		cfg.URL, cfg.Replicas, cfg.AuditMaxBytes = urls, 3, 1<<20
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		b, err := bus.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		cancel()
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(b.Close)
		buses = append(buses, b)
	}
	for round := range 6 {
		var wg sync.WaitGroup
		for i, b := range buses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Under the 10s attempt deadline: a first attempt left
				// unanswered ends the context.
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				defer cancel()
				name := fmt.Sprintf("R%d", round)
				if round%2 == 0 {
					if err := b.EnsureStream(ctx, bus.StreamSpec{Name: name, Subjects: []string{"r" + strconv.Itoa(round) + ".>"}}); err != nil {
						t.Errorf("round %d, bus %d: ensure stream: %v", round, i, err)
					}
				} else if _, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: strings.ToLower(name)}); err != nil {
					t.Errorf("round %d, bus %d: ensure bucket: %v", round, i, err)
				}
			}()
		}
		wg.Wait()
	}
	// Ensuring again, with another configuration, updates.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := buses[0].EnsureStream(ctx, bus.StreamSpec{Name: "R0", Subjects: []string{"r0.>"}, Description: "updated"}); err != nil {
		t.Fatalf("update stream: %v", err)
	}
	if _, err := buses[1].EnsureBucket(ctx, bus.BucketSpec{Name: "r1", History: 5}); err != nil {
		t.Fatalf("update bucket: %v", err)
	}
}
