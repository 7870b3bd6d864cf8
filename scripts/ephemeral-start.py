#!/usr/bin/env python3
"""Start to ready of `ens-images serve --ephemeral`, and the control API's whole reset.

Starts the binary RUNS times with `--ephemeral --control-listen 127.0.0.1:0` and times each
from process start to its `listening on` line; on the last one, times `POST /reset` (the
server's own `ElapsedUs` and the round trip) a few times.

    python3 scripts/ephemeral-start.py target/release/ens-images [RUNS]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request


def start(binary: str) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENS_IMAGES_")}
    began = time.perf_counter()
    server = subprocess.Popen([binary, "serve", "--ephemeral", "--listen", "127.0.0.1:0",
                               "--control-listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    control, token = None, None
    for line in server.stdout:
        if line.startswith("ens-images control on "):
            control = line.split()[-1]
        elif line.startswith("ens-images control token "):
            token = line.split()[-1]
        elif line.startswith("ens-images listening on "):
            return server, time.perf_counter() - began, control, token
    sys.exit("the server stopped before it listened")


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    times = []
    for run in range(runs):
        server, elapsed, control, token = start(binary)
        times.append(elapsed * 1000)
        if run < runs - 1:
            server.terminate()
            server.wait(timeout=30)
    resets = []
    for _ in range(10):
        request = urllib.request.Request(f"{control}/reset", method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        began = time.perf_counter()
        with urllib.request.urlopen(request) as answer:
            body = json.loads(answer.read())
        resets.append(((time.perf_counter() - began) * 1000, body.get("ElapsedUs", 0) / 1000))
    server.terminate()
    server.wait(timeout=30)
    times.sort()
    print(f"start to ready, {runs} runs: min {times[0]:.1f} ms, median {statistics.median(times):.1f} ms, "
          f"max {times[-1]:.1f} ms")
    round_trips = sorted(r[0] for r in resets)
    inside = sorted(r[1] for r in resets)
    print(f"POST /reset on a fresh store, 10 calls: median {statistics.median(inside):.2f} ms in the server, "
          f"{statistics.median(round_trips):.2f} ms round trip")


if __name__ == "__main__":
    main()
