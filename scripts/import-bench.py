#!/usr/bin/env python3
"""ImportImage of a large qcow2 from a local bucket, against a plain copy of the same file.

    python3 scripts/import-bench.py target/release/ens-images [GIB] [WORK_DIR]

Makes a qcow2 of GIB GiB (default 5) of random data with qemu-img under WORK_DIR (default
target/import-bench, on the disk the service would use), then, five times each:
- two plain copies of it from the bucket folder into the data directory's disk, both made
  durable as ImportImage makes its file: `cp` then `sync` (coreutils' cp copies inside the
  kernel, copy_file_range, without the bytes ever reaching a program), and
  `dd bs=8M conv=fsync` (the bytes pass through a program, as they must for any copy that
  checksums them);
- ImportImage of it through `ens-images call`, timed from the call to the image's
  `Available`, with the server's resident memory before the import and its high-water mark
  after it (/proc/PID/status VmRSS, VmHWM).
Each timed run starts after a `sync` and a 2-second pause, and each import's image is deleted
(and its file gone) before the next. Prints one line per run and the medians. Needs qemu-img
and about 2 x GIB GiB free.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 5


def settle() -> None:
    """Starts a timed run with no write-back pending from the run before: on a virtual disk a
    backlog of dirty pages halves the next run's speed."""
    sh("sync")
    time.sleep(2)


def sh(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, **kwargs)


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/{pid}/status")


def make_image(path: Path, gib: int) -> None:
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as out:
        for _ in range(gib * 1024):
            out.write(os.urandom(1 << 20))
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()


def call(binary: str, endpoint: str, credentials: Path, action: str, *params: str) -> dict:
    done = sh(binary, "call", "--endpoint", endpoint, "--credentials-file", str(credentials),
              action, *params, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    binary = os.path.abspath(sys.argv[1])
    gib = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    work = Path(sys.argv[3] if len(sys.argv) > 3 else "target/import-bench").resolve()
    shutil.rmtree(work, ignore_errors=True)
    bucket = work / "data" / "buckets" / "images-in"
    bucket.mkdir(parents=True)
    source = bucket / "disk.qcow2"
    started = time.monotonic()
    make_image(source, gib)
    size = source.stat().st_size
    print(f"source: {size / 2**30:.2f} GiB qcow2 made in {time.monotonic() - started:.0f} s")

    copies = {"cp": [], "dd": []}
    for run in range(RUNS):
        for tool, command in (("cp", ["sh", "-c", 'cp "$0" "$1" && sync']),
                              ("dd", ["sh", "-c", 'dd if="$0" of="$1" bs=8M conv=fsync status=none'])):
            target = work / "data" / f"copy-{run}.qcow2"
            settle()
            started = time.monotonic()
            sh(*command, str(source), str(target))
            copies[tool].append(time.monotonic() - started)
            target.unlink()
            elapsed = copies[tool][-1]
            print(f"plain copy ({tool}) {run + 1}: {elapsed:.2f} s, {size / elapsed / 2**20:.0f} MiB/s")

    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(work / "data"),
         "--image-build-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        endpoint = ""
        for line in server.stdout:
            if "listening on" in line:
                endpoint = line.split("listening on", 1)[1].strip()
                break
        credentials = work / "data" / "root-credentials.json"
        imports = []
        growth = []
        for run in range(RUNS):
            settle()
            before = memory_kib(server.pid, "VmRSS")
            started = time.monotonic()
            answer = call(binary, endpoint, credentials, "ImportImage", f"ImageName=bench-{run}",
                          "Architecture=x86_64", "OSType=linux", "ImageFormat=qcow2",
                          "ComputeType=ens_vm", "OSSBucket=images-in", "OSSObject=disk.qcow2")
            image = answer["ImageId"]
            while True:
                page = call(binary, endpoint, credentials, "DescribeSelfImages", f"ImageId={image}")
                status = page["Images"]["Image"][0]["Status"]
                if status != "Creating":
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            if status != "Available":
                raise SystemExit(f"import {run + 1} ended {status}")
            peak = memory_kib(server.pid, "VmHWM")
            imports.append(elapsed)
            growth.append((peak - before) / 1024)
            print(f"import {run + 1}: {elapsed:.2f} s, {size / elapsed / 2**20:.0f} MiB/s, "
                  f"RSS {before / 1024:.0f} MiB before, high-water mark {peak / 1024:.0f} MiB after")
            call(binary, endpoint, credentials, "DeleteImage", f"ImageId={image}")
            folder = work / "data" / "image-files" / "images" / image
            deadline = time.monotonic() + 60
            while folder.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name, pick in (("median", statistics.median), ("best", min)):
        imported = pick(imports)
        cp, dd = pick(copies["cp"]), pick(copies["dd"])
        print(f"{name}: import {imported:.2f} s ({size / imported / 2**20:.0f} MiB/s); cp {cp:.2f} s: "
              f"the import runs at {cp / imported:.0%} of its speed; dd {dd:.2f} s: at "
              f"{dd / imported:.0%} of its speed")
    print(f"RSS grew by at most {max(growth):.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
