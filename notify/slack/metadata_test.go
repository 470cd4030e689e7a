package slack

import (
	"testing"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestCardMetadataOnTheWire: the card carries its tag as message metadata,
// byte for byte as chat.postMessage sends it; updates keep it (Slack keeps
// metadata an update leaves out) and thread replies carry none.
func TestCardMetadataOnTheWire(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, err := New(Config{Token: "xoxb-t", APIURL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	inc := firingCritical()
	ref, err := chat.PostCard(t.Context(), "#solana-dapps-alerts", inc, notify.CardTag{IncidentID: inc.ID, Nonce: "9f86d081884c7d65"})
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.UpdateCard(t.Context(), ref, resolvedWarning()); err != nil {
		t.Fatal(err)
	}
	if err := chat.Reply(t.Context(), ref, inc, notify.Update{Seq: 1, Kind: "resolved"}); err != nil {
		t.Fatal(err)
	}

	posts := srv.Posts()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want card and reply", len(posts))
	}
	golden(t, "post_card.metadata", append([]byte(posts[0].Form.Get("metadata")), '\n'))
	if _, ok := posts[1].Form["metadata"]; ok {
		t.Errorf("thread reply carries metadata %q", posts[1].Form.Get("metadata"))
	}
	if u := srv.Updates(); len(u) != 1 || u[0].Form.Has("metadata") {
		t.Errorf("update sent metadata: %v", u)
	}
	if card, _ := srv.Card(ref.Channel, ref.TS); string(card.Metadata) != posts[0].Form.Get("metadata") {
		t.Errorf("card metadata after update = %s", card.Metadata)
	}
}
