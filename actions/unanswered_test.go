package actions

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestUnanswered classifies real failures of a request: those after which
// the request may have been applied are outcome unknown; those before it
// was sent, or answered with a refusal, are not.
func TestUnanswered(t *testing.T) {
	// A port nobody listens on: refused while dialling.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	// A server that takes the request and drops the connection.
	dropping := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	defer dropping.Close()
	// A server that answers too late.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	post := func(url string) error {
		c := &http.Client{Timeout: 200 * time.Millisecond}
		resp, err := c.Post(url, "application/json", nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	for _, tt := range []struct {
		name    string
		err     error
		unknown bool
	}{
		{"connection refused", post(closed), false},
		{"name does not resolve", post("http://incidentbot-no-such-host.invalid"), false},
		{"connection dropped after the request", post(dropping.URL), true},
		{"no answer before the client's timeout", post(slow.URL), true},
		{"API server timeout (504)", apierrors.NewTimeoutError("the request timed out", 0), true},
		{"API server busy (ServerTimeout)", apierrors.NewServerTimeout(gr, "patch", 1), true},
		{"forbidden", apierrors.NewForbidden(gr, "api", errors.New("rbac")), false},
		{"conflict", apierrors.NewConflict(gr, "api", errors.New("changed")), false},
		{"already unknown", ErrOutcomeUnknown, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("no error to classify")
			}
			got := Unanswered(tt.err)
			if errors.Is(got, ErrOutcomeUnknown) != tt.unknown {
				t.Fatalf("Unanswered(%v) = %v; outcome unknown: %v, want %v", tt.err, got, !tt.unknown, tt.unknown)
			}
			if !errors.Is(got, tt.err) {
				t.Fatalf("Unanswered(%v) = %v: lost the error it wraps", tt.err, got)
			}
			if apierrors.IsConflict(tt.err) && !apierrors.IsConflict(got) {
				t.Fatal("a conflict is no longer seen as one (RetryOnConflict would stop retrying)")
			}
		})
	}
	if Unanswered(nil) != nil {
		t.Fatal("Unanswered(nil) is not nil")
	}
}
