#!/usr/bin/env bash
# Builds the sluice package from this checkout: packaging/build.sh deb|rpm
# The package lands in target/debian/ (deb) or target/generate-rpm/ (rpm). The
# version is the workspace's (Cargo.toml). Installs cargo-deb or
# cargo-generate-rpm with `cargo install --locked` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-}"
case "$kind" in
    deb | rpm) ;;
    *)
        echo "usage: packaging/build.sh deb|rpm" >&2
        exit 2
        ;;
esac

cargo build --release --locked -p sluice
# Reproducible: file times in the package from the last commit, not from the
# build (set after the build: some build scripts rebuild when it changes).
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
export SOURCE_DATE_EPOCH
bin=target/release/sluice

# Files made from the binary itself: the commented configuration (the defaults,
# with the data directory the unit's StateDirectory= provides), the manual page
# and shell completions.
out=target/packaging
rm -rf "$out"
mkdir -p "$out"
"$bin" config defaults |
    sed 's|^data_dir = .*|data_dir = "/var/lib/sluice"|' >"$out/sluice.toml"
grep -qx 'data_dir = "/var/lib/sluice"' "$out/sluice.toml" || {
    echo "build.sh: no data_dir line in 'sluice config defaults'" >&2
    exit 1
}
"$bin" generate man | gzip -9n >"$out/sluice.1.gz"
gzip -9n <packaging/CHANGELOG.md >"$out/changelog.gz"
# The binary is built with debug info (profile.release); both packages ship it
# stripped.
strip --strip-unneeded -o "$out/sluice" "$bin"
# The RPM's %pre makes the user before the files are laid down (as Fedora's
# %sysusers_create_compat does), from the same sysusers.d file.
{
    echo "systemd-sysusers --replace=/usr/lib/sysusers.d/sluice.conf - <<'SYSUSERS'"
    grep -v '^#' packaging/systemd/sluice.sysusers
    echo "SYSUSERS"
} >"$out/rpm-pre.sh"
"$bin" generate completions bash >"$out/sluice.bash"
"$bin" generate completions zsh >"$out/_sluice"
"$bin" generate completions fish >"$out/sluice.fish"

case "$kind" in
    deb)
        command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
        cargo deb -p sluice --no-build
        ls -1 target/debian/sluice_*.deb
        ;;
    rpm)
        command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm
        cargo generate-rpm -p ops
        ls -1 target/generate-rpm/sluice-*.rpm
        ;;
esac
