// Package alertmanager receives Alertmanager webhook notifications
// (payload version 4), authenticates and validates them, and publishes
// each notification onto the bus. It answers 2xx only after the bus
// acknowledged the publish, and 503 when it could not, so that
// Alertmanager retries (it retries 5xx and network errors, never 4xx).
package alertmanager

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/incidentbot/incidentbot/signal"
)

// Message is an Alertmanager webhook notification. It mirrors
// notify/webhook.Message without importing that package (it drags Kafka
// and OpenTelemetry into the binary). Unknown fields are ignored: new
// Alertmanager versions add some (notification_reason, routeLabels).
type Message struct {
	template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// SupportedVersion is the webhook payload version this receiver reads.
const SupportedVersion = "4"

// maxAlerts bounds the alerts in one notification, whatever its byte size.
const maxAlerts = 10000

// Decode parses and validates a webhook body. Every problem is reported at
// once; the error text is safe to return to the sender.
func Decode(body []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decode alertmanager payload: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid alertmanager payload: %w", err)
	}
	return &m, nil
}

// Validate checks what the engine relies on. A missing fingerprint is
// computed from the labels the way Alertmanager does.
func (m *Message) Validate() error {
	var errs []error
	if m.Version != SupportedVersion {
		errs = append(errs, fmt.Errorf("version %q: want %q", m.Version, SupportedVersion))
	}
	if m.GroupKey == "" {
		errs = append(errs, errors.New("groupKey is empty"))
	}
	if len(m.Alerts) == 0 {
		errs = append(errs, errors.New("alerts is empty"))
	}
	if len(m.Alerts) > maxAlerts {
		errs = append(errs, fmt.Errorf("%d alerts: at most %d", len(m.Alerts), maxAlerts))
	}
	for i := range m.Alerts {
		a := &m.Alerts[i]
		if a.Status != string(signal.Firing) && a.Status != string(signal.Resolved) {
			errs = append(errs, fmt.Errorf("alerts[%d].status %q: want firing or resolved", i, a.Status))
		}
		if len(a.Labels) == 0 {
			errs = append(errs, fmt.Errorf("alerts[%d].labels is empty", i))
		}
		if a.StartsAt.IsZero() {
			errs = append(errs, fmt.Errorf("alerts[%d].startsAt is missing", i))
		}
		if a.Fingerprint == "" && len(a.Labels) > 0 {
			a.Fingerprint = fingerprint(a.Labels)
		}
		if len(errs) > 20 {
			errs = append(errs, errors.New("too many errors"))
			break
		}
	}
	return errors.Join(errs...)
}

func fingerprint(kv template.KV) string {
	ls := make(model.LabelSet, len(kv))
	for k, v := range kv {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

// EventID derives the bus message id from the notification's identity and
// state: its group key and, for every alert, fingerprint, status and times.
// Alertmanager's retries and an HA pair's duplicate sends carry the same
// alerts in the same states, so they map to the same id and the bus stores
// the notification once; any change of state makes a new id.
func (m *Message) EventID() string {
	keys := make([]string, len(m.Alerts))
	for i, a := range m.Alerts {
		keys[i] = a.Fingerprint + "|" + a.Status + "|" + a.StartsAt.UTC().Format(time.RFC3339Nano) + "|" + endsAt(a)
	}
	slices.Sort(keys)
	h := sha256.New()
	h.Write([]byte(m.GroupKey))
	h.Write([]byte{0})
	h.Write([]byte(strings.Join(keys, "\n")))
	return "am-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// endsAt is the end time that identifies a state: resolved alerts carry
// their real end; a firing alert's endsAt moves with every re-evaluation,
// so it is left out.
func endsAt(a template.Alert) string {
	if a.Status != string(signal.Resolved) {
		return ""
	}
	return a.EndsAt.UTC().Format(time.RFC3339Nano)
}

// Signals turns the notification's alerts into signals for the engine.
func (m *Message) Signals() []signal.Signal {
	out := make([]signal.Signal, 0, len(m.Alerts))
	for _, a := range m.Alerts {
		s := signal.Signal{
			Source:       "alertmanager",
			Type:         "alertmanager.alert",
			GroupKey:     m.GroupKey,
			Fingerprint:  a.Fingerprint,
			Status:       signal.Status(a.Status),
			Labels:       map[string]string(a.Labels),
			Annotations:  map[string]string(a.Annotations),
			StartsAt:     a.StartsAt,
			GeneratorURL: a.GeneratorURL,
		}
		if a.Status == string(signal.Resolved) {
			s.EndsAt = a.EndsAt
		}
		out = append(out, s)
	}
	return out
}
