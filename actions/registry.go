package actions

import (
	"fmt"
	"slices"
	"strings"
)

// Builtin lists every action incidentbot ships, in one place.
func Builtin() []Action {
	return []Action{
		SwitchRPC,
		SetEnv,
		RolloutRestart,
		Scale,
		Rollback,
		BlueGreenSwitch,
		FeatureFlagDisable,
		FeatureFlagEnable,
		Maintenance,
		Silence,
		Webhook,
		ProgramRollback,
		Manual,
	}
}

// Registry finds actions by name.
type Registry struct {
	byName map[string]Action
	all    []Action
}

// NewRegistry builds a registry; two actions with one name are an error.
func NewRegistry(as ...Action) (*Registry, error) {
	r := &Registry{byName: make(map[string]Action, len(as))}
	for _, a := range as {
		name := a.Describe().Name
		if name == "" {
			return nil, fmt.Errorf("register action: empty name")
		}
		if _, dup := r.byName[name]; dup {
			return nil, fmt.Errorf("register action %q: duplicate name", name)
		}
		r.byName[name] = a
		r.all = append(r.all, a)
	}
	slices.SortFunc(r.all, func(a, b Action) int { return strings.Compare(a.Describe().Name, b.Describe().Name) })
	return r, nil
}

// Default is the registry of the built-in actions. A test guarantees it
// builds, so it panics only on a programming error.
func Default() *Registry {
	r, err := NewRegistry(Builtin()...)
	if err != nil {
		panic(err)
	}
	return r
}

// Lookup returns the action called name.
func (r *Registry) Lookup(name string) (Action, bool) {
	a, ok := r.byName[name]
	return a, ok
}

// All returns every action, sorted by name.
func (r *Registry) All() []Action { return slices.Clone(r.all) }

// Names returns every action name, sorted.
func (r *Registry) Names() []string {
	out := make([]string, len(r.all))
	for i, a := range r.all {
		out[i] = a.Describe().Name
	}
	return out
}
