#!/bin/sh
# capture.sh records real keepalived adverts as the codec's test vectors (see README.md).
# Run as root from anywhere: sh vrrp/testdata/capture.sh [OUTDIR]
# Everything happens inside a throw-away network namespace holding one veth pair;
# the machine's own namespace is never touched, and the namespace is removed on every exit.
set -eu

out=$(cd "${1:-$(dirname "$0")/keepalived}" && pwd)
ns="kacap-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
tmp=$(mktemp -d /tmp/kacap.XXXXXX)
kapid=""

cleanup() {
	if [ -n "$kapid" ]; then kill "$kapid" 2>/dev/null || true; fi
	ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

inns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
inns ip link set lo up
# A veth pair with both ends in the namespace (this kernel may have no dummy driver).
# The unicast peer 10.99.0.12 does not exist: a static neighbour entry lets adverts go out.
inns ip link add d0 type veth peer name d1
inns ip link set d1 up
inns ip link set d0 up
inns ip addr add 10.99.0.11/24 dev d0
inns ip neigh add 10.99.0.12 lladdr 02:00:0a:63:00:0c dev d0
inns ip -6 addr add fd00::11/64 dev d0 nodad
# Wait for the link-local address that VRRPv3 over IPv6 sends from.
i=0
until inns ip -6 addr show dev d0 scope link | grep -q fe80; do
	i=$((i + 1)); [ "$i" -lt 50 ] || { echo "no IPv6 link-local address on d0" >&2; exit 1; }
	sleep 0.1
done

# start_capture NAME COUNT FILTER: tcpdump in the namespace, returns when it listens.
start_capture() {
	rm -f "$tmp/tcpdump.err"
	inns timeout 30 tcpdump -i d0 -U -n -c "$2" -w "$out/$1.pcap" "$3" 2>"$tmp/tcpdump.err" &
	tdpid=$!
	i=0
	until grep -q "listening on" "$tmp/tcpdump.err" 2>/dev/null; do
		i=$((i + 1)); [ "$i" -lt 100 ] || { cat "$tmp/tcpdump.err" >&2; exit 1; }
		sleep 0.05
	done
}

wait_capture() {
	wait "$tdpid" || { echo "capture $1 failed:" >&2; cat "$tmp/tcpdump.err" "$tmp/${1%-release}.log" >&2; exit 1; }
}

start_keepalived() {
	# Its own session: keepalived's shutdown must not signal the capture beside it.
	setsid ip netns exec "$ns" keepalived -n -l -D -P -f "$tmp/$1.conf" -p "$tmp/$1.pid" -r "$tmp/$1.vrrp.pid" \
		-c "$tmp/$1.checkers.pid" >"$tmp/$1.log" 2>&1 &
	kapid=$!
}

stop_keepalived() {
	kill -TERM "$kapid" 2>/dev/null || true
	wait "$kapid" 2>/dev/null || true
	kapid=""
}

# scenario NAME COUNT GLOBAL_DEFS INSTANCE_BODY [RELEASE_FILTER]
# captures COUNT adverts, then, with RELEASE_FILTER, the priority-0 advert of a graceful stop.
scenario() {
	cat >"$tmp/$1.conf" <<CONF
global_defs {
	router_id kacap
$3
}
vrrp_instance VI_$1 {
	interface d0
	state MASTER
$4
}
CONF
	# tcpdump's "vrrp" matches IPv4 only.
	start_capture "$1" "$2" "ip proto 112 or ip6 proto 112"
	start_keepalived "$1"
	wait_capture "$1"
	if [ -n "${5:-}" ]; then
		start_capture "$1-release" 1 "$5"
		stop_keepalived
		wait_capture "$1-release"
	else
		stop_keepalived
	fi
	cp "$tmp/$1.conf" "$out/$1.conf"
	echo "captured $1" >&2
}

scenario v2-pass 3 "" "
	virtual_router_id 51
	version 2
	priority 110
	advert_int 1
	authentication {
		auth_type PASS
		auth_pass 1a2b3c4d
	}
	virtual_ipaddress {
		10.0.0.10/24
	}" "vrrp and ip[22] = 0"

scenario v3-fast 3 "" "
	virtual_router_id 52
	version 3
	priority 100
	advert_int 0.1
	virtual_ipaddress {
		10.0.0.20/24
	}" "vrrp and ip[22] = 0"

scenario v3-ipv6 3 "" "
	virtual_router_id 53
	version 3
	priority 100
	advert_int 1
	virtual_ipaddress {
		fd00::10/64
	}" "ip6 proto 112 and ip6[42] = 0"

# keepalived 2.2.7 does not know v3_checksum_as_v2 (later releases do): its log says so.
scenario v3-checksum-as-v2 3 "	v3_checksum_as_v2" "
	virtual_router_id 54
	version 3
	priority 100
	advert_int 0.1
	virtual_ipaddress {
		10.0.0.40/24
	}"
grep -i -m1 "v3_checksum_as_v2" "$tmp/v3-checksum-as-v2.log" >"$out/v3-checksum-as-v2.log" || true

scenario v2-unicast 3 "" "
	virtual_router_id 55
	version 2
	priority 110
	advert_int 1
	unicast_src_ip 10.99.0.11
	unicast_peer {
		10.99.0.12
	}
	authentication {
		auth_type PASS
		auth_pass secret
	}
	virtual_ipaddress {
		10.0.0.50/24
	}"

scenario v3-unicast 3 "" "
	virtual_router_id 56
	version 3
	priority 120
	advert_int 0.5
	unicast_src_ip 10.99.0.11
	unicast_peer {
		10.99.0.12
	}
	virtual_ipaddress {
		10.0.0.60/24
		10.0.0.61/24
	}"

# The checksum of keepalived up to 1.3.6: 224.0.0.18 as the pseudo-header destination.
scenario v3-unicast-old-checksum 3 "" "
	virtual_router_id 57
	version 3
	priority 120
	advert_int 1
	unicast_src_ip 10.99.0.11
	unicast_peer {
		10.99.0.12
	}
	old_unicast_checksum
	virtual_ipaddress {
		10.0.0.70/24
	}"
