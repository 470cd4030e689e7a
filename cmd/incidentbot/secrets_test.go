package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// planted is a secret put in a URL of the configuration, with every form
// in which it must never come out: raw, unescaped, re-escaped.
type planted struct {
	what  string
	forms []string
}

// sweep fails the test for every planted secret found in any output.
func sweep(t *testing.T, secrets []planted, outputs map[string]string) {
	t.Helper()
	for name, out := range outputs {
		for _, s := range secrets {
			for _, f := range s.forms {
				if i := strings.Index(out, f); i >= 0 {
					lo, hi := max(0, i-120), min(len(out), i+len(f)+60)
					t.Errorf("%s carries the %s (%q): …%s…", name, s.what, f, out[lo:hi])
				}
			}
		}
	}
}

// deadAddr is a loopback address nothing listens on: a connection to it
// is refused at once, and solana-go's error then quotes the URL.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// storeText is every file under dir, for a search of what was stored:
// JetStream's file store keeps KV values and stream messages as written.
func storeText(t *testing.T, dir string) string {
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// rpcSecrets are API keys and passwords in the RPC endpoint URLs, one per
// way a provider puts them there; solana-go quotes each URL in its errors
// in its own normalised form.
var rpcSecrets = []planted{
	{"userinfo password (percent-encoded in the config)", []string{"Pw0rd%53ecretUser1", "Pw0rdSecretUser1"}},
	{"api-key query value", []string{"QuerySecret2abc"}},
	{"path token", []string{"PathToken0123456789abcdef3"}},
	{"percent-encoded api-key", []string{"Enc%2BSecret%2F4x", "Enc+Secret/4x", "Secret%2F4x", "Secret/4x", "Enc%2BSecret"}},
}

func rpcEndpoints(dead string) string {
	return fmt.Sprintf(`
solana:
  health: {interval: 150ms, timeout: 1s, unhealthy_after: 1, healthy_after: 1}
  endpoints:
    - {name: node-userinfo, role: primary, url: "http://rpcuser:Pw0rd%%53ecretUser1@%[1]s/"}
    - {name: node-query, role: backup, url: "http://%[1]s/?api-key=QuerySecret2abc"}
    - {name: node-path, role: backup, url: "http://%[1]s/v2/PathToken0123456789abcdef3"}
    - {name: node-encoded, role: backup, url: "http://%[1]s?api-key=Enc%%2BSecret%%2F4x"}
`, dead)
}

// TestNoSecretInAnyOutput plants secrets in URLs of every kind the
// configuration holds (RPC endpoints, the NATS URL), well-formed and
// malformed, and searches every output for them: configuration errors of
// every command, serve's and watch's logs, the console, /metrics, the
// stored records (RPC view, incidents, audit, events) and replay.
func TestNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serve and watch for a few seconds")
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	outputs := map[string]string{}
	secrets := append([]planted{
		{"password of a malformed RPC URL", []string{"BadSecret6a"}},
		{"api-key of an RPC URL without a scheme", []string{"BadSecret6b"}},
		{"api-key of an RPC URL with a control character", []string{"BadSecret6c"}},
		{"NATS password of a malformed bus.url", []string{"NatsSecret5a"}},
		{"NATS password", []string{"NatsSecret5b"}},
		{"backup URL's api-key in a replayed event", []string{"ReplaySecret7x"}},
	}, rpcSecrets...)

	// Malformed URLs: every command validates the configuration and
	// refuses it; url.Parse's errors repeat the raw URL.
	bad := write("bad.yaml", `
listen: 127.0.0.1:0
bus: {url: "nats://bot:NatsSecret5a@nats:42x22"}
solana:
  endpoints:
    - {name: a, role: primary, url: "http://rpcuser:BadSecret6a@127.0.0.1:port/"}
    - {name: b, role: backup, url: "127.0.0.1:8899/?api-key=BadSecret6b"}
    - {name: c, role: backup, url: "http://127.0.0.1/?api-key=BadSecret6c\x7f", ws_url: "ws://h/?api-key=BadSecret6c\x7f"}
`)
	payload := write("event.json", `{"group_key": "solana/rpc/a", "fingerprint": "f", "status": "firing",
  "labels": {"alertname": "SolanaRPCUnhealthy", "severity": "critical", "endpoint": "a", "role": "primary"},
  "starts_at": "2025-08-13T14:03:26Z",
  "fields": {"endpoint": "a", "url": "https://rpc.example.com/", "reason": "down",
    "healthiest_backup": {"name": "b", "url": "https://b.example.com/?api-key=ReplaySecret7x"}}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"check", "--config", bad},
		{"check", "--config", bad, "--skip-secrets"},
		{"serve", "--config", bad},
		{"watch", "--config", bad},
		{"replay", "--config", bad, "--type", "solana.rpc.unhealthy", payload},
	} {
		var stdout, stderr lockedBuffer
		err := run(ctx, args, nil, &stdout, &stderr, nil)
		if err == nil {
			t.Errorf("%v: accepted malformed URLs", args)
			continue
		}
		if !strings.Contains(err.Error()+stderr.String(), "solana.endpoints[0].url") {
			t.Errorf("%v: the error does not name the bad URL's key: %v\n%s", args, err, stderr.String())
		}
		outputs[strings.Join(args[:2], " ")+" error"] = err.Error() + "\n" + stdout.String() + stderr.String()
	}

	// replay of a watcher event: the plan names the backup's URL.
	var stdout, stderr lockedBuffer
	if err := run(ctx, []string{"replay", "--type", "solana.rpc.unhealthy", payload}, nil, &stdout, &stderr, nil); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "b.example.com") {
		t.Errorf("replay does not show the backup's host:\n%s", stdout.String())
	}
	outputs["replay"] = stdout.String() + stderr.String()

	// serve with the endpoints down: their errors reach the log, the RPC
	// view's last_error, the events and the incidents.
	dead := deadAddr(t)
	data := filepath.Join(dir, "serve-data")
	good := write("serve.yaml", "listen: 127.0.0.1:0\nlog_level: debug\nbus: {data_dir: "+data+"}\n"+rpcEndpoints(dead))
	s, err := startServe(t, []string{"--config", good}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(s.stderr.String())
	if addr == nil {
		t.Fatalf("no addr in log:\n%s", s.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.stdout.String(), "PAGE TRIGGER") < 1 || strings.Count(s.stdout.String(), "card #") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no incidents for the endpoints that are down:\n%s\n%s", s.stdout, s.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `solana_rpc_up{endpoint="node-path"} 0`) {
		t.Errorf("metrics do not show node-path down:\n%s", metrics)
	}
	s.stop(t)
	stored := storeText(t, data)
	if !strings.Contains(stored, "node-encoded") || !strings.Contains(stored, "last_error") {
		t.Fatal("the store search finds nothing: is the store still readable as written?")
	}
	if !strings.Contains(s.stderr.String(), "connection refused") {
		t.Errorf("serve's log does not show the endpoints' errors:\n%s", s.stderr)
	}
	outputs["serve log"] = s.stderr.String()
	outputs["serve console"] = s.stdout.String()
	outputs["serve /metrics"] = string(metrics)
	outputs["serve store (rpc view, incidents, events, audit)"] = stored

	// watch against an external NATS with a password.
	natsDir := t.TempDir()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: natsDir,
		Username: "bot", Password: "NatsSecret5b", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	watchCfg := write("watch.yaml", "listen: 127.0.0.1:0\nlog_level: debug\nbus: {url: \"nats://bot:NatsSecret5b@"+
		strings.TrimPrefix(ns.ClientURL(), "nats://")+"\"}\n"+rpcEndpoints(dead))
	wctx, wcancel := context.WithCancel(context.Background())
	var wout, werr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(wctx, []string{"watch", "--config", watchCfg}, nil, &wout, &werr, nil) }()
	deadline = time.Now().Add(30 * time.Second)
	for strings.Count(werr.String(), "connection refused") < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	wcancel()
	if err := <-done; err != nil {
		t.Errorf("watch: %v\n%s", err, werr.String())
	}
	if !strings.Contains(werr.String(), "connection refused") {
		t.Errorf("watch's log does not show the endpoints' errors:\n%s", werr.String())
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	outputs["watch log"] = werr.String() + wout.String()
	outputs["watch store"] = storeText(t, natsDir)

	sweep(t, secrets, outputs)
}
