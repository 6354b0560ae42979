#!/bin/sh
# build-deb.sh BIN VERSION [OUTDIR]
#
# Builds OUTDIR/hapair_<debian version>_<arch>.deb (OUTDIR default: dist) from the
# hapair binary BIN and the files under deploy/, with nothing but dpkg-deb: no
# download, no debhelper. Run from anywhere; paths are taken relative to the
# repository. `make deb` calls it as: sh deploy/package/build-deb.sh bin/hapair $(VERSION)
#
# VERSION is what `git describe` gives (v1.2.0, v1.2.0-3-gabc1234, abc1234-dirty, dev);
# it becomes a valid Debian version: leading "v" dropped, "-" turned into "+",
# "0~" put in front when it does not start with a digit.
#
# The package:
#   /usr/sbin/hapair
#   /lib/systemd/system/hapair.service     (neither enabled nor started on install:
#                                           it conflicts with haproxy and keepalived)
#   /etc/hapair/hapair.yaml                (conffile, mode 0600: it holds the VRRP
#                                           password; from deploy/examples/loglb01.yaml)
#   /usr/share/hapair/examples/*.yaml, grafana/*.json, prometheus/*.yml
#   /usr/share/doc/hapair/                 (README.md, docs/*.md, copyright)
set -eu

usage() { echo "usage: $0 BIN VERSION [OUTDIR]" >&2; exit 2; }
[ $# -ge 2 ] || usage
bin=$1
version=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
outdir=${3:-$repo/dist}

[ -f "$bin" ] && [ -x "$bin" ] || { echo "$0: $bin: not an executable file (make build)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "$0: dpkg-deb not found" >&2; exit 1; }

debversion=$(printf '%s' "$version" | sed -e 's/^v//' -e 's/-/+/g' -e 's/[^A-Za-z0-9.+~]/./g')
case $debversion in
[0-9]*) ;;
*) debversion="0~$debversion" ;;
esac
arch=${ARCH:-$(dpkg --print-architecture 2>/dev/null || go env GOARCH)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root

install -d -m 0755 "$root/DEBIAN" "$root/usr/sbin" "$root/lib/systemd/system" "$root/etc/hapair" \
	"$root/usr/share/hapair/examples" "$root/usr/share/hapair/grafana" "$root/usr/share/hapair/prometheus" \
	"$root/usr/share/doc/hapair"
install -m 0755 "$bin" "$root/usr/sbin/hapair"
install -m 0644 "$repo/deploy/systemd/hapair.service" "$root/lib/systemd/system/hapair.service"

# copy_glob DEST MODE FILE...: copies the files that exist (a glob that matched
# nothing stays a literal pattern and is skipped).
copy_glob() {
	dest=$1 mode=$2
	shift 2
	for f in "$@"; do
		[ -f "$f" ] && install -m "$mode" "$f" "$dest/"
	done
	return 0
}
copy_glob "$root/usr/share/hapair/examples" 0644 "$repo"/deploy/examples/*.yaml "$repo"/deploy/examples/*.yml \
	"$repo"/deploy/examples/*.cfg "$repo"/deploy/examples/*.conf
copy_glob "$root/usr/share/hapair/grafana" 0644 "$repo"/deploy/grafana/*.json
copy_glob "$root/usr/share/hapair/prometheus" 0644 "$repo"/deploy/prometheus/*.yml
copy_glob "$root/usr/share/doc/hapair" 0644 "$repo"/README.md "$repo"/docs/*.md

conffiles=""
if [ -f "$repo/deploy/examples/loglb01.yaml" ]; then
	install -m 0600 "$repo/deploy/examples/loglb01.yaml" "$root/etc/hapair/hapair.yaml"
	conffiles="/etc/hapair/hapair.yaml"
else
	echo "$0: warning: deploy/examples/loglb01.yaml missing, no /etc/hapair/hapair.yaml in the package" >&2
fi

cat >"$root/usr/share/doc/hapair/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hapair

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$root/usr/share/doc/hapair/copyright"

if [ -n "$conffiles" ]; then
	printf '%s\n' "$conffiles" >"$root/DEBIAN/conffiles"
fi

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
# Unquoted here-document for $debversion, $arch, $installed_size: no backquotes
# or other $ in its text, they would be run.
cat >"$root/DEBIAN/control" <<EOF
Package: hapair
Version: $debversion
Architecture: $arch
Maintainer: hapair maintainers <hapair@users.noreply.github.com>
Installed-Size: $installed_size
Depends: haproxy (>= 2.4), iproute2
Recommends: nftables
Suggests: prometheus
Section: net
Priority: optional
Homepage: https://github.com/hapair/hapair
Description: HAProxy supervision and VRRP failover in one service
 hapair replaces the haproxy and keepalived units on a load-balancer pair:
 it runs HAProxy as its own child, turns HAProxy's health into a VRRP
 priority, owns the virtual IPs with VRRP (v2 and v3, multicast and unicast,
 interoperable with keepalived) and exports Prometheus metrics for every
 failover.
 .
 The service is neither enabled nor started on installation: it conflicts
 with haproxy.service and keepalived.service. Edit /etc/hapair/hapair.yaml,
 run "hapair check", then "systemctl disable --now haproxy keepalived",
 "systemctl mask haproxy keepalived" and "systemctl enable --now hapair".
EOF

# Maintainer scripts: only tell systemd about the unit; starting hapair would
# stop HAProxy and keepalived on a production machine, so that is left to the
# operator. Purge removes what dpkg does not know of: /run/hapair (systemd's
# RuntimeDirectory, kept across stops: the drain, the state records) and the
# links of a `systemctl enable`, which would otherwise enable a reinstalled
# hapair again, against the package's word (neither enabled nor started).
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-active --quiet hapair.service; then
		# In place, not a restart: the running hapair re-executes the new binary in its own
		# process (same PID), keeps HAProxy and the VIPs and hands its VRRP state over. A new
		# binary that refuses the configuration leaves the old one running, and says so.
		if ! /usr/sbin/hapair upgrade --config /etc/hapair/hapair.yaml; then
			echo "hapair: hapair.service still runs the previous version (see above and journalctl -u hapair);" >&2
			echo "hapair: once mended: hapair upgrade, or systemctl restart hapair (the VIP moves to the peer)" >&2
		fi
	fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop hapair.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
	rm -f /etc/systemd/system/*.wants/hapair.service
	rm -rf /run/hapair
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

# md5sums covers what dpkg --verify checks; conffiles have their sums in dpkg's status.
(cd "$root" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -exec md5sum {} + |
	sed 's|  \./|  |' | LC_ALL=C sort -k2) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$outdir"
deb="$outdir/hapair_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
