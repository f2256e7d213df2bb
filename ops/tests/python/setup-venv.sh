#!/usr/bin/env bash
# Creates target/py-venv with the Python Kafka clients the compatibility tests use
# (requirements.txt beside this script). Safe to run again: when the venv's stamp
# matches the requirements and the interpreter, it does nothing.
#
#   bash ops/tests/python/setup-venv.sh        # then:
#   SLUICE_PYTHON=target/py-venv/bin/python cargo nextest run -p sluice --test it python
#
# PYTHON chooses the interpreter that creates the venv (default: python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="$root/target/py-venv"
requirements="$here/requirements.txt"
stamp="$venv/.sluice-requirements"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null; then
    echo "setup-venv: $python not found; install Python 3 (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi

# The stamp records the requirements and the interpreter that built the venv, so a
# changed pin or a new Python rebuilds it.
want="$(cat "$requirements"; "$python" -c 'import sys; print(sys.version)')"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-venv: $venv is up to date"
    exit 0
fi

rm -rf "$venv"
mkdir -p "$root/target"
if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    echo "setup-venv: '$python -m venv' failed. On Debian/Ubuntu install the venv module:" >&2
    echo "    apt-get install python3-venv" >&2
    echo "(.ci/test-all installs it for you)." >&2
    exit 1
fi

if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$requirements"; then
    # No stamp is written, so the next run starts over.
    echo "setup-venv: pip could not install $requirements (is PyPI reachable?)" >&2
    exit 1
fi
printf '%s' "$want" >"$stamp"
echo "setup-venv: $venv ready ($("$venv/bin/python" -m pip --disable-pip-version-check freeze | tr '\n' ' '))"
