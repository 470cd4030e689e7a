package runbooks

import (
	"slices"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/notify"
)

func TestKeyRefsChecked(t *testing.T) {
	const doc = validHead + `routing:
  critical:
    page: true
    pagerduty_key_ref: payments
  warning:
    channel: "#w"
    pagerduty_key_ref: storage
`
	rbs, _, err := Parse(actions.Default(), "f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	set, _, err := finish(rbs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Get("rb").Route(notify.SeverityCritical).PagerDutyKey; got != "payments" {
		t.Errorf("critical route names %q, want the reference", got)
	}
	if got := set.KeyRefs(); !slices.Equal(got, []string{"payments", "storage"}) {
		t.Errorf("KeyRefs() = %v", got)
	}
	if err := set.CheckKeyRefs([]string{"payments", "storage", "other"}); err != nil {
		t.Errorf("every reference configured: %v", err)
	}
	err = set.CheckKeyRefs([]string{"payments"})
	want := `f.yaml:11: routing.warning.pagerduty_key_ref: no PagerDuty routing key "storage" is configured: name it in pagerduty.routing_keys or as a file in pagerduty.routing_keys_dir (configured: "payments")`
	if err == nil || err.Error() != want {
		t.Errorf("CheckKeyRefs:\n got %v\nwant %s", err, want)
	}
	if err := set.CheckKeyRefs(nil); err == nil || strings.Count(err.Error(), "\n") != 1 || !strings.Contains(err.Error(), "f.yaml:8: routing.critical") {
		t.Errorf("no keys configured: %v, want both references refused, each at its line", err)
	}
}

func TestKeyRefThatIsAKeyIsRefusedUnprinted(t *testing.T) {
	const key = "3f9c2a7e1b4d4c8e9a6f0b2d7e5c1a38"
	for ref, want := range map[string]string{
		key:            "looks like a routing key itself",
		"bad name!":    "not a key name",
		"with/a/slash": "not a key name",
	} {
		doc := validHead + "routing:\n  critical:\n    pagerduty_key_ref: \"" + ref + "\"\n"
		_, _, err := Parse(actions.Default(), "f.yaml", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), "f.yaml:7: routing.critical.pagerduty_key_ref: "+want) {
			t.Errorf("pagerduty_key_ref %q: %v, want %q at its line", ref, err, want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("the error prints the key: %v", err)
		}
	}
}
