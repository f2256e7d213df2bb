#!/usr/bin/env bash
# Creates target/ansible-venv with ansible and ansible-lint from PyPI
# (ansible-requirements.txt beside this script). Does nothing when the venv
# already matches the requirements.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/ansible-venv"
requirements="$here/ansible-requirements.txt"
stamp="$venv/.sluice-requirements"
want="$(cat "$requirements"; python3 -c 'import sys; print(sys.version)')"
if [ -x "$venv/bin/ansible-playbook" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-ansible: $venv is up to date"
    exit 0
fi
rm -rf "$venv"
mkdir -p "$root/target"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
printf '%s' "$want" >"$stamp"
echo "setup-ansible: $venv ready"
