package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// EnvPrefix starts every environment variable the bot reads.
const EnvPrefix = "INCIDENTBOT_"

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[secret.Secret]()
)

// EnvKeys lists every environment variable that maps to a setting, with
// its YAML path (the config tests check names against it).
func EnvKeys() map[string]string {
	out := map[string]string{}
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(path string, _ reflect.Value) {
		out[envName(path)] = path
	})
	return out
}

func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv sets every scalar setting that has an INCIDENTBOT_ variable and
// records in origins which variable set which path.
func applyEnv(c *Config, environ []string, origins map[string]string) []*Problem {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	var ps []*Problem
	known := map[string]bool{}
	walk(reflect.ValueOf(c).Elem(), "", func(path string, v reflect.Value) {
		name := envName(path)
		known[name] = true
		raw, ok := env[name]
		if !ok {
			return
		}
		origins[path] = name
		if err := setScalar(v, raw); err != nil {
			ps = append(ps, &Problem{Origin: name, Path: path, Msg: err.Error()})
		}
	})
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !known[k] {
			ps = append(ps, &Problem{Origin: k, Msg: "unknown setting" + suggestEnv(k, known)})
		}
	}
	return ps
}

// suggestEnv names the closest known variable.
func suggestEnv(name string, known map[string]bool) string {
	best, bestD := "", 4
	for k := range known {
		if d := strictyaml.Distance(name, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// walk calls f for every scalar field reachable through structs, with its
// dotted YAML path. Lists and maps are YAML-only.
func walk(v reflect.Value, prefix string, f func(path string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		fv := v.Field(i)
		switch {
		case fv.Type() == durationType || fv.Type() == secretType:
			f(path, fv)
		case fv.Kind() == reflect.Struct:
			walk(fv, path, f)
		case fv.Kind() == reflect.String, fv.Kind() == reflect.Bool, fv.Kind() == reflect.Int, fv.Kind() == reflect.Int64,
			fv.Kind() == reflect.Uint64, fv.Kind() == reflect.Float64:
			f(path, fv)
		}
	}
}

func setScalar(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q: want a duration like 30s, 15m or 1h", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("want a non-negative integer")
		}
		v.SetUint(n)
	case v.Kind() == reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("want a number")
		}
		v.SetFloat(n)
	}
	return nil
}
