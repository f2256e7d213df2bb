#!/usr/bin/env bash
# Installs a sluice .deb in a Debian 12 container that boots real systemd
# (systemd-nspawn) and checks the service there: active through Type=notify,
# ready on /v1/health/ready, serving kcat under the unit's seccomp filter, and
# rated OK or better by systemd-analyze security. Run as root:
#   packaging/test/nspawn-one.sh target/debian/sluice_0.1.0-1_amd64.deb
# The root filesystem is made once with debootstrap and cached in
# /var/cache/sluice-nspawn. The container shares the host's network: nothing
# may listen on 127.0.0.1:9092 or :9644.
set -euo pipefail

deb="${1:?usage: packaging/test/nspawn-one.sh PACKAGE.deb}"
[ -f "$deb" ] || { echo "no such package: $deb" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (systemd-nspawn, debootstrap)" >&2; exit 2; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v kcat >/dev/null || need+=(kcat)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
for port in 9092 9644; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "something listens on 127.0.0.1:$port; stop it first" >&2
        exit 2
    fi
done

cache=/var/cache/sluice-nspawn/rootfs
if [ ! -x "$cache/lib/systemd/systemd" ]; then
    rm -rf "$cache.tmp"
    mkdir -p "$(dirname "$cache")"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libsystemd0,procps \
        bookworm "$cache.tmp" http://deb.debian.org/debian
    mv "$cache.tmp" "$cache"
fi

dir="$(mktemp -d /var/tmp/sluice-nspawn.XXXXXX)"
nspawn_pid=""
cleanup() {
    if [ -n "$nspawn_pid" ]; then
        kill "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
cp -a "$cache/." "$dir/"
cp "$deb" "$dir/root/sluice.deb"
systemd-nspawn -q -D "$dir" --register=no --keep-unit dpkg -i /root/sluice.deb

systemd-nspawn -q -D "$dir" --register=no --keep-unit --boot --console=passive \
    >"$dir.log" 2>&1 &
nspawn_pid=$!

ready=""
for _ in $(seq 1 60); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:9644/v1/health/ready)" = 200 ]; then
        ready=yes
        break
    fi
    sleep 1
done
leader="$(pgrep -P "$nspawn_pid" | head -1)"
inside() { nsenter -t "$leader" -a "$@"; }
if [ -z "$ready" ]; then
    echo "FAIL: /v1/health/ready never answered 200" >&2
    inside journalctl -u sluice --no-pager -o cat >&2 || cat "$dir.log" >&2
    exit 1
fi

state="$(inside systemctl is-active sluice || true)"
echo "systemctl is-active sluice: $state"
[ "$state" = active ] || { echo "FAIL: sluice is $state" >&2; exit 1; }

printf 'one\ntwo\nthree\n' | kcat -b 127.0.0.1:9092 -P -t nspawn-check
got="$(kcat -b 127.0.0.1:9092 -C -t nspawn-check -o beginning -e -q | tr '\n' ' ')"
echo "consumed: $got"
[ "$got" = "one two three " ] || { echo "FAIL: consumed '$got'" >&2; exit 1; }

rating="$(inside systemd-analyze security sluice --no-pager | sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p')"
echo "systemd-analyze security sluice: $rating"
awk -v r="$rating" 'BEGIN { exit !(r != "" && r <= 3.0) }' ||
    { echo "FAIL: exposure $rating > 3.0" >&2; exit 1; }
rm -f "$dir.log"
echo "PASS: the package runs under real systemd"
