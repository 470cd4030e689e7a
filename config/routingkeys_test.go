package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/config"
)

// secretVolume lays dir out as Kubernetes mounts a Secret: the files in a
// timestamped directory, ..data linking to it, and each key's name linking
// through ..data.
func secretVolume(t *testing.T, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_11_30_10_00_00.123456789")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range keys {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range keys {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRoutingKeysFromMapAndSecretVolume(t *testing.T) {
	dir := secretVolume(t, map[string]string{"payments": "0123456789abcdef0123456789abcdef\n", "storage": "fedcba9876543210fedcba9876543210"})
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte("pagerduty:\n  routing_keys:\n    inline: aaaabbbbccccddddeeeeffff00001111\n  routing_keys_dir: "+dir+"\n"), 0o600)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	names, complete := c.PagerDuty.RoutingKeyRefs()
	if !complete || !slices.Equal(names, []string{"inline", "payments", "storage"}) {
		t.Errorf("RoutingKeyRefs() = %v, %v; want inline, payments and storage (..data skipped), complete", names, complete)
	}
	if got := c.PagerDuty.RoutingKeys["payments"].Reveal(); got != "0123456789abcdef0123456789abcdef" {
		t.Errorf("payments = %q, want the file's key without its newline", got)
	}
	// Shape only: the directory is not read, so the names are not all known.
	c, err = (config.Options{SkipSecrets: true}).Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names, complete := c.PagerDuty.RoutingKeyRefs(); complete || !slices.Equal(names, []string{"inline"}) {
		t.Errorf("SkipSecrets: RoutingKeyRefs() = %v, %v; want inline, incomplete", names, complete)
	}
}

func TestRoutingKeysProblems(t *testing.T) {
	dir := secretVolume(t, map[string]string{"payments": "k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1", "empty": " \n", "bad name": "x"})
	path := filepath.Join(t.TempDir(), "bot.yaml")
	os.WriteFile(path, []byte("pagerduty:\n  routing_keys:\n    payments: k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2\n    blank: \"\"\n  routing_keys_dir: "+dir+"\n"), 0o600)
	_, err := config.Load(path, nil)
	for _, want := range []string{
		`bot.yaml:4: pagerduty.routing_keys.blank: empty routing key`,
		`bot.yaml:5: pagerduty.routing_keys_dir: ` + filepath.Join(dir, "bad name") + `: not a key name`,
		`bot.yaml:5: pagerduty.routing_keys_dir: ` + filepath.Join(dir, "empty") + ` is empty`,
		`bot.yaml:5: pagerduty.routing_keys_dir: ` + filepath.Join(dir, "payments") + `: routing key "payments" is also in pagerduty.routing_keys`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("problems:\n%v\nwant %s", err, want)
		}
	}
	if err != nil && (strings.Contains(err.Error(), "k1k1") || strings.Contains(err.Error(), "k2k2")) {
		t.Errorf("a problem prints a key: %v", err)
	}
	os.WriteFile(path, []byte("pagerduty:\n  routing_keys_dir: /nonexistent/keys\n"), 0o600)
	_, err = config.Load(path, nil)
	if ps := config.Problems(err); len(ps) != 1 || !ps[0].Missing {
		t.Errorf("a missing directory: %v, want one missing-file problem", err)
	}
}
