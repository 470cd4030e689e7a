// Package solana holds incidentbot's Solana on-chain watchers, a source in
// the pipeline (watchers → bus → rules/runbooks → actions): they probe the
// team's RPC endpoints, follow program transactions, ProgramData accounts
// and wallet balances, publish signal-carrying events on the bus, keep the
// ranked RPC view (rpcview) up to date and export the metrics the course's
// PrometheusRule queries.
package solana

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	solanago "github.com/gagliardetto/solana-go"

	"github.com/incidentbot/incidentbot/internal/lease"
	"github.com/incidentbot/incidentbot/redact"
)

// Config is the `solana:` section of the bot configuration.
type Config struct {
	// Endpoints are the RPC endpoints to probe, primary and backups.
	Endpoints []EndpointConfig `yaml:"endpoints"`
	// Programs are the on-chain programs to watch.
	Programs []ProgramConfig `yaml:"programs"`
	// Wallets are the accounts whose balance must stay above a minimum.
	Wallets []WalletConfig `yaml:"wallets"`
	// Health tunes the RPC health probes.
	Health HealthConfig `yaml:"health"`
	// Tx tunes the transaction failure-rate alert.
	Tx TxConfig `yaml:"tx"`
	// ProgramPollInterval is how often ProgramData is polled as a safety
	// net next to the account subscription.
	ProgramPollInterval time.Duration `yaml:"program_poll_interval"`
	// BalanceInterval is how often wallet balances are read.
	BalanceInterval time.Duration `yaml:"balance_interval"`
	// BalanceHysteresis is the fraction above min_lamports a low balance
	// must reach before it counts as recovered (0.1 = 10 % above).
	BalanceHysteresis float64 `yaml:"balance_hysteresis"`
	// Reconnect bounds the back-off between WebSocket reconnects.
	Reconnect BackoffConfig `yaml:"reconnect"`
	// PublishRetry bounds the back-off between retries of a failed publish.
	PublishRetry BackoffConfig `yaml:"publish_retry"`
	// LeaseTTL is how long a replica holds a watcher's lease without
	// renewing it (renewed every third of it). Replicas sharing a bus run
	// each watcher (RPC health, balances, each program's ProgramData and
	// transactions) on one of them at a time; when its replica dies, a
	// peer takes it over after about LeaseTTL (at once on a clean
	// shutdown).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// UpgradeSignerKeypairFile is a keypair file holding the programs'
	// upgrade authority (a JSON array of 64 bytes, as solana-keygen
	// writes), readable by its owner only. For devnet and staging: with
	// it, solana.program_rollback signs and sends the upgrade itself
	// (never on mainnet-beta). Without it, the default and the rule for
	// mainnet, where the authority is a multisig, the action builds the
	// unsigned transaction for the signers and the bot holds no key.
	UpgradeSignerKeypairFile string `yaml:"upgrade_signer_keypair_file"`
	// UpgradeNonceAccount is a durable nonce account (base58) whose nonce
	// authority is the programs' upgrade authority. Optional: with it,
	// the unsigned upgrade transaction solana.program_rollback posts uses
	// the account's nonce instead of a recent blockhash (which expires
	// after about 150 blocks), so it stays valid until the nonce is
	// advanced and the signers can take their time. Create it with
	// `solana create-nonce-account <keypair> <SOL> --nonce-authority
	// <upgrade authority>`.
	UpgradeNonceAccount string `yaml:"upgrade_nonce_account"`
}

// EndpointConfig is one RPC endpoint.
type EndpointConfig struct {
	// Name identifies the endpoint in events, metrics and the RPC view.
	Name string `yaml:"name"`
	// URL is the HTTP JSON-RPC URL. It may carry an API key: it is
	// redacted (userinfo, query values and token-like path segments
	// dropped, see package redact) wherever it is shown.
	URL string `yaml:"url"`
	// WSURL is the PubSub WebSocket URL; needed on at least one endpoint
	// when programs are watched.
	WSURL string `yaml:"ws_url"`
	// Role is "primary" or "backup".
	Role string `yaml:"role"`
}

// ProgramConfig is one program to watch.
type ProgramConfig struct {
	// Name identifies the program in events and metrics.
	Name string `yaml:"name"`
	// ID is the program id (base58).
	ID string `yaml:"id"`
	// ExpectedAuthority is the expected upgrade authority (base58,
	// typically a multisig) or "immutable".
	ExpectedAuthority string `yaml:"expected_authority"`
	// RollbackBuffer is the buffer account (base58) the release pipeline
	// stages with the previous binary, e.g. with `solana program
	// write-buffer --buffer <keypair>` at each release. Optional: when set,
	// the program's events carry it as annotation rollback_buffer, which
	// the shipped runbooks' rollback step reads.
	RollbackBuffer string `yaml:"rollback_buffer"`
}

