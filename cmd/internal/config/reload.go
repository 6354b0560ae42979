package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
)

// Reloadable compares the running configuration (old) with a new one (next) for SIGHUP.
// changes lists what a reload applies in place: vrrp_rt_priority, priorities, tracked weights, checks, virtual
// addresses, notify commands, gratuitous ARP settings, HAProxy's stop grace and backoff.
// needRestart lists what only a restart of hapair applies: everything that fixes an instance's
// socket, its wire format or its state machine (interface, virtual_router_id, version,
// advert_int, authentication, checksum, unicast addresses, preempt settings, fast_failover),
// instances added or removed, the HAProxy command line and the status listener. A reload with
// needRestart entries should be refused, so that the running configuration stays whole rather
// than half applied.
//
// HAProxy's own configuration file is outside this comparison: a reload always asks HAProxy to
// reload it (after `haproxy -c`).
func Reloadable(old, next *Config) (changes []string, needRestart []string) {
	r := &reloadDiff{}
	r.cmp(&r.changes, "router_id", old.RouterID, next.RouterID)
	r.cmp(&r.needRestart, "runtime_dir", old.RuntimeDir, next.RuntimeDir)
	r.cmp(&r.changes, "vrrp_rt_priority", old.VRRPRTPriority, next.VRRPRTPriority)

	switch {
	case old.HAProxy == nil && next.HAProxy != nil:
		r.needRestart = append(r.needRestart, "haproxy: section added")
	case old.HAProxy != nil && next.HAProxy == nil:
		r.needRestart = append(r.needRestart, "haproxy: section removed")
	case old.HAProxy != nil:
		o, n := old.HAProxy, next.HAProxy
		r.cmp(&r.needRestart, "haproxy.command", o.Command, n.Command)
		r.cmp(&r.needRestart, "haproxy.config", o.Config, n.Config)
		r.cmp(&r.needRestart, "haproxy.runtime_dir", o.RuntimeDir, n.RuntimeDir)
		r.cmp(&r.changes, "haproxy.stop_grace", o.StopGrace, n.StopGrace)
		r.cmp(&r.changes, "haproxy.restart_backoff", o.RestartBackoff, n.RestartBackoff)
	}

	diffByKey(&r.changes, "checks", old.Checks, next.Checks, func(c CheckConfig) string { return c.Name }, "changed", "removed")

	oldInst := map[string]*Instance{}
	for i := range old.Instances {
		oldInst[old.Instances[i].Name] = &old.Instances[i]
	}
	newInst := map[string]bool{}
	for i := range next.Instances {
		n := &next.Instances[i]
		newInst[n.Name] = true
		o, ok := oldInst[n.Name]
		if !ok {
			r.needRestart = append(r.needRestart, fmt.Sprintf("vrrp_instances[%s]: added", n.Name))
			continue
		}
		r.instance(o, n)
	}
	for _, o := range old.Instances {
		if !newInst[o.Name] {
			r.needRestart = append(r.needRestart, fmt.Sprintf("vrrp_instances[%s]: removed", o.Name))
		}
	}

	r.bgp(old.BGP, next.BGP)
	r.cmp(&r.changes, "notify", old.Notify, next.Notify)
	r.cmp(&r.needRestart, "status.listen", old.Status.Listen, next.Status.Listen)
	r.cmp(&r.needRestart, "status.keepalived_compat", old.Status.KeepalivedCompat, next.Status.KeepalivedCompat)
	r.cmp(&r.changes, "status.dump_file", old.Status.DumpFile, next.Status.DumpFile)
	return r.changes, r.needRestart
}

type reloadDiff struct {
	changes, needRestart []string
}

// cmp appends "key: old -> new" to list when the values differ.
func (r *reloadDiff) cmp(list *[]string, key string, o, n any) {
	if reflect.DeepEqual(o, n) {
		return
	}
	*list = append(*list, fmt.Sprintf("%s: %s -> %s", key, show(o), show(n)))
}

// show renders a value for a change list, never a password.
func show(v any) string {
	switch x := v.(type) {
	case *Authentication:
		if x == nil {
			return "none"
		}
		return x.Type + " (password not shown)"
	case netip.Addr:
		if !x.IsValid() {
			return "none"
		}
		return x.String()
	case Notify, InstanceNotify:
		return fmt.Sprintf("%+v", x)
	case string:
		if x == "" {
			return `""`
		}
		return x
	case map[string]int:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s: %d", k, x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprintf("%v", v)
}

func (r *reloadDiff) instance(o, n *Instance) {
	p := fmt.Sprintf("vrrp_instances[%s].", n.Name)
	restart := func(key string, ov, nv any) { r.cmp(&r.needRestart, p+key, ov, nv) }
	live := func(key string, ov, nv any) { r.cmp(&r.changes, p+key, ov, nv) }

	restart("interface", o.Interface, n.Interface)
	restart("virtual_router_id", o.VRID, n.VRID)
	restart("version", o.Version, n.Version)
	restart("advert_int", o.AdvertInt, n.AdvertInt)
	if !reflect.DeepEqual(o.Authentication, n.Authentication) {
		// Compared whole (a changed password alone counts) but shown without the password.
		r.needRestart = append(r.needRestart, fmt.Sprintf("%sauthentication: %s -> %s", p, show(o.Authentication), show(n.Authentication)))
	}
	restart("checksum", o.Checksum, n.Checksum)
	restart("unicast_src_ip", o.UnicastSrcIP, n.UnicastSrcIP)
	restart("unicast_peer", o.UnicastPeers, n.UnicastPeers)
	restart("preempt", o.Preempt, n.Preempt)
	restart("preempt_delay", o.PreemptDelay, n.PreemptDelay)
	restart("fast_failover", o.FastFailover, n.FastFailover)

	live("state", o.State, n.State)
	live("priority", o.Priority, n.Priority)
	live("virtual_ipaddress", o.VIPs, n.VIPs)
	live("track", o.Track, n.Track)
	live("track_interface", o.TrackInterfaces, n.TrackInterfaces)
	live("dont_track_primary", o.DontTrackPrimary, n.DontTrackPrimary)
	live("garp_master_repeat", o.GARPMasterRepeat, n.GARPMasterRepeat)
	live("garp_master_delay", o.GARPMasterDelay, n.GARPMasterDelay)
	live("notify", o.Notify, n.Notify)
}

// diffByKey appends to changes what a reload does to a list whose entries are known by a key:
// "path[key]: added" and "path[key]: <changed>" in next's order, then "path[key]: <removed>" in
// old's.
func diffByKey[T any, K comparable](changes *[]string, path string, old, next []T, key func(T) K, changed, removed string) {
	before := make(map[K]T, len(old))
	for _, e := range old {
		before[key(e)] = e
	}
	after := make(map[K]bool, len(next))
	for _, e := range next {
		k := key(e)
		after[k] = true
		switch o, ok := before[k]; {
		case !ok:
			*changes = append(*changes, fmt.Sprintf("%s[%v]: added", path, k))
		case !reflect.DeepEqual(o, e):
			*changes = append(*changes, fmt.Sprintf("%s[%v]: %s", path, k, changed))
		}
	}
	for _, e := range old {
		if k := key(e); !after[k] {
			*changes = append(*changes, fmt.Sprintf("%s[%v]: %s", path, k, removed))
		}
	}
}
