"""Refusals before authentication are cheap and bounded.

* A source address that keeps sending requests with an unknown key is answered
  `Throttling.User` (with `x-acs-retry-after`) once its allowance is used up; another source
  is not affected.
* The audit records the first refusals of each period one by one and counts the rest per
  source, action and outcome: thousands of refusals add a handful of rows, whose `Repeats`
  add up to exactly the number of refused requests.
* An AccessKeyId longer than any key is refused as such, and the audit keeps only its size.
* Audit records older than the retention are removed when the server starts."""
from __future__ import annotations

import http.client
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from ens_support import (
    BACKEND,
    Admin,
    check_json_error,
    encode_query,
    new_access_key,
    raw_request,
    start_server,
    utc_timestamp,
)

STORE_FILE = "ens-images.db"
REFUSAL_RATE = 5
REFUSAL_BURST = 30
INDIVIDUAL_PER_PERIOD = 5
FLOOD = 3000
THROTTLE_ARGS = ["--refusal-rate", str(REFUSAL_RATE), "--refusal-burst", str(REFUSAL_BURST),
                 "--audit-refusals-per-period", str(INDIVIDUAL_PER_PERIOD)]


def unknown_key_query(key: str = "LTAIunknownunknownunknown") -> str:
    return encode_query({
        "Action": "DescribeImages", "Version": "2017-11-10", "AccessKeyId": key,
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex, "Timestamp": utc_timestamp(),
        "Signature": "bm90IGEgc2lnbmF0dXJl",
    })


def flood(host: str, count: int, source: str = "127.0.0.1") -> Tuple[Dict[str, int], List[str]]:
    """Sends `count` refused requests over one kept-alive connection; returns the codes
    answered and the x-acs-retry-after values of throttled answers."""
    hostname, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=15, source_address=(source, 0))
    codes: Dict[str, int] = {}
    retry_after: List[str] = []
    try:
        for _ in range(count):
            conn.request("GET", "/?" + unknown_key_query())
            resp = conn.getresponse()
            body = resp.read()
            code = json.loads(body)["Code"]
            codes[code] = codes.get(code, 0) + 1
            if code == "Throttling.User":
                retry_after.append(resp.getheader("x-acs-retry-after") or "")
    finally:
        conn.close()
    return codes, retry_after


def store_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.glob(STORE_FILE + "*"))


@pytest.mark.skipif(BACKEND == "postgres", reason="measures the embedded store's files")
def test_a_flood_of_unknown_keys_is_throttled_per_source_and_counted_not_stored(tmp_path):
    data_dir = tmp_path / "data"
    ak, secret = new_access_key()
    server = start_server(data_dir, ak=ak, secret=secret, log_name="warm", extra_args=THROTTLE_ARGS)
    server.stop()
    before = store_bytes(data_dir)

    server = start_server(data_dir, log_name="flood", extra_args=THROTTLE_ARGS)
    try:
        started = time.monotonic()
        codes, retry_after = flood(server.host, FLOOD)
        elapsed = time.monotonic() - started
        assert set(codes) == {"InvalidAccessKeyId.NotFound", "Throttling.User"}, codes
        # The burst, then the rate over the flood's duration: everything else was throttled.
        refused_in_full = codes["InvalidAccessKeyId.NotFound"]
        assert REFUSAL_BURST <= refused_in_full <= REFUSAL_BURST + REFUSAL_RATE * elapsed + 1, (codes, elapsed)
        assert all(value.isdigit() and int(value) > 0 for value in retry_after), retry_after[:5]

        # Another source address is judged on its own.
        other, _ = flood(server.host, 3, source="127.0.0.2")
        assert other == {"InvalidAccessKeyId.NotFound": 3}, other
    finally:
        assert server.stop() == 0
    grown = store_bytes(data_dir) - before
    # One row each would be about 200 bytes a refusal (600 KB here).
    assert grown < 64 * 1024, f"the store grew by {grown} bytes for {FLOOD} refusals"

    records = [r for r in Admin(data_dir).run("audit", "--limit", "100000") if r["SourceIp"] in ("127.0.0.1", "*")]
    assert sum(r["Repeats"] for r in records) == FLOOD, records
    assert len(records) <= INDIVIDUAL_PER_PERIOD + 2 * (int(elapsed / 10) + 2), records
    assert sum(1 for r in records if r["Repeats"] == 1) >= INDIVIDUAL_PER_PERIOD, records
    counted = [r for r in records if r["Repeats"] > 1]
    assert {r["Outcome"] for r in counted} <= {"InvalidAccessKeyId.NotFound", "Throttling.User"}, counted
    assert all(r["Action"] == "DescribeImages" and r["AccessKeyId"] == "LTAIunknownunknownunknown"
               for r in records), records


def test_an_access_key_id_longer_than_any_key_is_refused_as_such(tmp_path):
    server = start_server(tmp_path / "data", log_name="long-key")
    try:
        resp = raw_request(server.host, "GET", "/?" + unknown_key_query("K" * 200))
        body = check_json_error(resp, "InvalidAccessKeyId.NotFound", 404)
        assert "1 to 128" in body["Message"] and "200 bytes" in body["Message"], body
    finally:
        server.stop()
    records = Admin(tmp_path / "data").run("audit", "--outcome", "InvalidAccessKeyId.NotFound")
    assert [r["AccessKeyId"] for r in records if r["RequestId"] == body["RequestId"]] \
        == ["<malformed: 200 bytes>"], records


@pytest.mark.skipif(BACKEND == "postgres", reason="ages records by editing the embedded store's file")
def test_audit_records_past_the_retention_are_removed_at_start(tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, log_name="fresh")
    try:
        for _ in range(3):
            raw_request(server.host, "GET", "/?" + unknown_key_query())
    finally:
        server.stop()
    # Two of the three records are made 40 days old (the server is stopped).
    with sqlite3.connect(data_dir / STORE_FILE) as db:
        seqs = [row[0] for row in db.execute("SELECT seq FROM audit_log ORDER BY seq")]
        assert len(seqs) == 3, seqs
        old = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(time.time() - 40 * 86400))
        db.executemany("UPDATE audit_log SET at = ? WHERE seq = ?", [(old, seq) for seq in seqs[:2]])

    server = start_server(data_dir, log_name="retention", extra_args=["--audit-retention-days", "30"])
    try:
        deadline = time.monotonic() + 15
        while "audit records past their retention removed" not in server.stderr_text():
            assert time.monotonic() < deadline, server.describe_output()
            time.sleep(0.2)
    finally:
        server.stop()
    left = Admin(data_dir).run("audit")
    assert len(left) == 1, left
