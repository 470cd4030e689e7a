package actions

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// FlagState is one feature flag as the course's flag service reads it.
type FlagState struct {
	Name    string
	Value   string
	Enabled bool
}

// ReadFlags lists the feature flags set in Redis (keys feature:<flag>),
// sorted by name, read-only. The course's service treats "true" as
// enabled and anything else as disabled; a flag with no key is enabled by
// default and is not listed, since Redis cannot say which flags the app
// knows.
func ReadFlags(ctx context.Context, rdb redis.Cmdable) ([]FlagState, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, FeatureFlagKey("*"), 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) > 10000 {
			return nil, fmt.Errorf("read feature flags: more than 10000 keys under %s", FeatureFlagKey("*"))
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read feature flags: %w", err)
	}
	slices.Sort(keys)
	out := make([]FlagState, 0, len(keys))
	for _, k := range keys {
		v, err := rdb.Get(ctx, k).Result()
		if err == redis.Nil {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read feature flag %s: %w", k, err)
		}
		out = append(out, FlagState{Name: strings.TrimPrefix(k, FeatureFlagKey("")), Value: v, Enabled: v == "true"})
	}
	return out, nil
}
