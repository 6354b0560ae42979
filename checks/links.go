package checks

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Links follows the state of every network interface of hapair's namespace through netlink
// link updates (event-driven, no polling), for the interfaces VRRP instances track: their own
// (keepalived's default, off with dont_track_primary) and their track_interface entries.
//
// Unlike a Spec in a Runner it has no pending state: NewLinks reads every link at once, so an
// instance never sees its link as "not yet known" (a FAULT at start, or at a reload that
// replaces the checks runner). And it follows every link rather than a configured list, so a
// track_interface added by a reload is followed without restarting anything.
type Links struct {
	mu    sync.Mutex
	state map[string]linkState // by interface name; absent: no such interface
	names map[int]string       // by link index, to follow a rename
}

type linkState struct {
	up     bool
	reason string
	index  int // a new one when the interface is created again under the same name
}

// NewLinks reads the current state of every link.
func NewLinks() (*Links, error) {
	l := &Links{}
	if err := l.refresh(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Links) refresh() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	state := make(map[string]linkState, len(links))
	names := make(map[int]string, len(links))
	for _, link := range links {
		a := link.Attrs()
		up, reason := linkUp(a)
		state[a.Name] = linkState{up: up, reason: reason, index: a.Index}
		names[a.Index] = a.Name
	}
	l.mu.Lock()
	l.state, l.names = state, names
	l.mu.Unlock()
	return nil
}

// Down reports whether any of names has its link down and, for the first in name order, why;
// false when every one is up. A name no interface has counts as down, as in keepalived.
func (l *Links) Down(names []string) (down bool, why string) {
	if len(names) == 0 {
		return false, ""
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range sorted {
		s, ok := l.state[n]
		if !ok {
			return true, fmt.Sprintf("interface %s not found", n)
		}
		if !s.up {
			return true, s.reason
		}
	}
	return false, ""
}

// Index is the index of the interface called name, 0 if there is none. An interface deleted and
// created again under the same name has a new one.
func (l *Links) Index(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state[name].index
}

// set records one link's state (exists false: deleted); it reports whether anything changed.
func (l *Links) set(index int, name string, s linkState, exists bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	if prev, ok := l.names[index]; ok && prev != name { // renamed: the old name is gone
		delete(l.state, prev)
		changed = true
	}
	s.index = index
	old, had := l.state[name]
	if !exists {
		delete(l.state, name)
		delete(l.names, index)
		return changed || had
	}
	l.state[name] = s
	l.names[index] = name
	return changed || !had || old != s
}

// Watch follows link updates until ctx is done and calls changed after every change of a
// link's state (not for updates that change nothing, such as statistics). It reads every
// link again once subscribed, and calls changed then, so that nothing between NewLinks (or an
// earlier Watch) and this one is missed. An error ends the watch: the subscription could not be
// made, or ended (netlink's ends at its first receive error, such as ENOBUFS when a burst of
// link events filled its buffer). Down then keeps answering from the last state known until
// Watch is called again.
func (l *Links) Watch(ctx context.Context, changed func()) error {
	subscribed := func() error {
		if err := l.refresh(); err != nil {
			return err
		}
		changed()
		return nil
	}
	return watchLinks(ctx, nil, 256, subscribed, func(u netlink.LinkUpdate) {
		a := u.Link.Attrs()
		up, reason := linkUp(a)
		// RTM_DELLINK: the interface is gone (a NEWLINK brings it back by name).
		exists := u.Header.Type != unix.RTM_DELLINK
		if l.set(a.Index, a.Name, linkState{up: up, reason: reason}, exists) {
			changed()
		}
	})
}
