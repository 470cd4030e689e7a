package actions

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// validator collects load-time problems for one params node.
type validator struct {
	node *yaml.Node
	path string
	errs []*strictyaml.Error
}

// fail records a problem with parameter key.
func (v *validator) fail(key, format string, args ...any) {
	n := strictyaml.Lookup(v.node, key)
	if n == nil {
		n = v.node
	}
	v.errs = append(v.errs, strictyaml.At(n, strictyaml.Key(v.path, key), format, args...))
}

// required fails when a template parameter is empty.
func (v *validator) required(key string, t Template) bool {
	if t.IsZero() {
		v.fail(key, "required")
		return false
	}
	return true
}

// check validates a static template's value now; a templated value is
// checked after rendering, at plan time.
func (v *validator) check(key string, t Template, f func(string) error) {
	if t.Static() && !t.IsZero() {
		if err := f(t.String()); err != nil {
			v.fail(key, "%s", err)
		}
	}
}

func (v *validator) err() error { return strictyaml.Join(v.errs) }

// render renders t for data and validates the result with check. A value
// that fails because the signal lacks what the template reads is a
// *MissingError, which says what to add.
func render(key string, t Template, data PlanData, check func(string) error) (string, error) {
	s, err := t.Render(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if check != nil {
		if err := check(s); err != nil {
			if t.Static() {
				return "", fmt.Errorf("%s: %w", key, err)
			}
			if missing := missingRefs(t, data); len(missing) > 0 {
				return "", &MissingError{Source: data.Source, Type: data.Type, Missing: missing}
			}
			return "", fmt.Errorf("%s %q rendered to %q: %w", key, t.String(), redact.Text(s), err)
		}
	}
	return s, nil
}

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValue   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	flagName     = regexp.MustCompile(`^[a-z0-9_]+$`)
	base58       = regexp.MustCompile(`^[1-9A-HJ-NP-Za-km-z]{32,44}$`)
)

// checkNamespace validates a Kubernetes namespace name.
func checkNamespace(s string) error {
	if s == "" {
		return fmt.Errorf("empty namespace")
	}
	if len(s) > 63 || !dnsLabel.MatchString(s) {
		return fmt.Errorf("%q is not a valid namespace name (lower-case letters, digits and '-', at most 63)", s)
	}
	return nil
}

// checkName validates a Kubernetes object name (DNS subdomain).
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > 253 || !dnsSubdomain.MatchString(s) {
		return fmt.Errorf("%q is not a valid Kubernetes name (lower-case letters, digits, '-' and '.')", s)
	}
	return nil
}

// checkContainer validates an optional container name.
func checkContainer(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 63 || !dnsLabel.MatchString(s) {
		return fmt.Errorf("%q is not a valid container name", s)
	}
	return nil
}

func checkEnvName(s string) error {
	if !envName.MatchString(s) {
		return fmt.Errorf("%q is not a valid environment variable name", s)
	}
	return nil
}

func checkLabelKey(s string) error {
	if len(s) > 316 || !labelKey.MatchString(s) {
		return fmt.Errorf("%q is not a valid label key", s)
	}
	return nil
}

func checkLabelValue(s string) error {
	if s == "" {
		return fmt.Errorf("empty label value")
	}
	if len(s) > 63 || !labelValue.MatchString(s) {
		return fmt.Errorf("%q is not a valid label value", s)
	}
	return nil
}

func checkFlag(s string) error {
	if len(s) > 128 || !flagName.MatchString(s) {
		return fmt.Errorf("%q is not a valid feature flag name (want ^[a-z0-9_]+$)", s)
	}
	return nil
}

func checkBase58(what string) func(string) error {
	return func(s string) error {
		if !base58.MatchString(s) {
			return fmt.Errorf("%q is not a valid %s (32-44 base58 characters)", s, what)
		}
		return nil
	}
}

// checkURL validates an http(s) URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", redact.URL(s))
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q contains whitespace", redact.URL(s))
	}
	return nil
}

// target names a namespaced object in plans: "deployment solana-dapps/api".
func target(kind, ns, name string) string { return kind + " " + ns + "/" + name }
