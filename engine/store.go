package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/incidentbot/incidentbot/bus"
)

// Buckets the engine owns: incident records by key, the id index, and
// what was delivered per incident and sink.
var Buckets = []bus.BucketSpec{
	{Name: BucketIncidents, Description: "incident records: what happened", History: 1, Probe: true},
	{Name: BucketIDs, Description: "incident id (and PagerDuty dedup key) to record key", History: 1},
	{Name: BucketDeliveries, Description: "what chat and pager were sent, per incident", History: 1},
	{Name: BucketArchive, Description: "resolved incidents by id, kept after their key moves on to a later incident", History: 1},
	RunsBucket,
}

// Bucket names.
const (
	BucketIncidents  = "incidents"
	BucketIDs        = "incident_ids"
	BucketDeliveries = "deliveries"
	BucketArchive    = "incident_archive"
)

// ErrNoIncident is returned when an id names no incident.
var ErrNoIncident = errors.New("no such incident")

// Ref locates an incident: its id, its record key and its group key (which
// commands use to be handled in order with the incident's alerts).
type Ref struct {
	ID       string `json:"id"`
	Key      string `json:"key"`
	GroupKey string `json:"group_key"`
}

// load reads an incident; a missing one is (nil, 0, nil).
func (e *Engine) load(ctx context.Context, key string) (*Record, uint64, error) {
	ent, err := e.incidents.Get(ctx, key)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load incident %s: %w", key, err)
	}
	r, err := decodeRecord(key, ent.Value)
	if err != nil {
		return nil, 0, err
	}
	return r, ent.Revision, nil
}

func decodeRecord(key string, b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode incident %s: %w", key, err)
	}
	if r.Alerts == nil {
		r.Alerts = map[string]*AlertState{}
	}
	if r.Key == "" {
		r.Key = key
	}
	return &r, nil
}

// store writes an incident with compare-and-set: create when rev is 0,
// update at rev otherwise.
func (e *Engine) store(ctx context.Context, key string, r *Record, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", r.ID, err)
	}
	if rev == 0 {
		_, err = e.incidents.Create(ctx, key, b)
	} else {
		_, err = e.incidents.Update(ctx, key, b, rev)
	}
	if err != nil {
		return fmt.Errorf("store incident %s: %w", r.ID, err)
	}
	return nil
}

// index records id → key for a new incident. It is a put of a value that
// never changes for the id, so repeating it is harmless.
func (e *Engine) index(ctx context.Context, r *Record) error {
	b, _ := json.Marshal(Ref{ID: r.ID, Key: r.Key, GroupKey: r.GroupKey})
	if _, err := e.ids.Put(ctx, idKey(r.ID), b); err != nil {
		return fmt.Errorf("index incident %s: %w", r.ID, err)
	}
	return nil
}

func idKey(id string) string { return "id." + strings.TrimPrefix(NormalizeID(id), "INC-") }

// Lookup finds an incident by its id (INC-7F3A2C, inc-7f3a2c or 7f3a2c)
// or its PagerDuty dedup key, in one read.
func (e *Engine) Lookup(ctx context.Context, id string) (Ref, error) {
	return lookup(ctx, e.ids, id)
}

func lookup(ctx context.Context, ids bus.KV, id string) (Ref, error) {
	if !validID(id) {
		return Ref{}, fmt.Errorf("incident id %q: %w", id, ErrNoIncident)
	}
	ent, err := ids.Get(ctx, idKey(id))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return Ref{}, fmt.Errorf("incident %s: %w", NormalizeID(id), ErrNoIncident)
	}
	if err != nil {
		return Ref{}, fmt.Errorf("look up incident %s: %w", NormalizeID(id), err)
	}
	var ref Ref
	if err := json.Unmarshal(ent.Value, &ref); err != nil {
		return Ref{}, fmt.Errorf("decode index of %s: %w", NormalizeID(id), err)
	}
	return ref, nil
}

