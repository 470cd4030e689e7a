package slacktestutil

import (
	"net/url"
	"slices"
)

// UserGroupsUsersList is the Web API method listing a user group's members.
const UserGroupsUsersList = "usergroups.users.list"

// SetUserGroup makes the user group id (S…) have exactly these members.
func (s *Server) SetUserGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[string][]string{}
	}
	s.groups[id] = slices.Clone(members)
}

// userGroupsUsersList serves usergroups.users.list (under s.mu).
func (s *Server) userGroupsUsersList(form url.Values) map[string]any {
	members, ok := s.groups[form.Get("usergroup")]
	if !ok {
		return okFalse("no_such_subteam")
	}
	if members == nil {
		members = []string{}
	}
	return map[string]any{"ok": true, "users": members}
}