// WalletConfig is one wallet whose balance is watched.
type WalletConfig struct {
	// Name identifies the wallet in events and metrics.
	Name string `yaml:"name"`
	// Address is the wallet's public key (base58).
	Address string `yaml:"address"`
	// MinLamports is the balance below which the wallet is low.
	MinLamports uint64 `yaml:"min_lamports"`
}

// HealthConfig tunes the RPC health probes.
type HealthConfig struct {
	// Interval between probe rounds.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one probe (getHealth + getSlot) of one endpoint.
	Timeout time.Duration `yaml:"timeout"`
	// UnhealthyAfter consecutive failed probes mark an endpoint unhealthy.
	UnhealthyAfter int `yaml:"unhealthy_after"`
	// HealthyAfter consecutive good probes mark it healthy again.
	HealthyAfter int `yaml:"healthy_after"`
	// MaxSlotLag is the largest lag behind the best slot seen across
	// endpoints that still counts as healthy.
	MaxSlotLag uint64 `yaml:"max_slot_lag"`
}

// TxConfig tunes the transaction failure-rate alert.
type TxConfig struct {
	// Window over which the failure rate is computed.
	Window time.Duration `yaml:"window"`
	// Threshold is the failure rate (0..1) above which the alert fires.
	Threshold float64 `yaml:"threshold"`
	// MinSamples is the least number of transactions in the window for
	// the rate to be judged at all.
	MinSamples int `yaml:"min_samples"`
	// PollInterval is how often getSignaturesForAddress is polled as a
	// safety net next to logsSubscribe, so that a subscription the node
	// rejected or a stream that stalled does not silently stop the counts.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// BackoffConfig is an exponential back-off between Min and Max.
type BackoffConfig struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// Immutable is the expected_authority value of a program that must have
// no upgrade authority.
const Immutable = "immutable"

// DefaultConfig returns the defaults every field falls back to. The slot
// lag default (50) is the common router threshold; nodes themselves call
// themselves behind at 128.
func DefaultConfig() Config {
	return Config{
		Health: HealthConfig{
			Interval:       15 * time.Second,
			Timeout:        5 * time.Second,
			UnhealthyAfter: 3,
			HealthyAfter:   2,
			MaxSlotLag:     50,
		},
		Tx: TxConfig{
			Window:       5 * time.Minute,
			Threshold:    0.2,
			MinSamples:   20,
			PollInterval: 30 * time.Second,
		},
		ProgramPollInterval: time.Minute,
		BalanceInterval:     time.Minute,
		BalanceHysteresis:   0.1,
		LeaseTTL:            15 * time.Second,
		Reconnect:           BackoffConfig{Min: 500 * time.Millisecond, Max: 30 * time.Second},
		PublishRetry:        BackoffConfig{Min: 200 * time.Millisecond, Max: 30 * time.Second},
	}
}

// Enabled reports whether anything is configured to watch.
func (c Config) Enabled() bool { return len(c.Endpoints) > 0 }

// Validate reports every problem at once, naming YAML keys.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if len(c.Endpoints) == 0 {
		add("solana.endpoints: at least one endpoint is required")
	}
	names := map[string]bool{}
	hasWS := false
	for i, e := range c.Endpoints {
		p := fmt.Sprintf("solana.endpoints[%d]", i)
		if e.Name == "" {
			add("%s.name: empty", p)
		} else if names[e.Name] {
			add("%s.name: duplicate %q", p, e.Name)
		}
		names[e.Name] = true
		if err := checkURL(e.URL, "http", "https"); err != nil {
			add("%s.url: %w", p, err)
		}
		if e.WSURL != "" {
			hasWS = true
			if err := checkURL(e.WSURL, "ws", "wss"); err != nil {
				add("%s.ws_url: %w", p, err)
			}
		}
		if e.Role != "primary" && e.Role != "backup" {
			add("%s.role: %q, want primary or backup", p, e.Role)
		}
	}
	if len(c.Programs) > 0 && !hasWS {
		add("solana.endpoints: programs are watched but no endpoint has a ws_url")
	}
	names = map[string]bool{}
	for i, p := range c.Programs {
		k := fmt.Sprintf("solana.programs[%d]", i)
		if p.Name == "" {
			add("%s.name: empty", k)
		} else if names[p.Name] {
			add("%s.name: duplicate %q", k, p.Name)
		}
		names[p.Name] = true
		if _, err := solanago.PublicKeyFromBase58(p.ID); err != nil {
			add("%s.id: %q is not a base58 public key: %w", k, p.ID, err)
		}
		if p.ExpectedAuthority == "" {
			add("%s.expected_authority: empty, want a base58 key or %q", k, Immutable)
		} else if p.ExpectedAuthority != Immutable {
			if _, err := solanago.PublicKeyFromBase58(p.ExpectedAuthority); err != nil {
				add("%s.expected_authority: %q is neither %q nor a base58 public key: %w", k, p.ExpectedAuthority, Immutable, err)
			}
		}
		if p.RollbackBuffer != "" {
			if _, err := solanago.PublicKeyFromBase58(p.RollbackBuffer); err != nil {
				add("%s.rollback_buffer: %q is not a base58 public key: %w", k, p.RollbackBuffer, err)
			} else if p.RollbackBuffer == p.ID {
				add("%s.rollback_buffer: is the program id itself; want the buffer holding the previous binary", k)
			}
		}
	}
	names = map[string]bool{}
	for i, w := range c.Wallets {
		k := fmt.Sprintf("solana.wallets[%d]", i)
		if w.Name == "" {
			add("%s.name: empty", k)
		} else if names[w.Name] {
			add("%s.name: duplicate %q", k, w.Name)
		}
		names[w.Name] = true
		if _, err := solanago.PublicKeyFromBase58(w.Address); err != nil {
			add("%s.address: %q is not a base58 public key: %w", k, w.Address, err)
		}
		if w.MinLamports == 0 {
			add("%s.min_lamports: must be greater than 0", k)
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add("%s: must be a positive duration, got %s", key, d)
		}
	}
	positive("solana.health.interval", c.Health.Interval)
	positive("solana.health.timeout", c.Health.Timeout)
	positive("solana.tx.window", c.Tx.Window)
	positive("solana.tx.poll_interval", c.Tx.PollInterval)
	positive("solana.program_poll_interval", c.ProgramPollInterval)
	positive("solana.balance_interval", c.BalanceInterval)
	positive("solana.reconnect.min", c.Reconnect.Min)
	positive("solana.publish_retry.min", c.PublishRetry.Min)
	if c.LeaseTTL < time.Second || c.LeaseTTL > lease.MaxTTL {
		add("solana.lease_ttl: %s, want between 1s and %s", c.LeaseTTL, lease.MaxTTL)
	}
	if c.Reconnect.Max < c.Reconnect.Min {
		add("solana.reconnect.max: %s is below min %s", c.Reconnect.Max, c.Reconnect.Min)
	}
	if c.PublishRetry.Max < c.PublishRetry.Min {
		add("solana.publish_retry.max: %s is below min %s", c.PublishRetry.Max, c.PublishRetry.Min)
	}
	if c.Health.UnhealthyAfter < 1 {
		add("solana.health.unhealthy_after: must be at least 1")
	}
	if c.Health.HealthyAfter < 1 {
		add("solana.health.healthy_after: must be at least 1")
	}
	if c.Tx.Threshold <= 0 || c.Tx.Threshold > 1 {
		add("solana.tx.threshold: %v, want a rate in (0, 1]", c.Tx.Threshold)
	}
	if c.Tx.MinSamples < 1 {
		add("solana.tx.min_samples: must be at least 1")
	}
	if c.BalanceHysteresis < 0 {
		add("solana.balance_hysteresis: must not be negative")
	}
	if n := c.UpgradeNonceAccount; n != "" {
		if _, err := solanago.PublicKeyFromBase58(n); err != nil {
			add("solana.upgrade_nonce_account: %q is not a base58 public key: %w", n, err)
		}
		for i, p := range c.Programs {
			if n == p.ID || n == p.RollbackBuffer {
				add("solana.upgrade_nonce_account: is solana.programs[%d]'s program or buffer; want a nonce account of the system program", i)
			}
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string, schemes ...string) error {
	if raw == "" {
		return errors.New("empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// A *url.Error repeats the raw URL, API key and all: keep only
		// what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("parse %q: %w", redact.URL(raw), redact.Error(err))
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%q: want a %v URL with a host", redact.URL(raw), schemes)
}
