#!/usr/bin/env bash
# Everything packaging/ and ansible/ promise, done for real. .ci/test-all runs
# it (as root) after the suite; it takes about 10 minutes, most of it building
# the packages of this commit and of the one before it.
#
#   packaging/test/all.sh
#
# 1. ansible-lint (production profile) on ansible/;
# 2. the .deb of the previous commit (packaging/test/previous-deb.sh), then
#    this commit's .deb and .rpm (packaging/build.sh);
# 3. packaging/test/check-packages.sh: lintian, rpmlint, the same unit in both,
#    the .rpm installed with rpm -i in a container;
# 4. packaging/test/nspawn-cluster.sh: three containers, site.yml with the
#    previous package, rolling_restart.yml and upgrade.yml to this one under a
#    producer, Prometheus.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "packaging/test/all.sh needs root (systemd-nspawn, a bridge)" >&2; exit 2; }
step() { printf '\n==> packaging: %s (%s)\n' "$*" "$(date +%T)"; }

step "ansible venv and ansible-lint --profile production"
bash packaging/test/setup-ansible.sh
(cd ansible && PATH="$PWD/../target/ansible-venv/bin:$PATH" ansible-lint --offline -q --profile production)

step "the previous commit's .deb"
rc=0
previous="$(bash packaging/test/previous-deb.sh)" || rc=$?
if [ $rc -eq 3 ]; then
    echo "*** NOT TESTED: the upgrade from the previous commit (it is not in this clone) ***"
    previous=""
elif [ $rc -ne 0 ]; then
    exit $rc
fi

step "this commit's .deb and .rpm, each built twice (reproducible)"
bash packaging/build.sh deb
bash packaging/build.sh rpm
deb="$(ls -1 target/debian/sluice_*.deb)"
rpm="$(ls -1 target/generate-rpm/sluice-*.rpm)"
first="$(mktemp -d)"
cp "$deb" "$rpm" "$first/"
bash packaging/build.sh deb >/dev/null 2>&1
bash packaging/build.sh rpm >/dev/null 2>&1
for p in "$deb" "$rpm"; do
    cmp "$first/$(basename "$p")" "$p" || { echo "FAIL: $p differs between two builds" >&2; exit 1; }
    echo "$(basename "$p"): the same bytes from two builds ($(sha256sum <"$p" | cut -c1-16)...)"
done
rm -rf "$first"

step "check-packages.sh"
bash packaging/test/check-packages.sh "$deb" "$rpm"

step "nspawn-cluster.sh"
bash packaging/test/nspawn-cluster.sh "$deb" ${previous:+"$previous"}
