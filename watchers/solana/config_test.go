package solana

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Endpoints = []EndpointConfig{
		{Name: "primary", URL: "https://rpc.example.com/?api-key=k", WSURL: "wss://rpc.example.com/?api-key=k", Role: "primary"},
		{Name: "backup", URL: "https://backup.example.com", Role: "backup"},
	}
	c.Programs = []ProgramConfig{{Name: "payments", ID: programID, ExpectedAuthority: multisig}}
	c.Wallets = []WalletConfig{{Name: "hot", Address: hotWallet, MinLamports: 1}}
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"immutable program", func(c *Config) { c.Programs[0].ExpectedAuthority = Immutable }, nil},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, []string{"solana.endpoints: at least one"}},
		{"bad endpoint", func(c *Config) {
			c.Endpoints[1] = EndpointConfig{Name: "primary", URL: "ftp://x", WSURL: "http://x", Role: "spare"}
		}, []string{"endpoints[1].name: duplicate", "endpoints[1].url", "endpoints[1].ws_url", "endpoints[1].role"}},
		{"programs without ws", func(c *Config) { c.Endpoints[0].WSURL = "" }, []string{"no endpoint has a ws_url"}},
		{"bad program", func(c *Config) { c.Programs[0].ID = "not-base58!"; c.Programs[0].ExpectedAuthority = "multisig" },
			[]string{"programs[0].id", "programs[0].expected_authority"}},
		{"missing authority", func(c *Config) { c.Programs[0].ExpectedAuthority = "" }, []string{"programs[0].expected_authority: empty"}},
		{"rollback buffer", func(c *Config) { c.Programs[0].RollbackBuffer = rogue }, nil},
		{"bad rollback buffer", func(c *Config) { c.Programs[0].RollbackBuffer = "buffer-1" }, []string{"programs[0].rollback_buffer: \"buffer-1\" is not a base58 public key"}},
		{"rollback buffer is the program", func(c *Config) { c.Programs[0].RollbackBuffer = programID }, []string{"programs[0].rollback_buffer: is the program id itself"}},
		{"bad wallet", func(c *Config) { c.Wallets[0] = WalletConfig{Name: "hot", Address: "x", MinLamports: 0} },
			[]string{"wallets[0].address", "wallets[0].min_lamports"}},
		{"bad numbers", func(c *Config) {
			c.Health.Interval = 0
			c.Health.UnhealthyAfter = 0
			c.Tx.Threshold = 1.5
			c.Tx.MinSamples = 0
			c.Reconnect.Max = time.Millisecond
		}, []string{"health.interval", "unhealthy_after", "tx.threshold", "tx.min_samples", "reconnect.max"}},
		{"lease ttl too short", func(c *Config) { c.LeaseTTL = 500 * time.Millisecond }, []string{"solana.lease_ttl: 500ms, want between 1s and 10m0s"}},
		{"lease ttl too long", func(c *Config) { c.LeaseTTL = time.Hour }, []string{"solana.lease_ttl: 1h0m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "api-key=k") {
				t.Errorf("error leaks a URL secret: %v", err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	doc := `
endpoints:
  - {name: primary, url: "https://rpc.example.com", ws_url: "wss://rpc.example.com", role: primary}
programs:
  - {name: payments, id: ` + programID + `, expected_authority: immutable}
wallets:
  - {name: hot, address: ` + hotWallet + `, min_lamports: 500000000}
health: {interval: 5s, unhealthy_after: 4}
tx: {window: 2m, threshold: 0.1, min_samples: 10}
program_poll_interval: 30s
balance_interval: 1m
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewBufferString(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Health.Interval != 5*time.Second || c.Health.UnhealthyAfter != 4 || c.Health.Timeout != DefaultConfig().Health.Timeout ||
		c.Tx.Window != 2*time.Minute || c.Wallets[0].MinLamports != 500000000 || c.Programs[0].ExpectedAuthority != Immutable {
		t.Errorf("decoded %+v", c)
	}
}

func TestValidateNeverPrintsAnAPIKey(t *testing.T) {
	// url.Parse's error repeats the raw URL; the configured key must not
	// reach the error by that road or any other.
	for _, raw := range []string{
		"https://rpc.example.com/?api-key=SECRETKEY\x7f",
		"rpc.example.com:8899/?api-key=SECRETKEY",
		"https://user:SECRETKEY@rpc.example.com:port/",
		"ftp://rpc.example.com/v2/SECRETKEY0123456789abcdef",
	} {
		c := validConfig()
		c.Endpoints[0].URL, c.Endpoints[0].WSURL = raw, raw
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "endpoints[0].url") {
			t.Fatalf("Validate(%q) = %v, want a problem with endpoints[0].url", raw, err)
		}
		if strings.Contains(err.Error(), "SECRETKEY") {
			t.Errorf("Validate(%q) prints the key: %v", raw, err)
		}
	}
}
