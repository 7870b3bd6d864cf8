#!/usr/bin/env python3
"""Server CPU per oversized request: bodies of about 1 MB (just under the 1 MiB body limit,
so every byte is read) in several shapes: one huge value, 111 111 tiny parameters, a huge
account list for each list-taking action (AddAccounts, RemoveAccounts of
ModifyImageSharePermission), deep percent-encoding, one huge unknown key, a huge ImageId,
duplicate keys, empty segments, JSON text as a form and as application/json; plus the
largest bodies still decoded. Each is sent CALLS times signed V1 (the signature covers every
body parameter), V1 with a wrong signature (the error echoes the string-to-sign), signed V3
(the body is hashed) and unsigned. The server's CPU is read from /proc/PID/stat (utime +
stime) before and after each batch of CALLS and divided by CALLS, so the 10 ms tick is no
longer the resolution (it is 10 ms / CALLS).

    python3 scripts/large-request-cpu.py target/release/ens-images [CALLS]

Needs only the Python standard library and the binary. Prints one Markdown table; exits 1 if
any request took 5 ms of CPU or more."""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

TARGET_BYTES = 1_000_000  # just under the 1 MiB body limit, so every byte is parsed
IMAGE = "m-" + "0" * 25
BUDGET_MS = 5.0


def pe(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~", encoding="utf-8")


def form(pairs: List[Tuple[str, str]]) -> bytes:
    return "&".join(f"{pe(k)}={pe(v)}" for k, v in pairs).encode()


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Shape:
    name: str
    action: str
    body: bytes  # the wire body
    pairs: List[Tuple[str, str]]  # what a signer sees (decoded), in wire order
    content_type: str = "application/x-www-form-urlencoded"


def shapes() -> List[Shape]:
    out = []

    def add(name: str, action: str, pairs: List[Tuple[str, str]]) -> None:
        out.append(Shape(name, action, form(pairs), pairs))

    add("control: empty DescribeImages", "DescribeImages", [])
    # The largest form bodies still decoded (65 536 bytes, 128 parameters; see README).
    add("at the bound: one 65,000-byte value", "DescribeImages", [("ImageName", "a" * 65_000)])
    add("at the bound: 120 values of 500 bytes", "DescribeImages",
        [(f"a{i}", "b" * 500) for i in range(120)])
    add("one ~1 MB value (ImageName)", "DescribeImages", [("ImageName", "a" * TARGET_BYTES)])
    tiny = []
    size = 0
    while size < TARGET_BYTES:
        pair = (f"a{len(tiny)}", "1")
        tiny.append(pair)
        size += len(pair[0]) + 3
    add(f"{len(tiny):,} tiny parameters", "DescribeImages", tiny)
    count = TARGET_BYTES // 19  # 16 digits and an encoded comma (%2C) each
    accounts = ",".join(str(10**15 + i) for i in range(count))
    add(f"AddAccounts of {count:,} IDs", "ModifyImageSharePermission",
        [("ImageId", IMAGE), ("AddAccounts", accounts)])
    add(f"RemoveAccounts of {count:,} IDs", "ModifyImageSharePermission",
        [("ImageId", IMAGE), ("RemoveAccounts", accounts)])
    add("~1 MB of commas (AddAccounts)", "ModifyImageSharePermission",
        [("ImageId", IMAGE), ("AddAccounts", "," * (TARGET_BYTES // 3))])
    add("deep percent-encoding (%25 x 333k)", "DescribeImages",
        [("ImageName", "%" * (TARGET_BYTES // 3))])
    add("one ~1 MB unknown key", "DescribeImages", [("X" * TARGET_BYTES, "1")])
    add("~1 MB ImageId (DeleteImage)", "DeleteImage", [("ImageId", "m" * TARGET_BYTES)])
    add("~1 MB ImageId (ModifyImageSharePermission)", "ModifyImageSharePermission",
        [("ImageId", "m" * TARGET_BYTES), ("AddAccounts", "1000000000000001")])
    dupes = b"a=1&" * (TARGET_BYTES // 4)
    out.append(Shape(f"{TARGET_BYTES // 4:,} duplicate keys", "DescribeImages", dupes, [("a", "1")]))
    out.append(Shape("~1 MB of '&'", "DescribeImages", b"&" * TARGET_BYTES, []))
    item = {"ImageId": "m-" + "0" * 25, "Tags": [{"Key": "k", "Value": "v"}]}
    items = [item] * (TARGET_BYTES // (len(json.dumps(item)) + 2))
    text = json.dumps({"Images": items}).encode()
    out.append(Shape("JSON text, as a form", "DescribeImages", text,
                     [(urllib.parse.unquote_plus(text.decode()), "")]))
    out.append(Shape("JSON text, as application/json", "DescribeImages", text, [],
                     content_type="application/json"))
    return out


def v1_query(ak: str, secret: str, action: str, signed_body: List[Tuple[str, str]],
             wrong: bool) -> str:
    params = {"Action": action, "Version": "2017-11-10", "AccessKeyId": ak,
              "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
              "SignatureNonce": uuid.uuid4().hex, "Timestamp": now_utc()}
    everything = dict(params)
    everything.update(dict(signed_body))
    canonical = "&".join(f"{pe(k)}={pe(v)}" for k, v in sorted(everything.items()))
    to_sign = "POST&%2F&" + pe(canonical)
    key = (secret + "&").encode()
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha1).digest()).decode()
    if wrong:
        signature = base64.b64encode(secrets.token_bytes(20)).decode()
    params["Signature"] = signature
    return "&".join(f"{pe(k)}={pe(v)}" for k, v in params.items())


def v3_headers(host: str, ak: str, secret: str, action: str, body: bytes,
               content_type: str) -> Dict[str, str]:
    headers = {"host": host, "x-acs-action": action, "x-acs-version": "2017-11-10",
               "x-acs-date": now_utc(), "x-acs-signature-nonce": uuid.uuid4().hex,
               "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
               "content-type": content_type}
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    request = "\n".join(["POST", "/", "", canonical_headers, ";".join(names),
                         headers["x-acs-content-sha256"]])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(request.encode()).hexdigest()
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"ACS3-HMAC-SHA256 Credential={ak},"
                                f"SignedHeaders={';'.join(names)},Signature={signature}")
    return headers


MODES = ("V1 signed", "V1 wrong signature", "V3 signed", "unsigned")


def request_for(mode: str, shape: Shape, host: str, ak: str, secret: str
                ) -> Tuple[str, Dict[str, str]]:
    headers = {"Content-Type": shape.content_type}
    if mode.startswith("V1"):
        signed = shape.pairs if shape.content_type.startswith("application/x-www") else []
        return "/?" + v1_query(ak, secret, shape.action, signed, "wrong" in mode), headers
    if mode == "V3 signed":
        return "/", v3_headers(host, ak, secret, shape.action, shape.body, shape.content_type)
    query = f"Action={shape.action}&Version=2017-11-10&AccessKeyId={ak}"
    return "/?" + query, headers


def main() -> int:
    binary = sys.argv[1]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    ak, secret = "LTAI" + secrets.token_hex(10), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENS_IMAGES_")}
    env.update(ENS_IMAGES_ROOT_ACCESS_KEY_ID=ak, ENS_IMAGES_ROOT_ACCESS_KEY_SECRET=secret)
    missed = []
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", f"{scratch}/data",
             "--rate-limit", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            host = next(m.group(1) for line in server.stdout  # type: ignore[union-attr]
                        if (m := re.search(r"listening on http://(\S+)", line)))
            hostname, port = host.rsplit(":", 1)
            conn = http.client.HTTPConnection(hostname, int(port), timeout=60)
            tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
            print(f"{calls} calls per row; body sizes in bytes; CPU is the server's "
                  f"(utime + stime) per call, to {tick_ms / calls:.2f} ms.\n")
            print("| body | bytes | request | answer | answer bytes | server CPU per call |")
            print("|---|---:|---|---|---:|---:|")
            for shape in shapes():
                for mode in MODES:
                    prepared = [request_for(mode, shape, host, ak, secret) for _ in range(calls)]
                    before = cpu_ms(server.pid)
                    status, data = "", b""
                    for target, headers in prepared:
                        try:
                            conn.request("POST", target, body=shape.body, headers=headers)
                            answer = conn.getresponse()
                            data = answer.read()
                            status = str(answer.status)
                        except (OSError, http.client.HTTPException):
                            # Closed before the whole body was taken: refused too.
                            conn.close()
                            conn = http.client.HTTPConnection(hostname, int(port), timeout=60)
                            status, data = "closed", b""
                    used = (cpu_ms(server.pid) - before) / calls
                    code = "OK" if status == "200" else ""
                    if status not in ("200", "closed"):
                        try:
                            code = json.loads(data).get("Code", "?")
                        except ValueError:
                            code = "?"
                    print(f"| {shape.name} | {len(shape.body):,} | {mode} | {status} "
                          f"{code} | {len(data):,} | {used:.2f} ms |", flush=True)
                    if used >= BUDGET_MS:
                        missed.append(f"{shape.name} / {mode}: {used:.2f} ms")
            conn.close()
        finally:
            server.terminate()
            server.wait()
    print("\n" + ("MISSED (>= 5 ms): " + "; ".join(missed) if missed
                  else "every call under 5 ms of server CPU"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
