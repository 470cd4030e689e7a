package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/incidentbot/incidentbot/secret"
)

// MaxRequestAge is how far a request's timestamp may be from now, either
// way, before it is refused as a replay (Slack's own rule: 5 minutes).
const MaxRequestAge = 5 * time.Minute

// Why a request is refused.
var (
	ErrUnsigned     = errors.New("no X-Slack-Request-Timestamp or X-Slack-Signature header")
	ErrStale        = errors.New("request timestamp is more than 5 minutes from now")
	ErrBadSignature = errors.New("signature does not match")
)

// Verifier checks Slack's v0 request signatures: "v0=" + hex of
// HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body).
type Verifier struct {
	Secret secret.Secret
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks the signature headers against the raw body.
func (v Verifier) Verify(h http.Header, body []byte) error {
	ts, sig := h.Get("X-Slack-Request-Timestamp"), h.Get("X-Slack-Signature")
	if ts == "" || sig == "" || !v.Secret.IsSet() {
		return ErrUnsigned
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrUnsigned
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if d := now().Sub(time.Unix(sec, 0)); d > MaxRequestAge || d < -MaxRequestAge {
		return ErrStale
	}
	mac := hmac.New(sha256.New, []byte(v.Secret.Reveal()))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	want := "v0=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}
