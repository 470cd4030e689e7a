package engine

import (
	"context"
	"slices"
	"sync"

	"github.com/incidentbot/incidentbot/bus"
)

// memKV is an in-memory bus.KV with JetStream's compare-and-set rules, for
// the Simulator.
type memKV struct {
	mu   sync.Mutex
	data map[string]bus.Entry
	rev  uint64
}

func newMemKV() *memKV { return &memKV{data: map[string]bus.Entry{}} }

func (m *memKV) Get(_ context.Context, k string) (bus.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[k]
	if !ok {
		return bus.Entry{}, bus.ErrKeyNotFound
	}
	e.Value = slices.Clone(e.Value)
	return e, nil
}

func (m *memKV) put(k string, v []byte) uint64 {
	m.rev++
	m.data[k] = bus.Entry{Key: k, Value: slices.Clone(v), Revision: m.rev}
	return m.rev
}

func (m *memKV) Put(_ context.Context, k string, v []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put(k, v), nil
}

func (m *memKV) Create(_ context.Context, k string, v []byte, _ ...bus.KVOption) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[k]; ok {
		return 0, bus.ErrKeyExists
	}
	return m.put(k, v), nil
}

func (m *memKV) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.data[k]; !ok || e.Revision != rev {
		return 0, bus.ErrRevisionMismatch
	}
	return m.put(k, v), nil
}

func (m *memKV) Delete(_ context.Context, k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, k)
	return nil
}

func (m *memKV) Keys(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := make([]string, 0, len(m.data))
	for k := range m.data {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks, nil
}
