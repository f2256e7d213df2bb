#!/usr/bin/env bash
# The packages and playbooks for real: three Debian 12 containers booting real
# systemd (systemd-nspawn, each on its own address on a bridge), driven by the
# shipped Ansible playbooks over the nsenter connection. Run as root:
#
#   packaging/test/nspawn-cluster.sh CURRENT.deb [PREVIOUS.deb]
#
# 1. site.yml installs PREVIOUS.deb (or CURRENT.deb when not given) on all three
#    and forms the cluster; each node must be active and ready.
# 2. rolling_restart.yml restarts every node, one at a time, while a producer
#    (acks=all, idempotent, RF=3 topic) runs; it must see no failed delivery and
#    every acknowledged record must be read back.
# 3. With PREVIOUS.deb: upgrade.yml installs CURRENT.deb from an apt repository
#    (served from the host) one node at a time, under the same producer and the
#    same check.
# 4. Every node runs CURRENT.deb's version, is active, is ready; the installed
#    unit rates <= 3.0 in systemd-analyze security; Prometheus (Debian's) scrapes
#    all three with the shipped scrape config (up == 1) and loads the shipped
#    alert rules.
#
# Needs: target/py-venv (ops/tests/python/setup-venv.sh) and target/ansible-venv
# (packaging/test/setup-ansible.sh). The root filesystem is made once with
# debootstrap and cached in /var/cache/sluice-nspawn. SLUICE_KEEP=1 keeps the
# containers' directory for a look after a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

