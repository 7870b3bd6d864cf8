#!/usr/bin/env python3
"""Snapshot, restore and reset of the control API on a store holding IMAGES custom images.

Starts `ens-images serve --ephemeral` (or, with --data-dir DIR, a durable SQLite store in a
new directory), loads a state document of IMAGES images spread over 10 accounts (one in ten
shared with the next account) through `PUT /state`, then, RUNS times each: takes a snapshot
of everything, restores it, takes and restores a snapshot of one account, and resets the whole
store (re-importing before the next reset). Prints the server's own `ElapsedUs` and the round
trip, median and max, in milliseconds.

    python3 scripts/control-timings.py target/release/ens-images [IMAGES] [RUNS] [--data-dir DIR]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

NODES = ["cn-dalian-unicom", "cn-beijing-cmcc", "cn-hangzhou-telecom"]


def start(binary: str, data_dir: str | None) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENS_IMAGES_")}
    store = ["--data-dir", data_dir] if data_dir else ["--ephemeral"]
    server = subprocess.Popen([binary, "serve", *store, "--listen", "127.0.0.1:0",
                               "--control-listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    control, token = None, None
    for line in server.stdout:
        if line.startswith("ens-images control on "):
            control = line.split()[-1]
        elif line.startswith("ens-images control token "):
            token = line.split()[-1]
        elif line.startswith("ens-images listening on "):
            return server, control, token
    sys.exit("the server stopped before it listened")


def call(control: str, token: str, method: str, path: str, body=None) -> tuple:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(control + path, method=method, data=data,
                                     headers={"Authorization": f"Bearer {token}"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    return answer, (time.perf_counter() - began) * 1000


def document(images: int) -> dict:
    accounts = [f"{1000000000000001 + n}" for n in range(10)]
    per_account = images // len(accounts)
    state = []
    for index, account in enumerate(accounts):
        owned = []
        for n in range(per_account):
            image = {"ImageId": f"m-bench{index:02d}{n:018d}", "ImageName": f"bench-{index}-{n}",
                     "EnsRegionIds": [NODES[n % len(NODES)]]}
            if n % 10 == 0:
                image["SharedWith"] = [{"AccountId": accounts[(index + 1) % len(accounts)]}]
            owned.append(image)
        state.append({"AccountId": account,
                      "AccessKeys": [{"AccessKeyId": f"bench-key-{index}", "AccessKeySecret": "s3cret"}],
                      "Images": owned})
    return {"Format": "ens-images/state/1", "Accounts": state}


def summary(label: str, server_ms: list, trip_ms: list) -> None:
    print(f"{label:<28} server median {statistics.median(server_ms):7.2f} max {max(server_ms):7.2f}"
          f"   round trip median {statistics.median(trip_ms):7.2f} max {max(trip_ms):7.2f}")


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != "--data-dir"]
    data_dir = None
    if "--data-dir" in sys.argv:
        data_dir = sys.argv[sys.argv.index("--data-dir") + 1]
        args.remove(data_dir)
    binary = args[0]
    images = int(args[1]) if len(args) > 1 else 10_000
    runs = int(args[2]) if len(args) > 2 else 20
    server, control, token = start(binary, data_dir)
    try:
        doc = document(images)
        answer, trip = call(control, token, "PUT", "/state", doc)
        print(f"import of {answer['Images']} images: server {answer['ElapsedUs'] / 1000:.1f} ms, "
              f"round trip {trip:.1f} ms")
        results: dict = {name: ([], []) for name in
                         ("snapshot (whole)", "restore (whole)", "snapshot (one account)",
                          "restore (one account)", "reset (whole)")}

        def record(name: str, answer: dict, trip: float) -> None:
            results[name][0].append(answer["ElapsedUs"] / 1000)
            results[name][1].append(trip)

        for _ in range(runs):
            record("snapshot (whole)", *call(control, token, "POST", "/snapshots", {"Name": "all"}))
            record("restore (whole)", *call(control, token, "POST", "/snapshots/all/restore"))
            record("snapshot (one account)", *call(control, token, "POST", "/snapshots",
                                                   {"Name": "one", "AccountId": "1000000000000001"}))
            record("restore (one account)", *call(control, token, "POST", "/snapshots/one/restore"))
        for _ in range(runs):
            record("reset (whole)", *call(control, token, "POST", "/reset"))
            call(control, token, "POST", "/snapshots/all/restore")
        exported, _ = call(control, token, "GET", "/state")
        held = sum(len(account.get("Images", [])) for account in exported["Accounts"])
        if held != images:
            sys.exit(f"the store holds {held} custom images after the runs, not {images}")
        print(f"{images} custom images, {runs} runs each (ms):")
        for name, (server_ms, trip_ms) in results.items():
            summary(name, server_ms, trip_ms)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
