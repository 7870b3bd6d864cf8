"""Connection limits against the real binary: slow senders are closed after the header-read
timeout and idle keep-alive connections after the idle timeout (each its own option), one
source address cannot take every slot, at the cap for all a new connection takes the place
of the one that has waited longest, oversized request heads are refused, and a signed call
from another client is answered meanwhile.

Hostile connections come from other loopback addresses (127.0.0.2, ...), so the per-address
cap applies to them and not to the client on 127.0.0.1."""
from __future__ import annotations

import selectors
import socket
import subprocess
import time
from typing import Dict, Iterable, List

import pytest

from ens_support import (
    ServerProcess,
    _server_env,
    encode_query,
    new_access_key,
    require_binary,
    v1_params,
)

HEADER_TIMEOUT = 2  # --header-read-timeout, seconds
IDLE_TIMEOUT = 4  # --idle-timeout, seconds
SLACK = 2.5  # how late after its deadline a closure may be seen


def start(tmp_path, *flags: str) -> ServerProcess:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ak, secret = new_access_key()
    stderr_path = tmp_path / "server.stderr.log"
    cmd = [str(require_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir",
           str(data_dir), *flags]
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=_server_env(ak, secret, data_dir))
    server = ServerProcess(proc, data_dir, stderr_path, ak, secret)
    server.wait_listening()
    return server


@pytest.fixture()
def timed(tmp_path):
    """Short timeouts, generous caps."""
    server = start(tmp_path, "--header-read-timeout", str(HEADER_TIMEOUT),
                   "--idle-timeout", str(IDLE_TIMEOUT), "--max-connections-per-ip", "300",
                   "--max-connections", "1000", "--max-header-bytes", "16384")
    yield server
    server.stop()


@pytest.fixture()
def capped(tmp_path):
    """Long timeouts, small caps: only the caps close connections here."""
    server = start(tmp_path, "--header-read-timeout", "60", "--idle-timeout", "60",
                   "--max-connections-per-ip", "100", "--max-connections", "300")
    yield server
    server.stop()


def connect(server, source: str = "127.0.0.1") -> socket.socket:
    host, port = server.host.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))


def signed_describe(server, source: str = "127.0.0.1") -> bytes:
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


def answered_keep_alive(server, source: str) -> socket.socket:
    """A connection that got one answer and stays open (keep-alive)."""
    sock = connect(server, source)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    data = b""
    while not data.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(4096)
        assert chunk, f"closed before answering: {data!r}"
        data += chunk
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def closure_times(groups: Dict[str, List[socket.socket]], until: float,
                  dribble: Iterable[socket.socket] = ()) -> Dict[socket.socket, float]:
    """Watches every socket until `until` (monotonic), sending one byte every 0.3 s on those
    in `dribble`; returns when each was closed by the server."""
    selector = selectors.DefaultSelector()
    for socks in groups.values():
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
    dribbling = set(dribble)
    closed: Dict[socket.socket, float] = {}
    next_drip = time.monotonic()
    while time.monotonic() < until and len(closed) < sum(len(s) for s in groups.values()):
        now = time.monotonic()
        if now >= next_drip:
            next_drip = now + 0.3
            for sock in dribbling - closed.keys():
                try:
                    sock.send(b"X")
                except BlockingIOError:
                    pass
                except OSError:
                    closed[sock] = now
                    selector.unregister(sock)
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data and sock not in closed:
                closed[sock] = time.monotonic()  # type: ignore[index]
                selector.unregister(sock)
    selector.close()
    return closed


def test_slow_silent_and_idle_connections_are_closed_each_after_its_own_timeout(timed):
    started = time.monotonic()
    slow = [connect(timed, "127.0.0.2") for _ in range(100)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # a head that never ends
    silent = [connect(timed, "127.0.0.3") for _ in range(50)]  # never sends a byte
    idle = [answered_keep_alive(timed, "127.0.0.4") for _ in range(100)]
    idle_since = time.monotonic()
    try:
        # Held: 250 hostile connections. Another client is answered meanwhile.
        answer = signed_describe(timed)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        closed = closure_times({"slow": slow, "silent": silent, "idle": idle},
                               until=idle_since + IDLE_TIMEOUT + SLACK, dribble=slow)
        for name, socks, since, timeout in (("slow", slow, started, HEADER_TIMEOUT),
                                            ("silent", silent, started, HEADER_TIMEOUT),
                                            ("idle", idle, idle_since, IDLE_TIMEOUT)):
            open_still = [s for s in socks if s not in closed]
            assert not open_still, \
                f"{len(open_still)} {name} connection(s) outlived the {timeout} s timeout"
            lives = [closed[s] - since for s in socks]
            assert min(lives) >= timeout - 0.5, \
                f"a {name} connection was closed after {min(lives):.2f} s, before its {timeout} s"
        # The idle ones outlived the header-read timeout: the two timeouts are apart.
        assert min(closed[s] for s in idle) - idle_since > HEADER_TIMEOUT + 0.5
    finally:
        for sock in slow + silent + idle:
            sock.close()


def test_one_source_cannot_take_every_slot(capped):
    held = [connect(capped, "127.0.0.2") for _ in range(100)]
    try:
        extra = connect(capped, "127.0.0.2")
        assert closed_by_server(extra, 2), "the 101st connection of one address was kept"
        extra.close()
        assert not any(closed_by_server(sock, 0.01) for sock in held[:5] + held[-5:])
        answer = signed_describe(capped)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        for sock in held:
            sock.close()


def test_at_the_cap_a_new_connection_takes_the_place_of_the_longest_waiting(capped):
    # 300 connections from three addresses (100 each, the per-address cap): the cap for all.
    held: List[socket.socket] = []
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        held.extend(connect(capped, source) for _ in range(100))
    time.sleep(0.3)
    try:
        # A signed call from another client is still answered: its connection takes the
        # place of the oldest one, which the server closes.
        answer = signed_describe(capped)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert closed_by_server(held[0], 2), "the longest-waiting connection was kept"
        # The answered call's connection is gone, so the first newcomer takes its free
        # place; the next ones displace the next oldest, in order; the newest stay.
        time.sleep(0.2)
        late: List[socket.socket] = [connect(capped, "127.0.0.5") for _ in range(4)]
        for index in (1, 2, 3):
            assert closed_by_server(held[index], 2), f"connection {index} was kept"
        assert not any(closed_by_server(sock, 0.01) for sock in held[4:10] + held[-5:] + late)
        # The newest held connection is still served.
        newest = held[-1]
        params = v1_params(capped.ak, capped.secret, method="GET")
        newest.sendall(f"GET /?{encode_query(params)} HTTP/1.1\r\nHost: {capped.host}\r\n"
                       "Connection: close\r\n\r\n".encode())
        newest.settimeout(5)
        reply = newest.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        for sock in late:
            sock.close()
    finally:
        for sock in held:
            sock.close()


def test_an_oversized_request_head_is_refused(timed):
    sock = connect(timed)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 40_000 + b"\r\n\r\n")
        sock.settimeout(5)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed before the whole head was even sent: refused too
    finally:
        sock.close()
