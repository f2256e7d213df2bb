#!/usr/bin/env bash
# Builds librdkafka's own benchmark tool, rdkafka_performance
# (librdkafka examples/rdkafka_performance.c), into target/rdkafka-perf/rdkafka_performance
# and prints its path. The source is the librdkafka that the rdkafka-sys crate
# vendors (the version Cargo.lock names), copied out of the cargo registry to
# target/rdkafka-perf/src; everything optional that needs a library this machine may
# lack, or a download, is switched off (mklove's --no-download). librdkafka.a is
# linked statically. Runs again in no time once the binary is there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/rdkafka-perf
bin=$out/rdkafka_performance
if [[ -x $bin ]]; then
    echo "$PWD/$bin"
    exit 0
fi

version=$(awk '/^name = "rdkafka-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z $version ]]; then
    echo "get-rdkafka-performance: Cargo.lock names no rdkafka-sys" >&2
    exit 1
fi

# The crate's source directory: cargo metadata knows where the registry put it;
# fetch it first when it is not there yet.
find_source() {
    cargo metadata --format-version 1 --locked 2>/dev/null |
        jq -r --arg v "$version" \
            '.packages[] | select(.name == "rdkafka-sys" and .version == $v) | .manifest_path' |
        head -n1 | xargs -r dirname
}
src=$(find_source || true)
if [[ -z $src || ! -d $src/librdkafka ]]; then
    cargo fetch --locked >&2
    src=$(find_source || true)
fi
if [[ -z $src || ! -d $src/librdkafka ]]; then
    # Without jq or cargo metadata: look in the registry directly.
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/rdkafka-sys-"$version" 2>/dev/null | head -n1 || true)
fi
if [[ -z $src || ! -f $src/librdkafka/examples/rdkafka_performance.c ]]; then
    echo "get-rdkafka-performance: no librdkafka source for rdkafka-sys $version (cargo fetch failed?)" >&2
    exit 1
fi

echo "get-rdkafka-performance: building from $src/librdkafka" >&2
rm -rf "$out/src"
mkdir -p "$out"
cp -r "$src/librdkafka" "$out/src"
(
    cd "$out/src"
    # Plain C, no compression libraries beyond the built-in ones, no TLS, no SASL,
    # no HTTP: nothing a benchmark of plaintext, uncompressed records needs.
    ./configure --no-download --disable-ssl --disable-gssapi --disable-curl \
        --disable-zstd --disable-zlib --disable-lz4-ext --disable-syslog >&2
    make -j"$(nproc)" -C src librdkafka.a >&2
    make -C examples rdkafka_performance >&2
)
cp "$out/src/examples/rdkafka_performance" "$bin"
echo "$PWD/$bin"
