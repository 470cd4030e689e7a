package redact_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/redact"
)

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://api.mainnet-beta.solana.com", "https://api.mainnet-beta.solana.com"},
		{"https://api.mainnet-beta.solana.com/", "https://api.mainnet-beta.solana.com/"},
		{"wss://rpc.example.com:8900/", "wss://rpc.example.com:8900/"},
		{"https://mainnet.helius-rpc.com/?api-key=3f2b6c1e-9d4a-4b8e-a1f0-123456789abc", "https://mainnet.helius-rpc.com/?api-key=<redacted>"},
		{"https://mainnet.helius-rpc.com?api-key=k&commitment=confirmed", "https://mainnet.helius-rpc.com?api-key=<redacted>&commitment=<redacted>"},
		{"https://solana-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUvWxYz012345", "https://solana-mainnet.g.alchemy.com/v2/<redacted>"},
		{"https://x.solana-mainnet.quiknode.pro/0123456789abcdef0123456789abcdef01234567/", "https://x.solana-mainnet.quiknode.pro/<redacted>/"},
		{"https://dapps.rpcpool.com/3f2b6c1e-9d4a-4b8e-a1f0-123456789abc", "https://dapps.rpcpool.com/<redacted>"},
		{"https://go.getblock.io/token/short", "https://go.getblock.io/token/<redacted>"},
		{"https://user:hunter2@rpc.example.com/path", "https://<redacted>@rpc.example.com/path"},
		{"nats://incidentbot:s3cr%40t@nats-0.nats:4222", "nats://<redacted>@nats-0.nats:4222"},
		{"https://rpc.example.com/%41bCdEfGhIjKlMnOpQrStUvWxYz012345", "https://rpc.example.com/<redacted>"},
		{"https://rpc.example.com/x#frag", "https://rpc.example.com/x#<redacted>"},
		{"https://rpc.example.com/%zz?api-key=SECRET\x7f", "https://rpc.example.com/%zz?api-key=<redacted>"},
		{"rpc.example.com:8899/?api-key=SECRET", "rpc.example.com:8899/?api-key=<redacted>"},
		{"https://rpc.example.com/?0123456789abcdef0123456789", "https://rpc.example.com/?<redacted>"},
	}
	for _, tt := range tests {
		if got := redact.URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestText(t *testing.T) {
	in := `rpc call getHealth() on https://u:PASSWORD1@rpc.example.com/v2/KEY0123456789abc?api-key=SECRETQ: Post "https://u:***@rpc.example.com/v2/KEY0123456789abc?api-key=SECRETQ": dial tcp 127.0.0.1:1: connection refused.`
	got := redact.Text(in)
	for _, s := range []string{"PASSWORD1", "KEY0123456789abc", "SECRETQ"} {
		if strings.Contains(got, s) {
			t.Errorf("Text left %s in %s", s, got)
		}
	}
	if !strings.Contains(got, "rpc.example.com") || !strings.HasSuffix(got, "connection refused.") || !strings.Contains(got, `Post "https://`) {
		t.Errorf("Text lost what is not secret: %s", got)
	}
	if s := "no url here: a: b"; redact.Text(s) != s {
		t.Errorf("Text changed %q", s)
	}
}

func TestErrorRebuildsURLErrors(t *testing.T) {
	// url.Parse repeats the raw URL, which may have no scheme to find it by.
	_, perr := url.Parse("rpc.example.com:8899/?api-key=SECRET1")
	_, cerr := url.Parse("https://rpc.example.com/?api-key=SECRET2\x7f")
	base := errors.New("base")
	err := fmt.Errorf("solana.endpoints[0].url: %w", errors.Join(perr, cerr, base))
	got := redact.Error(err)
	for _, s := range []string{"SECRET1", "SECRET2"} {
		if strings.Contains(got.Error(), s) {
			t.Errorf("Error left %s in %s", s, got)
		}
	}
	if !errors.Is(got, base) {
		t.Error("Error lost the chain for errors.Is")
	}
	var ue *url.Error
	if !errors.As(got, &ue) {
		t.Error("Error lost the chain for errors.As")
	}
	plain := errors.New("nothing to hide")
	if redact.Error(plain) != plain || redact.Error(nil) != nil {
		t.Error("Error changed an error with nothing to redact")
	}
}

func TestReplaceAttr(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: redact.ReplaceAttr}))
	u, _ := url.Parse("https://user:PASSWORD2@rpc.example.com/?api-key=SECRET3")
	req, _ := http.NewRequest("POST", "https://rpc.example.com/v2/KEY0123456789abcdefgh", nil)
	_, err := http.DefaultClient.Do(&http.Request{Method: "GET", URL: &url.URL{Scheme: "nope", Host: "x", RawQuery: "token=SECRET4"}})
	log.Info("call https://rpc.example.com/?api-key=SECRET5 failed", "url", u, "req", req.URL.String(), "err", err,
		slog.Group("g", "inner", "wss://h/?api-key=SECRET6"))
	for _, s := range []string{"PASSWORD2", "SECRET3", "KEY0123456789abcdefgh", "SECRET4", "SECRET5", "SECRET6"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("log line carries %s: %s", s, buf.String())
		}
	}
}

func TestScrubber(t *testing.T) {
	raw := "https://us%65r:p%61ssWORD9@rpc.example.com/v2/T%4fKEN0123456789abcdef?api-key=S3CR%2BETVALUE&commitment=confirmed"
	s := redact.NewScrubber(raw, "")
	// Pieces a library may quote outside a URL, in its own escaping.
	in := "user:passWORD9 failed; token TOKEN0123456789abcdef; key S3CR+ETVALUE or S3CR%2BETVALUE; commitment confirmed"
	got := s.String(in)
	for _, leak := range []string{"passWORD9", "TOKEN0123456789abcdef", "S3CR+ETVALUE", "S3CR%2BETVALUE"} {
		if strings.Contains(got, leak) {
			t.Errorf("Scrubber left %s in %s", leak, got)
		}
	}
	if !strings.Contains(got, "confirmed") {
		t.Errorf("Scrubber masked an ordinary query value: %s", got)
	}
}
