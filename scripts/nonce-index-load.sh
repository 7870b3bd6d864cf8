#!/usr/bin/env bash
# How long a restart takes to load the SignatureNonce index, and what it costs in memory:
# serves a generated K = 1 000 SQLite store, fills its nonce record with a first-page load of
# SECONDS (64 connections), stops the server cleanly, starts it again and reports the
# `elapsed_us` of a first signed request sent at once (it waits for the index), then, on a
# third start, the server's RSS before and 2 s after the start.
#
#   scripts/nonce-index-load.sh ENS_IMAGES_BINARY [SECONDS]
#
# SECONDS defaults to 45. Needs target/release/ens-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
binary=$1
seconds=${2:-45}
bench=target/release/ens-bench
[ -x "$bench" ] || { echo "nonce-index-load.sh: build $bench first" >&2; exit 1; }

scratch=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$scratch"
}
trap cleanup EXIT

serve() {
    "$binary" serve --data-dir "$scratch" --listen 127.0.0.1:0 --rate-limit 0 --image-build-seconds 0 \
        >"$scratch/$1.log" 2>&1 &
    server=$!
    until grep -q "listening on" "$scratch/$1.log"; do sleep 0.01; done
    endpoint=$(grep -o 'http://[0-9.:]*' "$scratch/$1.log" | head -n 1)
}
stop() {
    kill "$server"
    wait "$server" || true
    server=""
}
one_request() {
    "$bench" load --endpoint "$endpoint" --generated "$scratch/generated.json" --scenario first-page \
        --concurrency 1 --requests 1 --warmup 0 >/dev/null 2>&1
}
rss() { awk '/VmRSS/ { print $2 " kB" }' "/proc/$server/status"; }

serve first
stop
"$binary" admin generate --data-dir "$scratch" --images 1000 --accounts 10 --heavy-images 100 \
    >"$scratch/generated.json" 2>"$scratch/generate.log"
serve fill
"$bench" load --endpoint "$endpoint" --generated "$scratch/generated.json" --scenario first-page \
    --concurrency 64 --duration "$seconds" --warmup 0 2>&1 | grep "^| first-page "
stop
echo "nonce file: $(stat -c %s "$scratch"/ens-images.nonces.db) bytes"

serve at-once
one_request
echo "first signed request, sent at once: $(grep -m 1 -o 'elapsed_us=[0-9]*' "$scratch/at-once.log")"
stop

serve later
echo "RSS right after the start: $(rss)"
sleep 2
echo "RSS 2 s after the start: $(rss)"
one_request
echo "first signed request, sent 2 s after the start: $(grep -m 1 -o 'elapsed_us=[0-9]*' "$scratch/later.log")"
