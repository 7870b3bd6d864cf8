"""Damaged files at start-up: the nonce file is set aside without opening a replay window;
a damaged store stops the start with a message that names the file and the cause."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from ens_support import (
    BACKEND,
    _server_env,
    check_json_error,
    encode_query,
    new_access_key,
    raw_request,
    require_binary,
    start_server,
    v1_params,
)

NONCE_FILE = "ens-images.nonces.db"
STORE_FILE = "ens-images.db"

sqlite_only = pytest.mark.skipif(
    BACKEND == "postgres",
    reason="these files belong to the embedded SQLite store; PostgreSQL keeps nonces in its database",
)


def damage(path):
    path.write_bytes(os.urandom(4096))


@sqlite_only
def test_a_damaged_nonce_file_is_set_aside_and_no_request_can_be_replayed(tmp_path):
    data_dir = tmp_path / "data"
    ak, secret = new_access_key()
    server = start_server(data_dir, ak=ak, secret=secret, log_name="before")
    # A request answered before the damage, to be replayed after it.
    answered = v1_params(ak, secret, method="GET")
    first = raw_request(server.host, "GET", f"/?{encode_query(answered)}")
    assert first.status == 200, first.body
    server.stop()

    damage(data_dir / NONCE_FILE)
    for journal in ("-wal", "-shm"):
        (data_dir / (NONCE_FILE + journal)).unlink(missing_ok=True)
    # The second start also runs without the key in the environment: the stored one signs.
    server = start_server(data_dir, log_name="after")
    try:
        set_aside = sorted(p.name for p in data_dir.iterdir() if ".damaged-" in p.name)
        assert len(set_aside) == 1 and set_aside[0].startswith(NONCE_FILE + ".damaged-"), set_aside
        stderr = server.stderr_text()
        assert "nonce file is damaged" in stderr and str(data_dir / NONCE_FILE) in stderr, stderr

        replayed = raw_request(server.host, "GET", f"/?{encode_query(answered)}")
        body = check_json_error(replayed, "InvalidTimeStamp.Expired", 400)
        assert "record of used nonces" in body["Message"], body

        # Signed before this start (a minute ago, well inside the clock window): refused too.
        earlier = v1_params(ak, secret, method="GET", timestamp=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)))
        check_json_error(raw_request(server.host, "GET", f"/?{encode_query(earlier)}"),
                         "InvalidTimeStamp.Expired", 400)

        # Signed now: answered, and its nonce is on record again.
        fresh = v1_params(ak, secret, method="GET", timestamp=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2)))
        assert raw_request(server.host, "GET", f"/?{encode_query(fresh)}").status == 200
        again = raw_request(server.host, "GET", f"/?{encode_query(fresh)}")
        check_json_error(again, "SignatureNonceUsed", 400)
    finally:
        server.stop()


@sqlite_only
def test_a_damaged_store_stops_the_start_naming_the_file_and_the_cause(tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, log_name="healthy")
    server.stop()
    damage(data_dir / STORE_FILE)
    run = subprocess.run(
        [str(require_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=_server_env(None, None, data_dir), timeout=30)
    assert run.returncode != 0
    assert str(data_dir / STORE_FILE) in run.stderr, run.stderr
    assert "not a database" in run.stderr, run.stderr
    assert "Backup and restore" in run.stderr, run.stderr
