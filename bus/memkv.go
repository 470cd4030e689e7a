package bus

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// MemKV is an in-memory KV with JetStream's compare-and-set rules: Create
// fails on an existing key, Update on a stale revision. The runbook test
// simulator and tests use it where no bus runs; it keeps no history and
// ignores KV options.
type MemKV struct {
	mu       sync.Mutex
	data     map[string]Entry
	rev      uint64
	watchers map[*memWatch]struct{}
}

// memWatch queues the changes one Watch has yet to see.
type memWatch struct {
	mu    sync.Mutex
	queue []Change
	wake  chan struct{}
}

// notify queues a change for every watcher; m.mu is held.
func (m *MemKV) notify(c Change) {
	c.Value = slices.Clone(c.Value)
	for w := range m.watchers {
		w.mu.Lock()
		w.queue = append(w.queue, c)
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// NewMemKV returns an empty in-memory KV.
func NewMemKV() *MemKV { return &MemKV{data: map[string]Entry{}} }

func (m *MemKV) Get(_ context.Context, k string) (Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[k]
	if !ok {
		return Entry{}, ErrKeyNotFound
	}
	e.Value = slices.Clone(e.Value)
	return e, nil
}

func (m *MemKV) put(k string, v []byte) uint64 {
	m.rev++
	m.data[k] = Entry{Key: k, Value: slices.Clone(v), Revision: m.rev}
	m.notify(Change{Entry: m.data[k]})
	return m.rev
}

func (m *MemKV) Put(_ context.Context, k string, v []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put(k, v), nil
}

func (m *MemKV) Create(_ context.Context, k string, v []byte, _ ...KVOption) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[k]; ok {
		return 0, ErrKeyExists
	}
	return m.put(k, v), nil
}

func (m *MemKV) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.data[k]; !ok || e.Revision != rev {
		return 0, ErrRevisionMismatch
	}
	return m.put(k, v), nil
}

func (m *MemKV) Delete(_ context.Context, k string, opts ...KVOption) error {
	o, err := applyKVOptions(opts)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.data[k]; o.rev > 0 && (!ok || e.Revision != o.rev) {
		return ErrRevisionMismatch
	}
	if _, ok := m.data[k]; ok {
		delete(m.data, k)
		m.rev++
		m.notify(Change{Entry: Entry{Key: k, Revision: m.rev}, Deleted: true})
	}
	return nil
}

func (m *MemKV) Keys(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := make([]string, 0, len(m.data))
	for k := range m.data {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks, nil
}

func (m *MemKV) Watch(ctx context.Context, fn func(Change)) error {
	w := &memWatch{wake: make(chan struct{}, 1)}
	m.mu.Lock()
	current := make([]Entry, 0, len(m.data))
	for _, e := range m.data {
		e.Value = slices.Clone(e.Value)
		current = append(current, e)
	}
	if m.watchers == nil {
		m.watchers = map[*memWatch]struct{}{}
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
	}()
	slices.SortFunc(current, func(a, b Entry) int { return cmp.Compare(a.Revision, b.Revision) })
	for _, e := range current {
		fn(Change{Entry: e})
	}
	fn(Change{Ready: true})
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, c := range q {
			fn(c)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
	}
}
