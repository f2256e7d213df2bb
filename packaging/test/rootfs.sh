# Sourced by the packaging tests: the Debian 12 root filesystem their
# systemd-nspawn containers boot, made once with debootstrap and cached.
# Sets $rootfs. systemd boots it; python3 and python3-apt are Ansible's; rpm
# installs the .rpm inside one.
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
