package spawn

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// LookupUser returns the credential to run a program as user name: its uid, its primary group
// and all its supplementary groups, as login(1) would set them. Any failure is an error: a
// program never runs with fewer or other groups than its user has.
func LookupUser(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	uid, err := parseID(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid: %w", name, err)
	}
	gid, err := parseID(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid: %w", name, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %s: supplementary groups: %w", name, err)
	}
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: make([]uint32, 0, len(ids))}
	for _, id := range ids {
		g, err := parseID(id)
		if err != nil {
			return nil, fmt.Errorf("user %s: supplementary group: %w", name, err)
		}
		cred.Groups = append(cred.Groups, g)
	}
	return cred, nil
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(id), nil
}
