package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/redact"
)

// Config says which NATS to use and how the streams are laid out.
type Config struct {
	// URL of an external NATS server or cluster ("nats://a:4222,nats://b:4222").
	// Empty runs an embedded server in the process.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file for an external server.
	CredsFile string `yaml:"creds_file"`
	// DataDir is where the embedded server keeps its JetStream file store.
	DataDir string `yaml:"data_dir"`
	// Listen, when set, makes the embedded server also accept clients on
	// this address (e.g. "127.0.0.1:4222") so `incidentbot watch` can
	// publish to it. Empty keeps it in-process only.
	Listen string `yaml:"listen"`
	// Prefix starts every subject and names the streams; default "incidentbot".
	Prefix string `yaml:"prefix"`
	// Replicas for streams and buckets on a cluster (1 for embedded).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is how long the events stream remembers message ids
	// for deduplication. Alertmanager retries within group_interval and an
	// HA pair double-sends within seconds, so the default (1h) covers both.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// EventsMaxAge bounds how long events are kept (default 7 days).
	EventsMaxAge time.Duration `yaml:"events_max_age"`
	// PublishTimeout bounds one publish when the caller's context has no
	// earlier deadline (default 5s).
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// AuditMaxAge and AuditMaxBytes bound the audit stream (defaults 365
	// days and 256 MiB); past either, the oldest records are dropped. The
	// embedded server reserves the size on its volume at start, so keep it
	// well under the volume (the chart's is 2 GiB).
	AuditMaxAge   time.Duration `yaml:"audit_max_age"`
	AuditMaxBytes int64         `yaml:"audit_max_bytes"`
	// ProbeInterval is how often the store is probed with a real write
	// (default 10s); see Probe and Watch.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// MinFreeBytes is the free space on the data directory above which
	// an embedded store that still cannot write is wedged, not full, and
	// the process exits for its supervisor to restart it (default 64 MiB).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// DefaultConfig is the embedded default.
func DefaultConfig() Config {
	return Config{
		DataDir:         "data",
		Prefix:          "incidentbot",
		Replicas:        1,
		DuplicateWindow: time.Hour,
		EventsMaxAge:    7 * 24 * time.Hour,
		PublishTimeout:  5 * time.Second,
		AuditMaxAge:     365 * 24 * time.Hour,
		AuditMaxBytes:   256 << 20,
		ProbeInterval:   10 * time.Second,
		MinFreeBytes:    64 << 20,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = d.DuplicateWindow
	}
	if c.EventsMaxAge <= 0 {
		c.EventsMaxAge = d.EventsMaxAge
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.AuditMaxAge <= 0 {
		c.AuditMaxAge = d.AuditMaxAge
	}
	if c.AuditMaxBytes <= 0 {
		c.AuditMaxBytes = d.AuditMaxBytes
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.MinFreeBytes <= 0 {
		c.MinFreeBytes = d.MinFreeBytes
	}
	return c
}

// Names of the buckets, derived from the prefix.
type names struct {
	prefix string
}

func (n names) bucket(name string) string {
	return n.prefix + "_" + name
}

// Bus is a connection to NATS JetStream with incidentbot's streams and
// buckets in place.
type Bus struct {
	cfg    Config
	names  names
	log    *slog.Logger
	srv    *server.Server // nil when external
	lock   *dirLock       // the embedded server's data directory
	stop   sync.Once      // shuts srv down once, whoever asks first
	nc     *nats.Conn
	js     jetstream.JetStream
	events jetstream.Stream
	onWait func(Wait) // see OnWait

	mu      sync.Mutex
	buckets []kvBucket // the buckets ensured with Probe set
}

// Open starts the embedded server (when no URL is configured) or connects to
// the external one, and ensures the streams the bus itself owns: events
// (and commands) from every source, and the audit trail (EventsStreamSpec,
// AuditStreamSpec). Every other stream and bucket is declared by the
// package that owns it and ensured with EnsureStream and EnsureBucket.
// It is safe to call from several replicas at once.
//
// An external NATS that is down, or a cluster still electing its leaders,
// is waited for: Open tries again with backoff until ctx ends, and says
// what it waits for in the log and to OnWait. Credentials NATS refuses and
// a stream configuration the server refuses fail at once.
func Open(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (*Bus, error) {
	cfg = cfg.withDefaults()
	if err := validToken(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("bus prefix: %w", err)
	}
	b := &Bus{cfg: cfg, names: names{cfg.Prefix}, log: log}
	for _, o := range opts {
		o(b)
	}
	nopts := []nats.Option{
		nats.Name("incidentbot"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if cfg.URL == "" {
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		srv, err := startEmbedded(cfg, log)
		if err != nil {
			lock.release()
			return nil, err
		}
		b.lock = lock
		b.srv = srv
		nopts = append(nopts, nats.InProcessServer(srv))
	} else if cfg.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(cfg.CredsFile))
	}
	var nc *nats.Conn
	err := b.retry(ctx, "NATS at "+redact.URL(cfg.URL), transientConnect, func(context.Context) error {
		var err error
		if nc, err = nats.Connect(cfg.URL, nopts...); err != nil {
			return fmt.Errorf("connect to nats: %w", redact.Error(err))
		}
		return nil
	})
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	if err := b.provision(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "incidentbot-embedded",
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
		// Room for a 1 MiB webhook body plus headers (the NATS default is 1 MB).
		MaxPayload: 8 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus listen %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("start embedded nats: not ready after 10s")
	}
	log.Info("embedded nats started", "store_dir", cfg.DataDir, "listen", cfg.Listen)
	return srv, nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, errors.New("want host:port")
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", addr[i+1:])
	}
	return addr[:i], port, nil
}

// provision ensures the streams that exist from the start, waiting for
// JetStream as long as ctx allows. Every replica may run it at start:
// EnsureStream is idempotent.
func (b *Bus) provision(ctx context.Context) error {
	ev, err := b.ensureStream(ctx, EventsStreamSpec(b.cfg))
	if err != nil {
		return err
	}
	b.events = ev
	if err := b.EnsureStream(ctx, AuditStreamSpec(b.cfg)); err != nil {
		return err
	}
	return nil
}

// KV opens a bucket its owner ensured (see EnsureBucket), by name.
func (b *Bus) KV(ctx context.Context, name string) (KV, error) {
	kv, err := b.js.KeyValue(ctx, b.names.bucket(name))
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", b.names.bucket(name), mapErr(err))
	}
	return kvBucket{kv: kv, js: b.js}, nil
}

// Ready reports whether the bus can take publishes now.
func (b *Bus) Ready(ctx context.Context) error {
	if b.nc == nil || !b.nc.IsConnected() {
		return fmt.Errorf("nats not connected: %w", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream account info: %w", mapErr(err))
	}
	return nil
}

// Drain finishes in-flight publishes and consumer work, then closes. Use it
// on SIGTERM; Close is the abrupt version.
func (b *Bus) Drain(timeout time.Duration) {
	if b.nc != nil && !b.nc.IsClosed() {
		done := make(chan struct{})
		b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := b.nc.Drain(); err == nil {
			select {
			case <-done:
			case <-time.After(timeout):
				b.log.Warn("nats drain timed out", "timeout", timeout)
			}
		}
		b.nc.Close()
	}
	b.shutdownServer()
}

// Close closes the connection and stops the embedded server, if any.
func (b *Bus) Close() {
	if b.nc != nil {
		b.nc.Close()
	}
	b.shutdownServer()
}

// shutdownServer stops the embedded server; Close and Drain may race (a
// failing Run drains while its owner closes), so it runs once and every
// caller returns only after the server is down.
func (b *Bus) shutdownServer() {
	if b.srv == nil {
		return
	}
	b.stop.Do(func() {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.lock.release()
	})
}

// mapErr turns nats connectivity failures into ErrUnavailable.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// EventsStored returns how many events the events stream holds, for
// tests, readiness detail and the CLI.
func (b *Bus) EventsStored(ctx context.Context) (uint64, error) {
	info, err := b.events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream info: %w", mapErr(err))
	}
	return info.State.Msgs, nil
}
