#!/bin/sh
# Installs the Debian packages hapair's lab, tests and demo need, only those missing.
set -eu
pkgs="haproxy keepalived nftables iproute2 prometheus tcpdump curl procps psmisc iputils-ping systemd frr systemd-container debootstrap"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "hapair: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "hapair: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# No packaged daemon may start during the install (FRR's zebra would otherwise start routing in the
# machine's own namespace): policy-rc.d's 101 "action forbidden" is honoured by invoke-rc.d and
# deb-systemd-invoke alike. One already there is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts packaged daemons where systemd runs; hapair's lab runs its own copies.
for svc in haproxy keepalived prometheus frr; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	fi
done
