"""Connection limits against the real binary: slow and idle connections are closed after the
header-read timeout, one source address cannot take every slot, oversized request heads are
refused, and a signed call from another client is answered meanwhile."""
from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import List

import pytest

from ens_support import (
    ServerProcess,
    _server_env,
    encode_query,
    new_access_key,
    require_binary,
    v1_params,
)

TIMEOUT = 2  # --header-read-timeout, seconds


@pytest.fixture()
def limited(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ak, secret = new_access_key()
    stderr_path = tmp_path / "server.stderr.log"
    cmd = [str(require_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
           "--header-read-timeout", str(TIMEOUT), "--max-connections-per-ip", "300",
           "--max-connections", "1000", "--max-header-bytes", "16384"]
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=_server_env(ak, secret, data_dir))
    server = ServerProcess(proc, data_dir, stderr_path, ak, secret)
    server.wait_listening()
    yield server
    server.stop()


def connect(server, source: str = "127.0.0.1") -> socket.socket:
    host, port = server.host.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    return sock


def signed_describe(server, source: str) -> bytes:
    """A signed V1 DescribeImages from `source`; returns the raw answer."""
    params = v1_params(server.ak, server.secret, method="GET")
    sock = connect(server, source)
    try:
        sock.sendall(f"GET /?{encode_query(params)} HTTP/1.1\r\nHost: {server.host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        sock.close()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_slow_and_idle_connections_are_closed_and_others_are_served(limited):
    slow: List[socket.socket] = [connect(limited) for _ in range(150)]
    idle: List[socket.socket] = [connect(limited) for _ in range(140)]
    stop = threading.Event()

    def dribble() -> None:
        # One byte of an unfinished head per connection every 0.3 s.
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        while not stop.is_set():
            for sock in slow:
                try:
                    sock.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.3)

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    try:
        time.sleep(0.5)
        # Held: 290 connections from 127.0.0.1. Another client is answered.
        answer = signed_describe(limited, "127.0.0.2")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        started = time.monotonic()
        for sock in slow + idle:
            remaining = TIMEOUT + 3 - (time.monotonic() - started)
            assert closed_by_server(sock, max(remaining, 0.1)), \
                "a slow or idle connection outlived the header-read timeout"
    finally:
        stop.set()
        dribbler.join(timeout=5)
        for sock in slow + idle:
            sock.close()


def test_one_source_cannot_take_every_slot(limited):
    held = [connect(limited) for _ in range(300)]
    try:
        time.sleep(0.3)
        extra = connect(limited)
        assert closed_by_server(extra, 1.5), "the 301st connection of one address was kept"
        extra.close()
        answer = signed_describe(limited, "127.0.0.3")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        for sock in held:
            sock.close()


def test_an_oversized_request_head_is_refused(limited):
    sock = connect(limited)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 40_000 + b"\r\n\r\n")
        sock.settimeout(5)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed before the whole head was even sent: refused too
    finally:
        sock.close()
