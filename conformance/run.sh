#!/usr/bin/env bash
# Run the ENS DescribeImages wire-conformance suite against the real server binary.
#
#   conformance/run.sh [extra pytest args...]
#
# The binary is NOT built here: build it first (cargo build) or point ENS_IMAGES_BIN at it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

BIN="${ENS_IMAGES_BIN:-$REPO/target/debug/ens-images}"
case "$BIN" in
  /*) ;;
  *) BIN="$PWD/$BIN" ;;
esac
if [[ ! -f "$BIN" || ! -x "$BIN" ]]; then
  echo "conformance/run.sh: server binary not found or not executable: $BIN" >&2
  echo "conformance/run.sh: build it first (cargo build) or set ENS_IMAGES_BIN" >&2
  exit 2
fi
export ENS_IMAGES_BIN="$BIN"

VENV="$REPO/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"

cd "$REPO"
exec "$VENV/bin/python" -m pytest conformance -q "$@"
