#!/usr/bin/env python3
"""How much a flood of unauthenticated refusals grows the embedded store.

Starts the given ens-images binary on a fresh data directory (default limits), sends requests
with an unknown AccessKeyId as fast as it can for SECONDS from SOURCES loopback addresses
(127.0.0.2, 127.0.0.3, ...; kept-alive connections, several worker processes; with one
source and wrk on PATH, wrk from 127.0.0.1 with 32 connections), stops the
server cleanly and reports the rate reached, the answers, the audit records written and the
growth of the store's files, scaled to one hour of the same flood.

    scripts/refusal-flood.py target/release/ens-images [SECONDS] [SOURCES]
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

STORE_GLOB = "ens-images.db*"


def query() -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (f"/?Action=DescribeImages&Version=2017-11-10&AccessKeyId=LTAIunknownunknownunknown"
            f"&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&SignatureNonce={uuid.uuid4().hex}"
            f"&Timestamp={stamp.replace(':', '%3A')}&Signature=bm90IGEgc2lnbmF0dXJl")


def worker(args) -> dict:
    port, sources, deadline = args
    codes: dict = {}
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(s, 0)) for s in sources]
    n = 0
    while time.time() < deadline:
        conn = conns[n % len(conns)]
        n += 1
        try:
            conn.request("GET", query())
            resp = conn.getresponse()
            code = json.loads(resp.read())["Code"]
        except (OSError, http.client.HTTPException):
            conn.close()
            code = "connection error"
        codes[code] = codes.get(code, 0) + 1
    return codes


def store_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.glob(STORE_GLOB))


def main() -> None:
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60
    source_count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    sources = [f"127.0.{(i + 2) // 256}.{(i + 2) % 256}" for i in range(source_count)]
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENS_IMAGES_")}

        def start() -> tuple:
            server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
            line = ""
            while "listening on" not in line:
                line = server.stdout.readline() if server.stdout else ""
                if not line and server.poll() is not None:
                    sys.exit("the server did not start")
            return server, int(re.search(r":(\d+)\s*$", line).group(1))

        # A first start creates the store; its size after a clean stop is the baseline.
        server, _ = start()
        server.terminate()
        server.wait(timeout=60)
        before = store_bytes(data_dir)
        server, port = start()
        started = time.time()
        if source_count == 1 and shutil.which("wrk"):
            # One address: wrk sends far faster than Python can (every answer is a refusal,
            # so a fixed request will do: the key is unknown before the nonce is looked at).
            run = subprocess.run(["wrk", "-t2", "-c32", f"-d{int(seconds)}s", "--latency",
                                  f"http://127.0.0.1:{port}{query()}"], capture_output=True, text=True, check=True)
            total = int(re.search(r"(\d+) requests in", run.stdout).group(1))
            results = [{"(wrk: every answer a refusal)": total}]
        else:
            workers = max(1, min(4, os.cpu_count() or 1))
            deadline = time.time() + seconds
            shares = [(port, sources[i::workers] or sources, deadline) for i in range(workers)]
            with multiprocessing.Pool(workers) as pool:
                results = pool.map(worker, shares)
        elapsed = time.time() - started
        server.terminate()
        server.wait(timeout=60)
        grown = store_bytes(data_dir) - before
        listed = subprocess.run([binary, "admin", "--data-dir", str(data_dir), "audit", "--limit", "1000000"],
                                capture_output=True, text=True, env=env, check=True)
        records = json.loads(listed.stdout)
    codes: dict = {}
    for result in results:
        for code, count in result.items():
            codes[code] = codes.get(code, 0) + count
    total = sum(codes.values())
    rate = total / elapsed
    counted = sum(r["Repeats"] for r in records)
    # Records are bounded per period and per source, not per request: growth scales with
    # time, as long as the flood keeps every source busy.
    per_hour = grown / elapsed * 3600
    print(f"sources {source_count}, {elapsed:.0f} s, {total} requests, {rate:.0f}/s: {codes}")
    print(f"audit: {len(records)} records standing for {counted} refusals")
    print(f"store grew {grown} bytes; for an hour of this flood: {per_hour / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
