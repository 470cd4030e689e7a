package slack

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// GroupMembers lists the members of a Slack user group
// (usergroups.users.list; *slack.Client has it).
type GroupMembers interface {
	GetUserGroupMembersContext(ctx context.Context, group string, opts ...slack.GetUserGroupMembersOption) ([]string, error)
}

// DefaultGroupTTL is how long a user group's members are cached.
const DefaultGroupTTL = 5 * time.Minute

// Access says who may use the commands and buttons: the users listed, and
// the members of the user groups listed. With neither, everyone may.
type Access struct {
	users  map[string]bool
	groups []string
	api    GroupMembers
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]groupMembers
}

type groupMembers struct {
	members map[string]bool
	at      time.Time
}

// NewAccess returns the allow lists. api resolves group members (needed
// when groups is not empty); ttl is how long members are cached (0 means
// DefaultGroupTTL).
func NewAccess(users, groups []string, api GroupMembers, ttl time.Duration) *Access {
	if ttl <= 0 {
		ttl = DefaultGroupTTL
	}
	a := &Access{users: map[string]bool{}, groups: groups, api: api, ttl: ttl, now: time.Now, cache: map[string]groupMembers{}}
	for _, u := range users {
		a.users[u] = true
	}
	return a
}

// Allowed reports whether user may act, and if not, why in a sentence for
// that user. A group that cannot be read is not a membership; a group read
// before keeps its last members while Slack does not answer.
func (a *Access) Allowed(ctx context.Context, user string) (bool, string) {
	if a == nil || (len(a.users) == 0 && len(a.groups) == 0) || a.users[user] {
		return true, ""
	}
	var failed []string
	for _, g := range a.groups {
		members, err := a.members(ctx, g)
		if err != nil {
			failed = append(failed, fmt.Sprintf("<!subteam^%s> (%v)", g, err))
			continue
		}
		if members[user] {
			return true, ""
		}
	}
	var in []string
	if len(a.users) > 0 {
		in = append(in, "a user listed in slack.allowed_users")
	}
	if len(a.groups) > 0 {
		var gs []string
		for _, g := range a.groups {
			gs = append(gs, "<!subteam^"+g+">")
		}
		in = append(in, "a member of "+strings.Join(gs, ", ")+" (slack.allowed_groups)")
	}
	why := fmt.Sprintf("You (<@%s>) may not use incidentbot here: only %s may. Ask whoever runs incidentbot to add you.",
		user, strings.Join(in, " or "))
	if len(failed) > 0 {
		why += " Could not check " + strings.Join(failed, ", ") + "."
	}
	return false, why
}

// members returns a group's members, from the cache while it is fresh.
func (a *Access) members(ctx context.Context, group string) (map[string]bool, error) {
	a.mu.Lock()
	c, ok := a.cache[group]
	a.mu.Unlock()
	if ok && a.now().Sub(c.at) < a.ttl {
		return c.members, nil
	}
	if a.api == nil {
		return nil, fmt.Errorf("no Slack token to read user groups with")
	}
	list, err := a.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		if ok {
			return c.members, nil // stale beats nothing while Slack is down
		}
		return nil, err
	}
	m := make(map[string]bool, len(list))
	for _, u := range list {
		m[u] = true
	}
	a.mu.Lock()
	a.cache[group] = groupMembers{members: m, at: a.now()}
	a.mu.Unlock()
	return m, nil
}
