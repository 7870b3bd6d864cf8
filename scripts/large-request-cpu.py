#!/usr/bin/env python3
"""Server CPU spent on one oversized request: ModifyImageSharePermission with 50 000 account
IDs in a signed V1 form body (about 850 KB). The server refuses it (at most 10 accounts); what
is measured is how much CPU the refusal costs, from /proc/PID/stat around each call.

    .venv/bin/python scripts/large-request-cpu.py target/release/ens-images [CALLS]

Needs the conformance environment (conformance/run.sh creates .venv)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
from ens_support import _server_env, encode_query, new_access_key, raw_request, v1_params  # noqa: E402


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    binary, calls = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    ak, secret = new_access_key()
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", f"{scratch}/data",
             "--rate-limit", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=_server_env(ak, secret, None))
        try:
            host = next(m.group(1) for line in server.stdout
                        if (m := re.search(r"listening on http://(\S+)", line)))
            body = {"ImageId": "m-" + "0" * 25,
                    "AddAccounts": ",".join(str(10**15 + i) for i in range(50_000))}
            form = encode_query(body).encode()
            print(f"| call | status | code | server CPU | wall |\n|---:|---:|---|---:|---:|")
            for call in range(1, calls + 1):
                params = v1_params(ak, secret, action="ModifyImageSharePermission", body=body)
                before, started = cpu_ms(server.pid), time.monotonic()
                answer = raw_request(host, "POST", "/?" + encode_query(params),
                                     {"Content-Type": "application/x-www-form-urlencoded"}, form)
                wall, used = (time.monotonic() - started) * 1000, cpu_ms(server.pid) - before
                code = answer.json().get("Code", "") if answer.status != 200 else ""
                print(f"| {call} | {answer.status} | {code} | {used:.0f} ms | {wall:.0f} ms |")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
