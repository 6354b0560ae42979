package spawn

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLookupUser(t *testing.T) {
	root, err := LookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if root.Uid != 0 || root.Gid != 0 {
		t.Errorf("root = %+v", root)
	}
	if _, err := LookupUser("hapair-no-such-user-xyz"); err == nil || !strings.Contains(err.Error(), "look up user") {
		t.Errorf("missing user: err = %v", err)
	}
}

// TestLookupUserHasSupplementaryGroups: the credential carries every group of the user (notify
// hooks used to run with none). Debian's frr user is in frrvty.
func TestLookupUserHasSupplementaryGroups(t *testing.T) {
	u, err := user.Lookup("frr")
	if err != nil {
		t.Skip("no frr user (apt-get install frr)")
	}
	ids, err := u.GroupIds()
	if err != nil || len(ids) < 2 {
		t.Skipf("frr has groups %q (%v), want a supplementary one", ids, err)
	}
	cred, err := LookupUser("frr")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		g, _ := parseID(id)
		if !slices.Contains(cred.Groups, g) {
			t.Errorf("credential groups %v lack %d", cred.Groups, g)
		}
	}
}

// TestLookupNSSAgreesWithTheFiles: through getent, a user of /etc/passwd gets the credential
// Go's own lookup gives (the same ids, the same groups).
func TestLookupNSSAgreesWithTheFiles(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("no getent")
	}
	for _, name := range []string{"root", "frr", "nobody"} {
		files, err := lookupFiles(name)
		if err != nil {
			continue
		}
		nss, err := lookupNSS(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		slices.Sort(files.Groups)
		slices.Sort(nss.Groups)
		if nss.Uid != files.Uid || nss.Gid != files.Gid || !slices.Equal(nss.Groups, files.Groups) {
			t.Errorf("%s: through getent %+v, from the files %+v", name, nss, files)
		}
	}
	if _, err := lookupNSS("hapair-no-such-user-xyz"); !errors.Is(err, errNoSuchUser) {
		t.Errorf("missing user: err = %v, want errNoSuchUser", err)
	}
}

// fakeGetent makes lookupNSS run a getent that answers as glibc's does for the users in
// answers ("passwd NAME" and "initgroups NAME" to the line it prints) and exits 2 (not found)
// for any other key.
func fakeGetent(t *testing.T, answers map[string]string) {
	t.Helper()
	script := "#!/bin/sh\ncase \"$1 $2\" in\n"
	for key, line := range answers {
		script += fmt.Sprintf("%q) echo %q ;;\n", key, line)
	}
	script += "*) exit 2 ;;\nesac\n"
	path := filepath.Join(t.TempDir(), "getent")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := getent
	getent = path
	t.Cleanup(func() { getent = old })
}

// TestLookupUserAsksTheNameService: a user /etc/passwd does not know (one from LDAP, say) is
// found through getent, with its supplementary groups.
func TestLookupUserAsksTheNameService(t *testing.T) {
	fakeGetent(t, map[string]string{
		"passwd ldapuser":     "ldapuser:*:20001:20000:LDAP user:/home/ldapuser:/bin/sh",
		"initgroups ldapuser": "ldapuser              20005 20000 27",
	})
	cred, err := LookupUser("ldapuser")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Uid != 20001 || cred.Gid != 20000 || !slices.Equal(cred.Groups, []uint32{20000, 20005, 27}) {
		t.Errorf("ldapuser = %+v, want uid 20001, gid 20000, groups [20000 20005 27]", cred)
	}
	if _, err := LookupUser("hapair-no-such-user-xyz"); err == nil || !strings.Contains(err.Error(), "look up user") {
		t.Errorf("missing user: err = %v", err)
	}
}

// TestLookupUserHasTheNameServicesGroups: a user of /etc/passwd who is a member of a group only
// the name service knows (an LDAP group) runs with it too, as with getgrouplist(3); Go's own
// lookup reads /etc/group alone and would leave it out.
func TestLookupUserHasTheNameServicesGroups(t *testing.T) {
	fakeGetent(t, map[string]string{
		"passwd root":     "root:x:0:0:root:/root:/bin/bash",
		"initgroups root": "root                  4242",
	})
	cred, err := LookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Uid != 0 || cred.Gid != 0 || !slices.Contains(cred.Groups, 4242) {
		t.Errorf("root = %+v, want uid 0, gid 0 and group 4242 among its groups", cred)
	}
}

// TestLookupUserWithoutGetent: where getent is not installed, Go's own lookup of the files.
func TestLookupUserWithoutGetent(t *testing.T) {
	old := getent
	getent = "hapair-no-such-getent" // looked up in PATH, as "getent" is
	t.Cleanup(func() { getent = old })
	root, err := LookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if root.Uid != 0 || root.Gid != 0 {
		t.Errorf("root = %+v", root)
	}
	if _, err := LookupUser("hapair-no-such-user-xyz"); err == nil || !strings.Contains(err.Error(), "look up user") {
		t.Errorf("missing user: err = %v", err)
	}
}
