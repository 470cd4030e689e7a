package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/secret"
)

func TestSecretNeverPrints(t *testing.T) {
	s := secret.Secret("xoxb-very-secret")
	type cfg struct {
		Token secret.Secret `json:"token"`
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "token", s, "cfg", cfg{s})
	j, _ := json.Marshal(cfg{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, cfg{s}, cfg{s}, s, s), fmt.Errorf("auth %v", s).Error(), logs.String(), string(j)} {
		if strings.Contains(out, "very-secret") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "xoxb-very-secret" {
		t.Fatal("Reveal lost the value")
	}
}

func TestEqualIsExact(t *testing.T) {
	s := secret.Secret("token")
	for presented, want := range map[string]bool{"token": true, "toke": false, "token ": false, "": false} {
		if got := s.Equal(presented); got != want {
			t.Errorf("Equal(%q) = %v", presented, got)
		}
	}
	if secret.Secret("").Equal("") {
		t.Error("an unset secret matched an empty credential")
	}
}

func TestFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	os.WriteFile(p, []byte("abc\n"), 0o600)
	s, err := secret.FromFile(p)
	if err != nil || s.Reveal() != "abc" {
		t.Fatalf("FromFile = %q, %v", s.Reveal(), err)
	}
	if _, err := secret.FromFile(p + "-missing"); err == nil {
		t.Fatal("missing file: want error")
	}
	for _, blank := range []string{"", "\n", " \t\r\n"} {
		os.WriteFile(p, []byte(blank), 0o600)
		if _, err := secret.FromFile(p); !errors.Is(err, secret.ErrEmpty) || !strings.Contains(err.Error(), p) {
			t.Errorf("file %q: err = %v, want ErrEmpty naming the file", blank, err)
		}
	}
}
