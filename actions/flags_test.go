package actions

import (
	"context"
	"testing"

	"github.com/incidentbot/incidentbot/internal/testenv"
)

func TestReadFlagsFromARealRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	for k, v := range map[string]string{"feature:enable_escrow": "false", "feature:maintenance_mode": "true", "feature:swap": "TRUE", "other:key": "true"} {
		if err := r.Client.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadFlags(ctx, r.Client)
	if err != nil {
		t.Fatal(err)
	}
	want := []FlagState{{"enable_escrow", "false", false}, {"maintenance_mode", "true", true}, {"swap", "TRUE", false}}
	if len(got) != len(want) {
		t.Fatalf("flags %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("flag %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
