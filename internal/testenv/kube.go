package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// KubeVersion is the k8s.io/kubernetes version tools/kube builds
// kube-apiserver from; the Makefile and .ci/run name the same.
const KubeVersion = "v1.37.2"

// KubeAPIServerEnv names the variable holding the kube-apiserver binary's
// path; unset, it is KubeAPIServerDefault.
const KubeAPIServerEnv = "KUBE_APISERVER_BIN"

// KubeAPIServerDefault is where `make kube-apiserver` puts the binary:
// <user cache dir>/incidentbot-tools/kube-apiserver-<version>/kube-apiserver.
func KubeAPIServerDefault() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "incidentbot-tools", "kube-apiserver-"+KubeVersion, "kube-apiserver")
}

// The users of the token auth file. The bot's user is what a pod of the
// chart's ServiceAccount incidentbot in namespace incidentbot
// authenticates as; RBAC matches a ServiceAccount subject by this name.
const (
	KubeAdminUser   = "admin"
	KubeBotUser     = "system:serviceaccount:incidentbot:incidentbot"
	KubeBotSANS     = "incidentbot"
	KubeBotSAName   = "incidentbot"
	kubeReadyWithin = 90 * time.Second
)

// Kube is a running kube-apiserver, with RBAC on, over its own etcd.
type Kube struct {
	// Admin is in system:masters; Bot is the bot's ServiceAccount user,
	// with no permission until a test binds a Role to it.
	Admin, Bot *rest.Config
}

// kubeBinaries finds etcd and kube-apiserver. Outside CI a missing one
// skips the test, saying how to get it; in CI (CI=true) it fails.
func kubeBinaries(t testing.TB) (etcd, apiserver string) {
	t.Helper()
	missing := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (skipped outside CI; CI=true fails instead)")
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		missing("etcd not found on PATH: install the Debian package etcd-server (apt-get install -y etcd-server); .ci/run does")
	}
	apiserver = os.Getenv(KubeAPIServerEnv)
	if apiserver == "" {
		apiserver = KubeAPIServerDefault()
	}
	if _, err := os.Stat(apiserver); err != nil {
		missing("kube-apiserver not found at %s: build it with `make kube-apiserver` (or set %s); .ci/run does", apiserver, KubeAPIServerEnv)
	}
	return etcd, apiserver
}

// StartKube starts etcd and kube-apiserver on free loopback ports in a
// temporary directory; both stop when the test ends. Ready takes about
// 15 s on two cores.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin, apiBin := kubeBinaries(t)
	dir := t.TempDir()

	clientPort, peerPort := FreePort(t), FreePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	startProc(t, "etcd", etcdBin,
		"--name=testenv",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=testenv="+peerURL,
		"--log-level=warn",
	)

	adminToken, botToken := randomToken(t), randomToken(t)
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s,\"system:serviceaccounts,system:serviceaccounts:%s\"\n",
		adminToken, KubeAdminUser, KubeAdminUser, botToken, KubeBotUser, KubeBotUser, KubeBotSANS)
	tokenFile := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokenFile, []byte(tokens))
	// kube-apiserver insists on a service account signing key even when no
	// service account token is ever issued.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))

	port := FreePort(t)
	startProc(t, "kube-apiserver", apiBin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokenFile,
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+keyFile,
		"--service-account-signing-key-file="+keyFile,
	)

	host := "https://127.0.0.1:" + strconv.Itoa(port)
	cfg := func(token string) *rest.Config {
		return &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	}
	k := &Kube{Admin: cfg(adminToken), Bot: cfg(botToken)}
	k.waitReady(t)
	return k
}

func (k *Kube) waitReady(t testing.TB) {
	t.Helper()
	tr, err := rest.TransportFor(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(kubeReadyWithin)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(k.Admin.Host + "/readyz")
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b.String())
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready after %s: %s", kubeReadyWithin, last)
}

// startProc starts a process, its output kept and shown if the test fails;
// it is stopped (SIGTERM, then SIGKILL after 10 s) when the test ends.
func startProc(t testing.TB, name, bin string, args ...string) {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log (last 8 KiB):\n%s", name, log.tail(8<<10))
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
