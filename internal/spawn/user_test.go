package spawn

import (
	"os/user"
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
