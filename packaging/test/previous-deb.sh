#!/usr/bin/env bash
# Builds the .deb of an earlier commit (default: the parent of HEAD) for the
# upgrade test, and prints its path: target/packaging-previous/sluice-previous.deb
#
#   packaging/test/previous-deb.sh [REV]
#
# The commit is checked out in a git worktree that shares this checkout's target
# directory (only the workspace's own crates are rebuilt). Both commits carry the
# same version, so the package is given a lower Debian revision
# (VERSION-0+previous.SHORTSHA) for the upgrade to be one. Exits 3 when the
# commit is not in this clone (a shallow clone).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
rev="${1:-HEAD~1}"
sha="$(git rev-parse --verify -q "$rev^{commit}")" || {
    echo "previous-deb: $rev is not in this clone (shallow?); no package to upgrade from" >&2
    exit 3
}
short="${sha:0:12}"
out="$root/target/packaging-previous"
tree="$root/target/previous-src"
mkdir -p "$out"
git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
git worktree prune
git worktree add --detach -q "$tree" "$sha"
trap 'git -C "$root" worktree remove --force "$tree" 2>/dev/null || true' EXIT
ln -s "$root/target" "$tree/target"
# The earlier commit's build script, on the earlier commit's sources. Its
# package lands where the current one will; move it away before that is built.
(cd "$tree" && bash packaging/build.sh deb) >&2
built="$(ls -1 "$root"/target/debian/sluice_*.deb | head -1)"
repack="$out/unpacked"
rm -rf "$repack"
dpkg-deb -R "$built" "$repack"
version="$(dpkg-deb -f "$built" Version)"
upstream="${version%-*}"
sed -i "s/^Version: .*/Version: $upstream-0+previous.$short/" "$repack/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -b "$repack" "$out/sluice-previous.deb" >/dev/null
rm -rf "$repack" "$built"
echo "previous-deb: $(dpkg-deb -f "$out/sluice-previous.deb" Version) from $rev ($short)" >&2
echo "$out/sluice-previous.deb"
