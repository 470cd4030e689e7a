package sleep

import (
	"context"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	if !For(t.Context(), time.Millisecond) {
		t.Fatal("a live context: For reported it ended")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if For(ctx, time.Hour) {
		t.Fatal("an ended context: For waited and reported it live")
	}
	if For(ctx, 0) {
		t.Fatal("an ended context, no wait: For reported it live")
	}
}
