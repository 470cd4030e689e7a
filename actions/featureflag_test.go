package actions

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/internal/testenv"
)

func loadRunner(t *testing.T, action, params string) Reverter {
	t.Helper()
	a, ok := Default().Lookup(action)
	if !ok {
		t.Fatalf("no action %s", action)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(params), &n); err != nil {
		t.Fatal(err)
	}
	b, err := a.Load(n.Content[0], "remediation[0]")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := b.(Reverter)
	if !ok {
		t.Fatalf("%s is not a Reverter", action)
	}
	return r
}

// TestFeatureFlagsRedis runs, verifies and reverts every flag action
// against a real redis-server, from each state the key can be in.
func TestFeatureFlagsRedis(t *testing.T) {
	rd := testenv.StartRedis(t)
	ctx := context.Background()
	env := Env{Redis: rd.Client}
	data := PlanData{Labels: map[string]string{"feature": "enable_escrow"}}
	for _, tc := range []struct {
		name, action, params string
		key, value           string
		before               *string // nil: missing
	}{
		{"disable from missing", "featureflag.disable", "flag: '{{ .Labels.feature }}'\n", "feature:enable_escrow", "false", nil},
		{"disable from true", "featureflag.disable", "flag: enable_amm\n", "feature:enable_amm", "false", ptr("true")},
		{"enable from false", "featureflag.enable", "flag: enable_amm\n", "feature:enable_amm", "true", ptr("false")},
		{"enable from missing", "featureflag.enable", "flag: enable_governance\n", "feature:enable_governance", "true", nil},
		{"maintenance on from missing", "featureflag.maintenance", "mode: \"on\"\n", "feature:maintenance_mode", "true", nil},
		{"maintenance off", "featureflag.maintenance", "mode: \"off\"\n", "feature:maintenance_mode", "false", ptr("true")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd.Client.Del(ctx, tc.key)
			if tc.before != nil {
				rd.Client.Set(ctx, tc.key, *tc.before, 0)
			}
			r := loadRunner(t, tc.action, tc.params)
			p, err := r.Resolve(ctx, env, data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Target != "redis "+tc.key || !strings.Contains(p.Text, "SET "+tc.key+" "+tc.value) || p.Hash == "" {
				t.Fatalf("plan %+v", p)
			}
			text, _ := r.Plan(ctx, data)
			if text != p.Text {
				t.Errorf("dry-run text %q, resolved text %q", text, p.Text)
			}
			o, err := r.Run(ctx, env, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := rd.Client.Get(ctx, tc.key).Val(); got != tc.value {
				t.Fatalf("after run %s = %q", tc.key, got)
			}
			if err := r.Verify(ctx, env, p, o); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := r.Revert(ctx, env, p, o); err != nil {
				t.Fatalf("revert: %v", err)
			}
			got, err := rd.Client.Get(ctx, tc.key).Result()
			if tc.before == nil {
				if err == nil {
					t.Fatalf("after revert %s = %q, want missing", tc.key, got)
				}
			} else if got != *tc.before {
				t.Fatalf("after revert %s = %q, want %q", tc.key, got, *tc.before)
			}
			if err := r.Verify(ctx, env, p, o); err == nil {
				t.Error("verify passed after revert")
			}
		})
	}

	t.Run("revert leaves a change made since", func(t *testing.T) {
		rd.Client.Set(ctx, "feature:enable_amm", "true", 0)
		r := loadRunner(t, "featureflag.disable", "flag: enable_amm\n")
		p, _ := r.Resolve(ctx, env, data)
		o, err := r.Run(ctx, env, p)
		if err != nil {
			t.Fatal(err)
		}
		rd.Client.Set(ctx, "feature:enable_amm", "someone", 0)
		if err := r.Revert(ctx, env, p, o); !errors.Is(err, ErrChangedSince) {
			t.Fatalf("revert: %v", err)
		}
		if got := rd.Client.Get(ctx, "feature:enable_amm").Val(); got != "someone" {
			t.Errorf("value %q", got)
		}
	})

	t.Run("no redis is a dry run", func(t *testing.T) {
		r := loadRunner(t, "featureflag.disable", "flag: enable_amm\n")
		p, _ := r.Resolve(ctx, Env{}, data)
		_, err := r.Run(ctx, Env{}, p)
		if !errors.Is(err, ErrDryRun) || err.Error() != "dry run: redis.url not configured" {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestPlanHash(t *testing.T) {
	ctx := context.Background()
	r := loadRunner(t, "featureflag.disable", "flag: '{{ .Labels.feature }}'\n")
	a, _ := r.Resolve(ctx, Env{}, PlanData{Labels: map[string]string{"feature": "enable_escrow"}})
	b, _ := r.Resolve(ctx, Env{}, PlanData{Labels: map[string]string{"feature": "enable_escrow"}})
	c, _ := r.Resolve(ctx, Env{}, PlanData{Labels: map[string]string{"feature": "enable_amm"}})
	if a.Hash != b.Hash || a.Hash == c.Hash || len(a.Hash) != 64 {
		t.Errorf("hashes %s %s %s", a.Hash, b.Hash, c.Hash)
	}
	e := loadRunner(t, "featureflag.enable", "flag: enable_escrow\n")
	d, _ := e.Resolve(ctx, Env{}, PlanData{})
	if d.Hash == a.Hash {
		t.Error("enable and disable of one flag share a hash")
	}
	if _, err := loadRunner(t, "featureflag.disable", "flag: '{{ .Labels.feature }}'\n").Resolve(ctx, Env{}, PlanData{}); err == nil {
		t.Error("resolved with the label missing")
	}
}

func TestMaintenanceModeParam(t *testing.T) {
	a, _ := Default().Lookup("featureflag.maintenance")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("mode: maybe\n"), &n)
	if _, err := a.Load(n.Content[0], "remediation[0]"); err == nil || !strings.Contains(err.Error(), `"maybe": want on or off`) {
		t.Errorf("err = %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestFeatureFlagRunOutcomeUnknown: a SET that got no answer may have been
// applied, so Run says the outcome is unknown (the engine then never
// calls it failed, which reads as "nothing changed"); an error reply
// from Redis, or no connection at all, is a plain failure.
func TestFeatureFlagRunOutcomeUnknown(t *testing.T) {
	ctx := context.Background()
	r := loadRunner(t, "featureflag.disable", "flag: enable_amm\n")
	p, err := r.Resolve(ctx, Env{}, PlanData{})
	if err != nil {
		t.Fatal(err)
	}

	// A server that takes the command and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	hung := redis.NewClient(&redis.Options{Addr: silent.Addr().String(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer hung.Close()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := r.Run(tctx, Env{Redis: hung}, p); !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("no answer: %v, want the outcome unknown", err)
	}

	// Nothing listening: the command never left.
	closed := testenv.FreePort(t)
	gone := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(closed), MaxRetries: -1})
	defer gone.Close()
	if _, err := r.Run(ctx, Env{Redis: gone}, p); err == nil || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("connection refused: %v, want a plain failure", err)
	}

	// Redis refuses it: the key holds a list.
	rd := testenv.StartRedis(t)
	rd.Client.RPush(ctx, "feature:enable_amm", "x")
	if _, err := r.Run(ctx, Env{Redis: rd.Client}, p); err == nil || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("error reply: %v, want a plain failure saying WRONGTYPE", err)
	}
}
