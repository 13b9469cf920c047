package main

import (
	"fmt"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// parseRoom reads a room argument: a room URI (mimi://hub/r/id), HUB/ID,
// or an ID of a room hosted by domain.
func parseRoom(arg, domain string) (proto.URI, error) {
	var u proto.URI
	switch {
	case strings.HasPrefix(arg, "mimi://"):
		u = proto.URI(arg)
	case strings.Contains(arg, "/"):
		hub, id, _ := strings.Cut(arg, "/")
		u = proto.RoomURI(hub, id)
	default:
		u = proto.RoomURI(domain, arg)
	}
	id, err := u.Parse()
	if err != nil || id.Kind != proto.KindRoom {
		return "", fmt.Errorf("%q is not a room: want mimi://HUB/r/ID, HUB/ID or ID", arg)
	}
	return u, nil
}

// parseUser reads a user argument: a user (or client) URI, NAME@DOMAIN, or
// a NAME at domain.
func parseUser(arg, domain string) (proto.URI, error) {
	var u proto.URI
	switch {
	case strings.HasPrefix(arg, "mimi://"):
		u = proto.URI(arg)
	case strings.Contains(arg, "@"):
		name, d, _ := strings.Cut(arg, "@")
		u = proto.UserURI(d, name)
	default:
		u = proto.UserURI(domain, arg)
	}
	user, err := u.UserOf()
	if err != nil {
		return "", fmt.Errorf("%q is not a user: want mimi://DOMAIN/u/NAME, NAME@DOMAIN or NAME", arg)
	}
	return user, nil
}

// roleByName maps accepted role names to roles.
func roleByName(name string) (proto.Role, bool) {
	switch name {
	case "system":
		return proto.RoleSystem, true
	case "owner":
		return proto.RoleOwner, true
	case "admin":
		return proto.RoleAdmin, true
	case "regular_user", "regular", "user":
		return proto.RoleRegularUser, true
	case "visitor":
		return proto.RoleVisitor, true
	case "banned":
		return proto.RoleBanned, true
	}
	return 0, false
}

// parseRoles reads a comma-separated role list.
func parseRoles(s string) ([]proto.Role, error) {
	var roles []proto.Role
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		r, ok := roleByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown role %q (roles: owner, admin, regular_user, visitor, banned, system)", name)
		}
		roles = append(roles, r)
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("no roles in %q", s)
	}
	return roles, nil
}

// parseUserRoles reads USER[:role,role] (default role regular_user).
func parseUserRoles(arg, domain string) (proto.UserRoles, error) {
	// A URI has a colon after its scheme; roles follow the last colon
	// that is not part of "mimi://".
	name, roles := arg, ""
	rest := strings.TrimPrefix(arg, "mimi://")
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		name, roles = arg[:len(arg)-len(rest)+i], rest[i+1:]
	}
	u, err := parseUser(name, domain)
	if err != nil {
		return proto.UserRoles{}, err
	}
	ur := proto.UserRoles{User: u, Roles: []proto.Role{proto.RoleRegularUser}}
	if roles != "" {
		if ur.Roles, err = parseRoles(roles); err != nil {
			return proto.UserRoles{}, fmt.Errorf("%s: %w", arg, err)
		}
	}
	return ur, nil
}

// short writes a user or client URI as NAME@DOMAIN (with /DEVICE for a
// client); other strings are returned as they are.
func short(u proto.URI) string {
	id, err := u.Parse()
	if err != nil {
		return string(u)
	}
	switch id.Kind {
	case proto.KindUser:
		return id.User + "@" + id.Domain
	case proto.KindClient:
		return id.User + "@" + id.Domain + "/" + id.Device
	}
	return string(u)
}

// shortUser writes the user of a user or client URI as NAME@DOMAIN.
func shortUser(u proto.URI) string {
	if user, err := u.UserOf(); err == nil {
		return short(user)
	}
	return string(u)
}

// roleList writes roles by name.
func roleList(roles []proto.Role) string {
	var names []string
	for _, r := range roles {
		names = append(names, r.String())
	}
	return strings.Join(names, ",")
}

// roleStrings returns the roles' names.
func roleStrings(roles []proto.Role) []string {
	names := []string{}
	for _, r := range roles {
		names = append(names, r.String())
	}
	return names
}
