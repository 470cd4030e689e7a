package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/redact"
)

// AuditRecord is one line of the audit trail: a decision or an effect.
type AuditRecord struct {
	Time     time.Time         `json:"time"`
	Kind     string            `json:"kind"` // "incident.opened", "notify.slack.posted", "event.terminated", ...
	Incident string            `json:"incident,omitempty"`
	EventID  string            `json:"event_id,omitempty"`
	Actor    string            `json:"actor,omitempty"` // "incidentbot", a Slack user id, ...
	Detail   string            `json:"detail,omitempty"`
	Attrs    map[string]string `json:"attrs,omitempty"`
}

// Auditor appends to the audit trail.
type Auditor interface {
	Audit(ctx context.Context, r AuditRecord) error
}

// Audit appends r to the audit stream and waits for the acknowledgement.
func (b *Bus) Audit(ctx context.Context, r AuditRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	r.Detail = redact.Text(r.Detail) // often an error's text, which may quote a URL
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	kind := r.Kind
	if kind == "" || strings.ContainsAny(kind, " \t\r\n*>") || strings.Contains(kind, "..") ||
		strings.HasPrefix(kind, ".") || strings.HasSuffix(kind, ".") {
		kind = "other"
	}
	if _, err := b.js.Publish(ctx, b.Subject("audit."+kind), data); err != nil {
		return fmt.Errorf("append audit %s: %w", r.Kind, mapErr(err))
	}
	return nil
}

// AuditTrail reads back up to limit audit records, oldest first, for
// tests and the CLI.
func (b *Bus) AuditTrail(ctx context.Context, limit int) ([]AuditRecord, error) {
	s, err := b.js.Stream(ctx, b.StreamName(streamAudit))
	if err != nil {
		return nil, fmt.Errorf("open audit stream: %w", mapErr(err))
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit stream info: %w", mapErr(err))
	}
	var out []AuditRecord
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < limit; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted or aged out
		}
		var r AuditRecord
		if json.Unmarshal(m.Data, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
