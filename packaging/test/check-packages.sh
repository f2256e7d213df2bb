#!/usr/bin/env bash
# Checks the two packages side by side, then installs the .rpm in a Debian 12
# container booting real systemd. Run as root:
#
#   packaging/test/check-packages.sh PACKAGE.deb PACKAGE.rpm
#
# - lintian on the .deb and rpmlint on the .rpm (packaging/rpm/rpmlint.toml):
#   no error, no warning left unjustified;
# - both carry the same unit, sysusers.d and sysctl.d files as packaging/;
# - the .rpm's scriptlets are there and its configuration is %config(noreplace);
# - `rpm -i --nodeps` inside the container: the %pre makes the user, the service
#   starts and serves as it, `rpm -e` stops it and keeps /var/lib/sluice.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
[ $# -eq 2 ] || { echo "usage: packaging/test/check-packages.sh PACKAGE.deb PACKAGE.rpm" >&2; exit 2; }
deb="$(realpath "$1")"
rpm="$(realpath "$2")"
[ -f "$deb" ] && [ -f "$rpm" ] || { echo "no such package: $deb or $rpm" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (systemd-nspawn)" >&2; exit 2; }

need=()
command -v lintian >/dev/null || need+=(lintian)
command -v rpmlint >/dev/null || need+=(rpmlint)
command -v rpm2cpio >/dev/null || need+=(rpm)
command -v cpio >/dev/null || need+=(cpio)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
work="$(mktemp -d /var/tmp/sluice-packages.XXXXXX)"
nspawn_pid=""
cleanup() {
    set +e
    [ -n "$nspawn_pid" ] && stop_container sluice-rpm "$nspawn_pid"
    rm -rf "$work"
}
trap cleanup EXIT

echo "=== lintian $deb"
lintian --fail-on error,warning "$deb"
echo "=== rpmlint $rpm"
rpmlint -c packaging/rpm/rpmlint.toml "$rpm"

echo "=== the same files from packaging/ in both"
mkdir "$work/deb" "$work/rpm"
dpkg-deb -x "$deb" "$work/deb"
# Debian 12's rpm2cpio exits 1 after writing a zstd payload whole; the digests
# below are what says the extraction is complete.
rpm2cpio "$rpm" >"$work/payload.cpio" || true
(cd "$work/rpm" && cpio -idm --quiet <"$work/payload.cpio")
rpm -qp --dump "$rpm" | while read -r path _ _ digest _; do
    [ "$(sha256sum <"$work/rpm$path" | cut -d' ' -f1)" = "$digest" ] ||
        fail "$path from the .rpm's payload does not match its header's digest"
done
for pair in \
    systemd/sluice.service:usr/lib/systemd/system/sluice.service \
    systemd/sluice.sysusers:usr/lib/sysusers.d/sluice.conf \
    systemd/sluice.sysctl:usr/lib/sysctl.d/60-sluice.conf; do
    src="packaging/${pair%%:*}"
    dest="${pair#*:}"
    cmp "$src" "$work/deb/$dest" || fail "the .deb's /$dest is not $src"
    cmp "$src" "$work/rpm/$dest" || fail "the .rpm's /$dest is not $src"
    echo "/$dest: $src in both"
done
cmp "$work/deb/usr/bin/sluice" "$work/rpm/usr/bin/sluice" || fail "the two packages' binaries differ"
cmp "$work/deb/etc/sluice/sluice.toml" "$work/rpm/etc/sluice/sluice.toml" ||
    fail "the two packages' configurations differ"
echo "/usr/bin/sluice and /etc/sluice/sluice.toml: the same in both"

echo "=== the .rpm's scriptlets and configuration file"
scripts="$(rpm -qp --scripts "$rpm")"
for want in "preinstall scriptlet" "systemd-sysusers" "postinstall scriptlet" "preset sluice.service" \
    "preuninstall scriptlet" "disable --now sluice.service" "postuninstall scriptlet" "try-restart sluice.service"; do
    grep -qF "$want" <<<"$scripts" || fail "rpm -qp --scripts has no '$want':
$scripts"
done
[ "$(rpm -qp --configfiles "$rpm")" = /etc/sluice/sluice.toml ] ||
    fail "config files: $(rpm -qp --configfiles "$rpm")"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | grep -qx 'cn /etc/sluice/sluice.toml' ||
    fail "/etc/sluice/sluice.toml is not %config(noreplace)"
echo "pre, post, preun, postun present; /etc/sluice/sluice.toml is %config(noreplace)"

echo "=== rpm -i --nodeps in a container booting systemd"
. packaging/test/containers.sh
mkdir "$work/c"
cp -a "$rootfs/." "$work/c/"
cp "$rpm" "$work/c/root/sluice.rpm"
boot_container sluice-rpm "$work/c" "$work/console" --private-network
nspawn_pid=$booted_pid
leader=$booted_leader
inside() { nsenter -t "$leader" -a "$@"; }
inside rpm -i --nodeps /root/sluice.rpm
inside id sluice
[ "$(inside stat -c '%U:%G %a' /etc/sluice/sluice.toml)" = "root:sluice 640" ] ||
    fail "/etc/sluice/sluice.toml is $(inside stat -c '%U:%G %a' /etc/sluice/sluice.toml)"
inside systemctl start sluice
code=""
for _ in $(seq 1 60); do
    code="$(nsenter -t "$leader" -n curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:9644/v1/health/ready || true)"
    [ "$code" = 200 ] && break
    sleep 0.5
done
[ "$code" = 200 ] || { inside journalctl -u sluice --no-pager -n 40 >&2; fail "/v1/health/ready answered '$code'"; }
user="$(inside ps -o user= -C sluice | head -1)"
echo "installed from the .rpm: active, ready, running as '$user'"
[ "$user" = sluice ] || fail "the service runs as '$user'"
inside test -d /var/lib/sluice/metadata || fail "no /var/lib/sluice/metadata"
inside rpm -e sluice
state="$(inside systemctl is-active sluice || true)"
echo "after rpm -e: sluice is $state; /var/lib/sluice: $(inside ls /var/lib/sluice | tr '\n' ' ')"
[ "$state" != active ] || fail "rpm -e left the service running"
inside test -d /var/lib/sluice/metadata || fail "rpm -e removed /var/lib/sluice"
echo "PASS: lintian and rpmlint clean, the same unit in both, the .rpm installs, serves and erases"
