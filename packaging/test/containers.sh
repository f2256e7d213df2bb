# Sourced by the packaging tests: Debian 12 containers booting systemd with
# systemd-nspawn.
#
# $rootfs: the root filesystem every container is copied from, made once with
# debootstrap and cached. systemd boots it; python3 and python3-apt are
# Ansible's; rpm installs the .rpm inside one.
rootfs=/var/cache/sluice-nspawn/bookworm-v3
if [ ! -x "$rootfs/usr/bin/rpm" ]; then
    echo "debootstrap into $rootfs (once; about a minute)"
    rm -rf "$rootfs.tmp"
    mkdir -p "$(dirname "$rootfs")"
    if ! debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,libsystemd0,procps,python3,python3-apt,rpm \
        bookworm "$rootfs.tmp" http://deb.debian.org/debian >"$rootfs.log" 2>&1; then
        tail -40 "$rootfs.log" >&2
        echo "debootstrap failed; its log: $rootfs.log" >&2
        exit 1
    fi
    mv "$rootfs.tmp" "$rootfs"
fi

# The cgroup directories of container NAME, in every hierarchy this host has.
container_cgroups() {
    local dir
    for dir in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
        [ -f "$dir/cgroup.procs" ] || continue
        echo "$dir/sluice-test/$1"
        # A pure cgroup v2 host has one hierarchy.
        [ "$dir" = /sys/fs/cgroup ] && break
    done
}

# boot_container NAME DIR CONSOLE [NSPAWN-ARGS...]: boots the tree DIR, its
# console to the file CONSOLE, and waits until its systemd runs. Sets
# booted_pid (systemd-nspawn) and booted_leader (the container's init, for
# nsenter). Each container gets its own cgroup: with --keep-unit nspawn runs it
# in the caller's, and two systemds must not share one.
boot_container() {
    local name="$1" dir="$2" console="$3" state="" cg
    shift 3
    (
        for cg in $(container_cgroups "$name"); do
            mkdir -p "$cg" && echo $BASHPID >"$cg/cgroup.procs" ||
                echo "warning: could not move into $cg" >&2
        done
        exec systemd-nspawn -q -D "$dir" --machine="$name" --register=no --keep-unit \
            --boot --console=passive "$@"
    ) >"$console" 2>&1 &
    booted_pid=$!
    booted_leader=""
    for _ in $(seq 1 100); do
        booted_leader="$(pgrep -P "$booted_pid" | head -1 || true)"
        [ -n "$booted_leader" ] && break
        sleep 0.1
    done
    if [ -z "$booted_leader" ]; then
        cat "$console" >&2
        echo "FAIL: container $name did not start" >&2
        exit 1
    fi
    for _ in $(seq 1 100); do
        state="$(nsenter -t "$booted_leader" -a systemctl is-system-running 2>/dev/null || true)"
        case "$state" in running | degraded) break ;; esac
        sleep 0.2
    done
    echo "container $name: systemd $state, init pid $booted_leader"
}

# stop_container NAME PID: SIGTERM (nspawn powers the container off), SIGKILL
# after 10 s, then its cgroups go (with what the container's systemd made in
# them).
stop_container() {
    local name="$1" pid="$2" cg
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    for cg in $(container_cgroups "$name"); do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        rmdir "$(dirname "$cg")" 2>/dev/null
    done
    true
}
