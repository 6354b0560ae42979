package spawn

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// LookupUser returns the credential to run a program as user name: its uid, its primary group
// and all its supplementary groups, as login(1) would set them. Any failure is an error: a
// program never runs with fewer or other groups than its user has.
//
// hapair is built without cgo (a static binary: no libc in its memory, see
// docs/performance.md), so Go's os/user reads /etc/passwd and /etc/group only: a user or a
// group of LDAP, SSSD or systemd's userdb would be unknown to it, or missing from the user's
// groups. So the user is looked up through the system's name service switch, as keepalived's
// getpwnam and getgrouplist would: getent passwd and getent initgroups (lookupNSS). Go's own
// lookup only where getent is not installed. Only at configuration load, never on a hot path.
func LookupUser(name string) (*syscall.Credential, error) {
	cred, err := lookupNSS(name)
	switch {
	case err == nil:
		return cred, nil
	case errors.Is(err, errNoSuchUser):
		return nil, fmt.Errorf("look up user: %w", user.UnknownUserError(name))
	case errors.Is(err, exec.ErrNotFound):
		if cred, err = lookupFiles(name); err != nil {
			return nil, fmt.Errorf("look up user: %w", err)
		}
		return cred, nil
	default:
		return nil, fmt.Errorf("look up user: %w", err)
	}
}

// lookupFiles is the lookup of Go's os/user.
func lookupFiles(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
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

// errNoSuchUser: the name service does not know the user either.
var errNoSuchUser = errors.New("no such user")

// getent is the program lookupNSS runs (a variable for the tests).
var getent = "getent"

// lookupNSS looks name up through the name service switch with getent(1): "getent passwd NAME"
// for the uid and the primary group, "getent initgroups NAME" for the supplementary groups (the
// list initgroups(3) would set, without the primary group, which is added first).
func lookupNSS(name string) (*syscall.Credential, error) {
	if name == "" || strings.ContainsAny(name, ":\n") || strings.HasPrefix(name, "-") {
		return nil, errNoSuchUser
	}
	out, err := exec.Command(getent, "passwd", name).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 { // getent: key not found
		return nil, errNoSuchUser
	}
	if err != nil {
		return nil, fmt.Errorf("getent passwd %s: %w", name, err)
	}
	// name:password:uid:gid:gecos:home:shell
	line, _, _ := strings.Cut(string(out), "\n")
	fields := strings.Split(line, ":")
	if len(fields) != 7 || fields[0] != name {
		return nil, fmt.Errorf("getent passwd %s: unexpected answer %q", name, line)
	}
	uid, err := parseID(fields[2])
	if err != nil {
		return nil, fmt.Errorf("getent passwd %s: uid: %w", name, err)
	}
	gid, err := parseID(fields[3])
	if err != nil {
		return nil, fmt.Errorf("getent passwd %s: gid: %w", name, err)
	}
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{gid}}
	out, err = exec.Command(getent, "initgroups", name).Output()
	if err != nil {
		return nil, fmt.Errorf("getent initgroups %s: %w", name, err)
	}
	// name gid gid ...
	words := strings.Fields(strings.TrimSpace(string(out)))
	if len(words) == 0 || words[0] != name {
		return nil, fmt.Errorf("getent initgroups %s: unexpected answer %q", name, strings.TrimSpace(string(out)))
	}
	for _, w := range words[1:] {
		g, err := parseID(w)
		if err != nil {
			return nil, fmt.Errorf("getent initgroups %s: %w", name, err)
		}
		if !slices.Contains(cred.Groups, g) {
			cred.Groups = append(cred.Groups, g)
		}
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
