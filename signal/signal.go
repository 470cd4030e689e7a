// Package signal defines the one shape the engine reasons about: a Signal
// is a single alert-like observation, firing or resolved. An Alertmanager
// notification carries several (one per alert); a Solana watcher event
// carries exactly one, as the event's JSON data. Runbooks match signals and
// incidents group them.
package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Status of a signal.
type Status string

// Statuses.
const (
	Firing   Status = "firing"
	Resolved Status = "resolved"
)

// Signal is one alert-like observation.
type Signal struct {
	// Source and Type come from the event envelope: "alertmanager" /
	// "alertmanager.alert", "solana" / "solana.rpc.unhealthy".
	Source string `json:"-"`
	Type   string `json:"-"`
	// GroupKey groups signals into one incident (with the runbook): the
	// Alertmanager groupKey, or e.g. "solana/rpc/<endpoint>" for a watcher.
	GroupKey string `json:"group_key"`
	// Fingerprint identifies the alert across firing and resolved: the
	// Alertmanager fingerprint, or a stable hash the watcher derives from
	// what it watches and the condition (endpoint + "unhealthy").
	Fingerprint string `json:"fingerprint"`
	Status      Status `json:"status"`
	// Labels identify and route the signal; "alertname" and "severity"
	// are used as in Prometheus. Watchers set alertname too
	// (e.g. "SolanaRPCUnhealthy"), so a runbook can match either way.
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      time.Time         `json:"ends_at,omitzero"`
	// GeneratorURL links to what produced the signal (Prometheus graph,
	// explorer link).
	GeneratorURL string `json:"generator_url,omitempty"`
	// Fields carries kind-specific facts for runbook templates, e.g.
	// {"endpoint": "primary", "slot_lag": 187, "healthiest_backup": {...}}.
	Fields map[string]any `json:"fields,omitempty"`
}

// Validate reports what a signal is missing.
func (s Signal) Validate() error {
	var errs []error
	if s.GroupKey == "" {
		errs = append(errs, errors.New("group_key is empty"))
	}
	if s.Fingerprint == "" {
		errs = append(errs, errors.New("fingerprint is empty"))
	}
	if s.Status != Firing && s.Status != Resolved {
		errs = append(errs, fmt.Errorf("status %q: want firing or resolved", s.Status))
	}
	if s.StartsAt.IsZero() {
		errs = append(errs, errors.New("starts_at is zero"))
	}
	return errors.Join(errs...)
}

// Name is the signal's alertname label.
func (s Signal) Name() string { return s.Labels["alertname"] }

// Decode reads a watcher event's data as a Signal and validates it.
func Decode(data []byte) (Signal, error) {
	var s Signal
	if err := json.Unmarshal(data, &s); err != nil {
		return Signal{}, fmt.Errorf("decode signal: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Signal{}, fmt.Errorf("invalid signal: %w", err)
	}
	return s, nil
}