// validID accepts what NormalizeID can turn into a KV key.
func validID(id string) bool {
	n := strings.TrimPrefix(NormalizeID(id), "INC-")
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Get returns the incident an id names.
func (e *Engine) Get(ctx context.Context, id string) (*Record, error) {
	ref, err := e.Lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	r, _, err := e.load(ctx, ref.Key)
	if err != nil {
		return nil, err
	}
	if r == nil || r.ID != ref.ID {
		// A later incident of the same group took the key: the earlier
		// one was archived when it resolved.
		if a, err := e.archived(ctx, ref.ID); err != nil || a != nil {
			return a, err
		}
		return nil, fmt.Errorf("incident %s: %w", ref.ID, ErrNoIncident)
	}
	return r, nil
}

// archive keeps a resolved incident under its id, so that it can still be
// read (reports) after its key moves on to a later incident of the same
// group. It is a put of the record as it stands: repeating it is harmless.
func (e *Engine) archive(ctx context.Context, r *Record) error {
	if e.archiveKV == nil || r.Open() {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", r.ID, err)
	}
	if _, err := e.archiveKV.Put(ctx, idKey(r.ID), b); err != nil {
		return fmt.Errorf("archive incident %s: %w", r.ID, err)
	}
	return nil
}

// archived reads an archived incident; nil when there is none.
func (e *Engine) archived(ctx context.Context, id string) (*Record, error) {
	if e.archiveKV == nil {
		return nil, nil
	}
	ent, err := e.archiveKV.Get(ctx, idKey(id))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read archived incident %s: %w", id, err)
	}
	return decodeRecord("", ent.Value)
}

// AllIncidents lists every incident still stored: the current one of
// each key and the archived ones a later incident superseded, each once.
func (e *Engine) AllIncidents(ctx context.Context) ([]*Record, error) {
	cur, err := e.Incidents(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Record
	for _, r := range cur {
		seen[r.ID] = true
		out = append(out, r)
	}
	if e.archiveKV == nil {
		return out, nil
	}
	keys, err := e.archiveKV.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list archived incidents: %w", err)
	}
	for _, k := range keys {
		ent, err := e.archiveKV.Get(ctx, k)
		if errors.Is(err, bus.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read archived incident %s: %w", k, err)
		}
		r, err := decodeRecord("", ent.Value)
		if err != nil {
			return nil, err
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// Incidents lists every stored incident, for the CLI, the open-incidents
// gauge and the repair sweep.
func (e *Engine) Incidents(ctx context.Context) (map[string]*Record, error) {
	keys, err := e.incidents.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	out := make(map[string]*Record, len(keys))
	for _, k := range keys {
		r, _, err := e.load(ctx, k)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[k] = r
		}
	}
	return out, nil
}

// Delivery returns what sink (SinkChat, SinkPager, SinkSilence) was sent
// for rec; an empty Delivery when nothing was.
func (e *Engine) Delivery(ctx context.Context, sink string, rec *Record) (*Delivery, error) {
	d, _, err := e.loadDelivery(ctx, sink, rec)
	return d, err
}

// Reader reads incidents and their deliveries from the engine's buckets
// without running anything, for reports and the CLI. Its methods are the
// engine's.
type Reader struct{ e *Engine }

// NewReader returns a Reader over the engine's buckets (see Buckets), by
// name.
func NewReader(kvs map[string]bus.KV) *Reader {
	return &Reader{e: &Engine{incidents: kvs[BucketIncidents], ids: kvs[BucketIDs], deliveries: kvs[BucketDeliveries],
		archiveKV: kvs[BucketArchive]}}
}

// Get returns the incident an id names.
func (r *Reader) Get(ctx context.Context, id string) (*Record, error) { return r.e.Get(ctx, id) }

// AllIncidents lists every incident still stored, archived ones too.
func (r *Reader) AllIncidents(ctx context.Context) ([]*Record, error) {
	return r.e.AllIncidents(ctx)
}

// Delivery returns what sink was sent for rec.
func (r *Reader) Delivery(ctx context.Context, sink string, rec *Record) (*Delivery, error) {
	return r.e.Delivery(ctx, sink, rec)
}
