#!/usr/bin/env bash
# Installs the ens-images-testing package (this folder) into the conformance suite's venv,
# with the official SDKs pinned there, and runs its tests and the README's example test
# against the real binary (ENS_IMAGES_BIN, default target/debug/ens-images).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export ENS_IMAGES_BIN="$(realpath "${ENS_IMAGES_BIN:-$REPO/target/debug/ens-images}")"

VENV="$REPO/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO/conformance/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$HERE"

cd "$REPO"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider python/tests python/examples "$@"
