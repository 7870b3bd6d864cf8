#!/usr/bin/env bash
# CPU per request of one read scenario on PostgreSQL, split between the server and the
# database: serves a generated K = 1 000 store on a fresh database, drives it for 5 s with
# ens-bench load (64 connections) and reads both sides' CPU time from /proc, and the
# database's commits from pg_stat_database.
#
#   scripts/read-cpu-postgres.sh ENS_IMAGES_BINARY [SCENARIO]
#
# SCENARIO defaults to first-page. Needs target/release/ens-bench, psql's createdb/dropdb and
# a PostgreSQL server on 127.0.0.1:5432 where user postgres may create databases.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
binary=$1
scenario=${2:-first-page}
bench=target/release/ens-bench
[ -x "$bench" ] || { echo "read-cpu-postgres.sh: build $bench first" >&2; exit 1; }

database="ens_read_cpu_$$"
url="postgres://postgres@127.0.0.1:5432/$database"
scratch=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$scratch"
    dropdb -h 127.0.0.1 -U postgres --if-exists "$database" || true
}
trap cleanup EXIT
createdb -h 127.0.0.1 -U postgres "$database"

"$binary" serve --data-dir "$scratch" --database-url "$url" --listen 127.0.0.1:0 >"$scratch/first.log" 2>&1 &
first=$!
until grep -q "listening on" "$scratch/first.log"; do sleep 0.1; done
kill "$first"
wait "$first" || true
"$binary" admin generate --data-dir "$scratch" --database-url "$url" --images 1000 --accounts 10 \
    --heavy-images 100 >"$scratch/generated.json" 2>"$scratch/generate.log"
"$binary" serve --data-dir "$scratch" --database-url "$url" --listen 127.0.0.1:0 --rate-limit 0 \
    --image-build-seconds 0 >"$scratch/serve.log" 2>&1 &
server=$!
until grep -q "listening on" "$scratch/serve.log"; do sleep 0.1; done
endpoint=$(grep -o 'http://[0-9.:]*' "$scratch/serve.log" | head -n 1)

# The scenario's own deep page (2000) lies past the end of this catalog's heavy account (100
# images): its last full page of 50 is asked for instead, as the suite and compare-reads.sh do.
extra=()
if [ "$scenario" = deep-page ]; then
    extra=(-p PageNumber=2 -p PageSize=50)
fi
load() {
    "$bench" load --endpoint "$endpoint" --generated "$scratch/generated.json" --scenario "$scenario" \
        --concurrency 64 --duration "$1" --warmup 0 "${extra[@]}" 2>&1
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
database_ticks() {
    local total=0 pid
    for pid in $(pgrep postgres); do total=$((total + $(ticks "$pid"))); done
    echo "$total"
}

commits() {
    psql -h 127.0.0.1 -U postgres -d "$database" -Atc \
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
}

load 2 >/dev/null
server_before=$(ticks "$server")
database_before=$(database_ticks)
commits_before=$(commits)
line=$(load 5 | grep "^| $scenario ")
server_after=$(ticks "$server")
database_after=$(database_ticks)
# The statistics reach pg_stat_database within a second of each commit.
sleep 1
commits_after=$(commits)
requests=$(echo "$line" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
per_tick=$((1000000 / $(getconf CLK_TCK)))
echo "$line"
echo "server CPU per request: $(((server_after - server_before) * per_tick / requests)) µs"
echo "PostgreSQL CPU per request: $(((database_after - database_before) * per_tick / requests)) µs"
echo "PostgreSQL commits per 100 requests: $(((commits_after - commits_before) * 100 / requests))"
