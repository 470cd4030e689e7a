// Package testenv starts the real parts that tests run against: a real
// Alertmanager (Debian's prometheus-alertmanager) and a PagerDuty Events
// API v2 test server speaking the documented wire format. A missing binary
// fails the test with the install hint; it never skips.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// LookBinary finds a binary among names or fails the test.
func LookBinary(t testing.TB, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("none of %v found on PATH: install the Debian package %s (apt-get install -y %s); .ci/run does", names, pkg, pkg)
	return ""
}

// Alertmanager is a running real Alertmanager.
type Alertmanager struct {
	URL string
	cmd *exec.Cmd
	log *bytes.Buffer
}

// StartAlertmanager starts Alertmanager on loopback with one webhook
// receiver pointing at webhookURL, authenticated with a bearer token, and
// short group timers so tests see notifications within seconds.
func StartAlertmanager(t testing.TB, webhookURL, bearerToken string) *Alertmanager {
	t.Helper()
	bin := LookBinary(t, "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: incidentbot
  group_by: [alertname, severity]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: incidentbot
    webhook_configs:
      - url: %q
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: %q
`, webhookURL, bearerToken)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	am := &Alertmanager{URL: "http://127.0.0.1:" + strconv.Itoa(port), log: &bytes.Buffer{}}
	am.cmd = exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	am.cmd.Stdout, am.cmd.Stderr = am.log, am.log
	if err := am.cmd.Start(); err != nil {
		t.Fatalf("start alertmanager: %v", err)
	}
	t.Cleanup(func() {
		_ = am.cmd.Process.Kill()
		_ = am.cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager log:\n%s", am.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(am.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return am
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready after 20s: %v\n%s", err, am.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Alert is an alert as posted to Alertmanager's API v2.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Post sends alerts to Alertmanager as Prometheus would.
func (am *Alertmanager) Post(ctx context.Context, alerts ...Alert) error {
	body, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, am.URL+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post alerts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post alerts: %s", resp.Status)
	}
	return nil
}

// Log returns what Alertmanager logged so far.
func (am *Alertmanager) Log() string { return am.log.String() }