usage() { echo "usage: packaging/test/nspawn-cluster.sh CURRENT.deb [PREVIOUS.deb]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
current="$(realpath "$1")"
previous="${2:+$(realpath "$2")}"
for f in "$current" ${previous:+"$previous"}; do
    [ -f "$f" ] || { echo "no such package: $f" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (systemd-nspawn, debootstrap, a bridge)" >&2; exit 2; }
python="$root/target/py-venv/bin/python"
ansible="$root/target/ansible-venv/bin"
[ -x "$python" ] || { echo "missing $python: run ops/tests/python/setup-venv.sh" >&2; exit 2; }
[ -x "$ansible/ansible-playbook" ] || { echo "missing $ansible: run packaging/test/setup-ansible.sh" >&2; exit 2; }

log() { printf '\n=== %s: %s\n' "$(date +%T)" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v prometheus >/dev/null || need+=(prometheus)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# $rootfs, boot_container and stop_container.
. packaging/test/containers.sh

bridge=sluice-br0
net=10.213.77
nodes=(1 2 3)
work="$(mktemp -d /var/tmp/sluice-cluster.XXXXXX)"
declare -A nspawn_pid leader
prometheus_pid=""
producer_pid=""
http_pid=""

stop_all() {
    [ -n "$producer_pid" ] && kill "$producer_pid" 2>/dev/null
    [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null
    [ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null
    # All three power off at once; then each is waited for.
    for n in "${nodes[@]}"; do
        [ -n "${nspawn_pid[$n]:-}" ] && kill "${nspawn_pid[$n]}" 2>/dev/null
    done
    for n in "${nodes[@]}"; do
        [ -n "${nspawn_pid[$n]:-}" ] && stop_container "sluice-n$n" "${nspawn_pid[$n]}"
    done
    wait 2>/dev/null
    ip link del "$bridge" 2>/dev/null
    true
}
on_exit() {
    local rc=$?
    set +e
    if [ $rc -ne 0 ]; then
        for n in "${nodes[@]}"; do
            [ -n "${leader[$n]:-}" ] || continue
            echo "--- node $n: journalctl -u sluice (last 40 lines)" >&2
            nsenter -t "${leader[$n]}" -a journalctl -u sluice --no-pager -o short-precise -n 40 >&2
        done
    fi
    stop_all
    if [ "${SLUICE_KEEP:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
    exit $rc
}
trap on_exit EXIT

log "bridge $bridge ($net.1/24) and three containers"
ip link del "$bridge" 2>/dev/null || true
ip link add "$bridge" type bridge
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up
for n in "${nodes[@]}"; do
    mkdir -p "$work/n$n"
    cp -a "$rootfs/." "$work/n$n/"
    echo "sluice-n$n" >"$work/n$n/etc/hostname"
    # The containers have no route out: no Debian mirror, only the test's own
    # repository (below).
    rm -f "$work/n$n/etc/apt/sources.list"
    boot_container "sluice-n$n" "$work/n$n" "$work/n$n.console" --network-bridge="$bridge"
    nspawn_pid[$n]=$booted_pid
    leader[$n]=$booted_leader
    # Its end of the bridge gets the node's address.
    nsenter -t "${leader[$n]}" -n ip addr add "$net.1$n/24" dev host0
    nsenter -t "${leader[$n]}" -n ip link set host0 up
done

# The inventory: the example's shape, with these containers for hosts.
inventory="$work/inventory.yml"
write_inventory() {
    local package="$1"
    {
        echo "all:"
        echo "  children:"
        echo "    sluice:"
        echo "      vars:"
        echo "        ansible_connection: community.docker.nsenter"
        echo "        ansible_become: false"
        echo "        ansible_python_interpreter: /usr/bin/python3"
        echo "        sluice_package_file: \"$package\""
        echo "      hosts:"
        for n in "${nodes[@]}"; do
            echo "        sluice-n$n:"
            echo "          ansible_nsenter_pid: ${leader[$n]}"
            echo "          sluice_address: $net.1$n"
            echo "          sluice_node_id: $n"
            echo "          sluice_rack: rack-$n"
        done
    } >"$inventory"
}
playbook() {
    log "ansible-playbook $*"
    (cd "$root/ansible" && ANSIBLE_FORCE_COLOR=0 "$ansible/ansible-playbook" -i "$inventory" "$@")
}
inside() { local n="$1"; shift; nsenter -t "${leader[$n]}" -a "$@"; }
bootstrap="$net.11:9092,$net.12:9092,$net.13:9092"

check_nodes() {
    local want_version="$1" n state version code
    for n in "${nodes[@]}"; do
        state="$(inside "$n" systemctl is-active sluice || true)"
        version="$(inside "$n" dpkg-query -W -f '${Version}' sluice)"
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://$net.1$n:9644/v1/health/ready")"
        # After an upgrade the running process is the new binary (restarted), not
        # the old one's deleted file.
        exe="$(inside "$n" sh -c 'readlink /proc/$(systemctl show -p MainPID --value sluice)/exe')"
        echo "node $n: sluice $version, systemctl is-active: $state, /v1/health/ready: $code, running $exe"
        [ "$exe" = /usr/bin/sluice ] || fail "node $n runs '$exe'"
        [ "$state" = active ] || fail "node $n: sluice is $state"
        [ "$code" = 200 ] || fail "node $n: /v1/health/ready answered $code"
        [ "$version" = "$want_version" ] || fail "node $n runs $version, not $want_version"
    done
}
deb_version() { dpkg-deb -f "$1" Version; }

# While a playbook runs, a producer writes; afterwards everything it was told
# was written must be there.
states=()
with_producer() {
    local name="$1"; shift
    local state="$work/acked-$name.jsonl" stop="$work/stop-$name"
    states+=("$state")
    "$python" "$root/packaging/test/producer.py" produce "$bootstrap" rolling "$state" "$stop" \
        >"$work/producer-$name.log" 2>&1 &
    producer_pid=$!
    # Let it get going (the topic made, records acknowledged) before the playbook.
    for _ in $(seq 1 300); do [ -s "$state" ] && break; sleep 0.1; done
    [ -s "$state" ] || { cat "$work/producer-$name.log" >&2; fail "the producer acknowledged nothing"; }
    playbook "$@"
    sleep 2
    touch "$stop"
    local rc=0
    wait "$producer_pid" || rc=$?
    producer_pid=""
    cat "$work/producer-$name.log"
    [ $rc -eq 0 ] || fail "the producer saw errors during $*"
    "$python" "$root/packaging/test/producer.py" check "$bootstrap" rolling "${states[@]}" ||
        fail "acknowledged records are missing after $*"
}

first="${previous:-$current}"
write_inventory "$first"
playbook site.yml
check_nodes "$(deb_version "$first")"

with_producer restart rolling_restart.yml

if [ -n "$previous" ]; then
    # The upgrade comes from a package repository, as operators get it: a flat
    # apt repository holding CURRENT.deb, served over HTTP from the bridge.
    repo="$work/repo"
    mkdir -p "$repo"
    cp "$current" "$repo/"
    (cd "$repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
    "$python" -m http.server --bind "$net.1" --directory "$repo" 8000 >"$work/http.log" 2>&1 &
    http_pid=$!
    write_inventory ""
    with_producer upgrade upgrade.yml \
        -e sluice_repository_url="http://$net.1:8000/" -e sluice_package_state=latest
fi
check_nodes "$(deb_version "$current")"

log "systemd-analyze security on the installed unit"
for n in "${nodes[@]}"; do
    rating="$(inside "$n" systemd-analyze security sluice --no-pager |
        sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p')"
    echo "node $n: exposure $rating"
    awk -v r="$rating" 'BEGIN { exit !(r != "" && r <= 3.0) }' || fail "node $n: exposure '$rating' > 3.0"
done

log "Prometheus with the shipped scrape config and alert rules"
prom="$work/prometheus"
mkdir -p "$prom"
cp "$root/ansible/prometheus/prometheus.yml" "$root/ansible/prometheus/sluice-alerts.yml" "$prom/"
printf -- '- targets:\n' >"$prom/sluice-targets.yml"
for n in "${nodes[@]}"; do printf -- '    - %s:9644\n' "$net.1$n" >>"$prom/sluice-targets.yml"; done
# A scrape every 15 s (the shipped interval): the first comes within that.
prometheus --config.file="$prom/prometheus.yml" --storage.tsdb.path="$prom/data" \
    --web.listen-address="$net.1:9090" >"$prom/log" 2>&1 &
prometheus_pid=$!
up=""
for _ in $(seq 1 60); do
    up="$(curl -s "http://$net.1:9090/api/v1/query?query=up%7Bjob%3D%22sluice%22%7D%3D%3D1" |
        "$python" -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))' 2>/dev/null || true)"
    [ "$up" = 3 ] && break
    sleep 1
done
echo "Prometheus: $up of 3 targets up"
[ "$up" = 3 ] || { cat "$prom/log" >&2; fail "Prometheus sees $up of 3 nodes up"; }
# Rules are "unknown" until their group's first evaluation (15 s).
want_rules="$(grep -c '^ *- alert:' "$prom/sluice-alerts.yml")"
for _ in $(seq 1 40); do
    rules="$(curl -s "http://$net.1:9090/api/v1/rules" | "$python" -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
print(len(rules), sum(r["health"] == "ok" for r in rules))' 2>/dev/null || true)"
    [ "$rules" = "$want_rules $want_rules" ] && break
    sleep 1
done
echo "Prometheus: alert rules loaded and evaluated without error: $rules (of $want_rules)"
[ "$rules" = "$want_rules $want_rules" ] || fail "alert rules: '$rules' (loaded, healthy) of $want_rules"

log "removing the package from node 3: the service stops, the data stays"
inside 3 env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q sluice >/dev/null
state="$(inside 3 systemctl is-active sluice || true)"
echo "after apt-get remove: sluice is $state"
[ "$state" != active ] || fail "apt-get remove left the service running"
inside 3 dpkg --purge sluice >/dev/null
inside 3 test -d /var/lib/sluice/metadata || fail "the package's removal took /var/lib/sluice"
[ -n "$(inside 3 ls /var/lib/sluice | grep -x 'rolling-[0-9]*' || true)" ] ||
    fail "no partition directory left in /var/lib/sluice after purge"
echo "after dpkg --purge: /var/lib/sluice kept: $(inside 3 ls /var/lib/sluice | grep -c .) entries," \
    "$(inside 3 ls /var/lib/sluice | grep -v '^__consumer_offsets' | tr '\n' ' ')"

log "PASS: three nodes under real systemd, installed, restarted${previous:+ and upgraded} by the playbooks; nothing acknowledged was lost"
