package engine

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
)

// incidentIndex is what the open-incidents gauge and the sweep know of
// the incident records without reading them: the open ones' severity and
// the keys changed lately. It is kept from a watch of the incidents
// bucket (Sweep runs it), so every replica sees every change, in the
// order stored, and a process that starts reads every record once, when
// the watch begins. It holds a few dozen bytes per open incident and per
// incident changed within the recent window, nothing of the others.
type incidentIndex struct {
	mu    sync.Mutex
	ready bool
	keys  map[string]indexed
	open  map[notify.Severity]int
	// gauge is set from open on every change once ready.
	gauge func(open map[notify.Severity]int)
}

// indexed is one key's entry: open (with its severity), or changed since
// the recent window began (kept for the sweep's delivery checks).
type indexed struct {
	sev     notify.Severity
	open    bool
	updated int64 // the record's UpdatedAt, Unix nanoseconds
}

// recordHead is the part of a record the index decodes.
type recordHead struct {
	Status    notify.Status   `json:"status"`
	Severity  notify.Severity `json:"severity"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func newIncidentIndex(gauge func(map[notify.Severity]int)) *incidentIndex {
	return &incidentIndex{keys: map[string]indexed{}, open: zeroOpen(), gauge: gauge}
}

func zeroOpen() map[notify.Severity]int {
	return map[notify.Severity]int{notify.SeverityCritical: 0, notify.SeverityWarning: 0, notify.SeverityInfo: 0}
}

// internSeverity returns the package's constant for a known severity, so
// that an entry does not keep the decoded string.
func internSeverity(s notify.Severity) notify.Severity {
	for _, c := range []notify.Severity{notify.SeverityCritical, notify.SeverityWarning, notify.SeverityInfo} {
		if s == c {
			return c
		}
	}
	return s
}

// reset forgets everything, before a watch begins again.
func (x *incidentIndex) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ready = false
	x.keys = map[string]indexed{}
	x.open = zeroOpen()
}

// apply takes one change seen by the watch. recentSince is the start of
// the recent window: a resolved incident changed before it is not kept.
func (x *incidentIndex) apply(c bus.Change, recentSince time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.Ready {
		x.ready = true
		x.publish()
		return
	}
	old, had := x.keys[c.Key]
	if had && old.open {
		x.open[old.sev]--
	}
	var h recordHead
	if c.Deleted || json.Unmarshal(c.Value, &h) != nil {
		delete(x.keys, c.Key)
		x.publish()
		return
	}
	n := indexed{sev: internSeverity(h.Severity), open: h.Status != notify.StatusResolved, updated: h.UpdatedAt.UnixNano()}
	switch {
	case n.open:
		x.open[n.sev]++
		x.keys[c.Key] = n
	case h.UpdatedAt.After(recentSince):
		n.sev = ""
		x.keys[c.Key] = n
	default:
		delete(x.keys, c.Key)
	}
	x.publish()
}

// publish sets the gauge; x.mu is held.
func (x *incidentIndex) publish() {
	if x.ready && x.gauge != nil {
		x.gauge(x.open)
	}
}

// changed returns the keys changed after after and at or before upTo,
// once the watch has read every record (false before), and forgets the
// resolved ones changed at or before after.
func (x *incidentIndex) changed(after, upTo time.Time) ([]string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return nil, false
	}
	var keys []string
	for k, n := range x.keys {
		switch {
		case n.updated > after.UnixNano():
			if n.updated <= upTo.UnixNano() {
				keys = append(keys, k)
			}
		case !n.open:
			delete(x.keys, k)
		}
	}
	return keys, true
}

// watchIncidents keeps the index from a watch of the incidents bucket
// until ctx ends, beginning again (and reading every record again) after
// an error.
func (e *Engine) watchIncidents(ctx context.Context) {
	for {
		e.known.reset()
		err := e.incidents.Watch(ctx, func(c bus.Change) { e.known.apply(c, e.recentSince()) })
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("sweep: watch incidents; beginning again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.cfg.RetryMax):
		}
	}
}

// recentSince is the start of the window within which a changed incident
// is checked on every sweep pass.
func (e *Engine) recentSince() time.Time {
	return e.now().Add(-sweepSlices * e.cfg.SweepInterval)
}
