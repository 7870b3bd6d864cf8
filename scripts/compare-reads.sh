#!/usr/bin/env bash
# Compares the read path of two ens-images builds on this machine, where one suite run
# against another is too noisy to show a change of a few percent: both servers run side by
# side on equal SQLite stores, and short loads alternate between them, round after round.
# Besides req/s it prints the server's CPU time per request (user + system, from /proc),
# which a noisy neighbour disturbs much less.
#
#   scripts/compare-reads.sh OLD_BINARY NEW_BINARY [K] [ROUNDS]
#
# K is the catalog size (default 1000), ROUNDS the number of alternations (default 3).
# Uses target/release/ens-bench (build it with `cargo build --release -p ens-bench`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
binaries=("$1" "$2")
k=${3:-1000}
rounds=${4:-3}
bench=target/release/ens-bench
[ -x "$bench" ] || { echo "compare-reads.sh: build $bench first" >&2; exit 1; }

scratch=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

accounts=$((k / 100 > 2 ? k / 100 : 2))
heavy=$((k / 10))
deep_page=$(((heavy + 13) / 50))
for side in 0 1; do
    dir="$scratch/$side"
    mkdir -p "$dir"
    # The first start creates the store and its owner; generation fills it afterwards.
    "${binaries[$side]}" serve --data-dir "$dir" --listen 127.0.0.1:0 >"$dir/first.log" 2>&1 &
    first=$!
    until grep -q "listening on" "$dir/first.log"; do sleep 0.1; done
    kill "$first"
    wait "$first" || true
    "${binaries[$side]}" admin generate --data-dir "$dir" --images "$k" --accounts "$accounts" \
        --heavy-images "$heavy" >"$dir/generated.json" 2>"$dir/generate.log"
    "${binaries[$side]}" serve --data-dir "$dir" --listen 127.0.0.1:0 --rate-limit 0 \
        --image-build-seconds 0 >"$dir/serve.log" 2>&1 &
    pids+=($!)
done
for side in 0 1; do
    until grep -q "listening on" "$scratch/$side/serve.log"; do sleep 0.1; done
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

rows="$scratch/rows"
echo "| round | scenario | binary | requests | req/s | server CPU per request |"
echo "|---:|---|---|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
    for scenario in first-page deep-page image-id; do
        extra=()
        if [ "$scenario" = deep-page ]; then
            extra=(-p "PageNumber=$deep_page" -p PageSize=50)
        fi
        for side in 0 1; do
            dir="$scratch/$side"
            endpoint=$(grep -o 'http://[0-9.:]*' "$dir/serve.log" | head -n 1)
            before=$(cpu_ticks "${pids[$side]}")
            line=$("$bench" load --endpoint "$endpoint" --generated "$dir/generated.json" \
                --scenario "$scenario" --concurrency 64 --duration 4 --warmup 0 "${extra[@]}" 2>&1 |
                grep "^| $scenario ")
            after=$(cpu_ticks "${pids[$side]}")
            requests=$(echo "$line" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
            rate=$(echo "$line" | awk -F'|' '{ gsub(/ /, "", $4); print $4 }')
            micros=$(((after - before) * 1000000 / ticks_per_second / (requests > 0 ? requests : 1)))
            echo "| $round | $scenario | ${binaries[$side]} | $requests | $rate | $micros µs |"
            echo "$scenario $side $rate $micros" >>"$rows"
        done
    done
done

echo
echo "| scenario | old req/s | new req/s | change | old CPU per request | new CPU per request | change |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '
    { rate[$1, $2] += $3; cpu[$1, $2] += $4; runs[$1, $2]++; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END {
        for (i = 1; i <= n; i++) {
            s = order[i]
            r0 = rate[s, 0] / runs[s, 0]; r1 = rate[s, 1] / runs[s, 1]
            c0 = cpu[s, 0] / runs[s, 0]; c1 = cpu[s, 1] / runs[s, 1]
            printf "| %s | %.0f | %.0f | %+.1f %% | %.0f µs | %.0f µs | %+.1f %% |\n", s, r0, r1, (r1 - r0) * 100 / r0, c0, c1, (c1 - c0) * 100 / c0
        }
    }' "$rows"
