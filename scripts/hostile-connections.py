#!/usr/bin/env python3
"""Hostile connections against the real binary: slow-header senders, idle keep-alive clients
and unfinished oversized heads, all from other loopback addresses (127.0.x.y), while a client
on 127.0.0.1 times signed DescribeImages calls. Reports the good client's latency, when each
hostile connection was closed (against the timeout it should have met), and the server's RSS
and open descriptors before, at peak and after.

    .venv/bin/python scripts/hostile-connections.py target/release/ens-images \\
        [--slow 2000] [--idle 1100] [--big 400] [--big-bytes 380000] [--nofile 1024] \\
        [-- SERVER OPTIONS...]

Options after `--` go to `ens-images serve` (e.g. `--max-connections 3600`); the header-read
and idle timeouts the closures are judged against are read from them (defaults 30 s and 60 s).
The server runs with the open-file limit `--nofile` (like `ulimit -n 1024`). Exits 1 when a
target is missed: a good call failed or took 100 ms or more, a hostile connection outlived
its timeout by more than 1 s, or RSS ended more than 20 MiB above where it started.

Needs the conformance environment (conformance/run.sh creates .venv)."""
from __future__ import annotations

import argparse
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
from ens_support import _server_env, encode_query, new_access_key, v1_params  # noqa: E402

GRACE = 1.0  # seconds a closure may come after its deadline
PER_ADDRESS = 100  # hostile connections per source address (under the per-address cap)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_parts(pid: int) -> str:
    """Anonymous and file-backed resident memory, in MiB."""
    return (f"{rss_kib(pid, 'RssAnon') / 1024:.1f} anon + "
            f"{rss_kib(pid, 'RssFile') / 1024:.1f} file, {rss_kib(pid, 'Threads')} threads")


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (each such
    client retries its SYN after a second)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()
             if line.startswith("TcpExt:")]
    if len(lines) < 2:
        return 0
    return int(dict(zip(lines[0], lines[1])).get("ListenOverflows", 0))


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def option(args: List[str], name: str, default: float) -> float:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return float(args[index + 1])
        if arg.startswith(name + "="):
            return float(arg.split("=", 1)[1])
    return default


@dataclass
class Hostile:
    kind: str
    sock: Optional[socket.socket]
    opened: float
    deadline: float  # monotonic time by which the server must have closed it
    closed: Optional[float] = None
    answer: bytes = b""


@dataclass
class Sample:
    at: float
    millis: float
    status: str


@dataclass
class Run:
    hostiles: List[Hostile] = field(default_factory=list)
    samples: List[Sample] = field(default_factory=list)
    rss: List[tuple] = field(default_factory=list)  # (t, KiB, fds)
    stop: threading.Event = field(default_factory=threading.Event)


def good_call(host: str, port: int, ak: str, secret: str) -> Sample:
    """One signed V1 DescribeImages on a fresh connection from 127.0.0.1, timed whole."""
    params = v1_params(ak, secret, method="GET")
    request = (f"GET /?{encode_query(params)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Connection: close\r\n\r\n").encode()
    started = time.monotonic()
    try:
        with open_from(host, port, "127.0.0.1", 10) as sock:
            sock.sendall(request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        answer = b"".join(chunks)
        status = answer[9:12].decode("ascii", "replace") if answer else "EOF"
    except OSError as error:
        status = type(error).__name__
    return Sample(started, (time.monotonic() - started) * 1000, status)


def sampler(run: Run, host: str, port: int, ak: str, secret: str, every: float) -> None:
    while not run.stop.is_set():
        run.samples.append(good_call(host, port, ak, secret))
        run.stop.wait(every)


def monitor(run: Run, pid: int, started: float) -> None:
    while not run.stop.is_set():
        try:
            run.rss.append((time.monotonic() - started, rss_kib(pid), open_fds(pid)))
        except OSError:
            return
        run.stop.wait(0.25)


def source(group: int, index: int) -> str:
    address = index // PER_ADDRESS
    return f"127.0.{group}.{address + 1}"


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


def open_from(host: str, port: int, src: str, timeout: float) -> socket.socket:
    """A connection from address `src`, its port chosen by connect() as for an unbound
    socket (IP_BIND_ADDRESS_NO_PORT), not by bind()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((src, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def connect(host: str, port: int, src: str) -> Optional[socket.socket]:
    try:
        return open_from(host, port, src, 5)
    except OSError:
        return None


def read_answer(sock: socket.socket) -> bool:
    """Reads one keep-alive answer with a Content-Length body; whether one came."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_row(label: str, samples: List[Sample]) -> str:
    millis = [s.millis for s in samples]
    ok = sum(1 for s in samples if s.status == "200")
    if not millis:
        return f"| {label} | 0 | - | - | - | - |"
    return (f"| {label} | {len(millis)} | {ok} | {statistics.median(millis):.1f} ms | "
            f"{percentile(millis, 0.99):.1f} ms | {max(millis):.1f} ms |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=1100)
    parser.add_argument("--big", type=int, default=400)
    parser.add_argument("--big-bytes", type=int, default=380_000)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--every", type=float, default=0.05, help="seconds between good calls")
    parser.add_argument("--settle", type=int, default=30,
                        help="seconds to watch RSS after the last hostile connection closed")
    argv = sys.argv[1:]
    server_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.server_args = server_args
    header_timeout = option(args.server_args, "--header-read-timeout", 30)
    idle_timeout = option(args.server_args, "--idle-timeout", 60)

    # This process holds every hostile socket: lift its own descriptor limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = args.nofile

    def limit_server() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    ak, secret = new_access_key()
    run = Run()
    with tempfile.TemporaryDirectory() as scratch:
        command = [args.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                   f"{scratch}/data", *args.server_args]
        log = open(f"{scratch}/server.log", "wb")
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                  text=True, env=_server_env(ak, secret, None),
                                  preexec_fn=limit_server)
        try:
            hostport = next(m.group(1) for line in server.stdout  # type: ignore[union-attr]
                            if (m := re.search(r"listening on http://(\S+)", line)))
            host, port_text = hostport.rsplit(":", 1)
            port = int(port_text)
            return attack(run, server.pid, host, port, ak, secret, args, header_timeout,
                          idle_timeout, command)
        finally:
            log.close()
            failed_accepts = Path(f"{scratch}/server.log").read_text("utf-8", "replace") \
                .count("accepting a connection failed")
            print(f"server log: {failed_accepts} failed accept(s)")
            run.stop.set()
            for hostile in run.hostiles:
                if hostile.sock is not None:
                    hostile.sock.close()
            server.terminate()
            server.wait()


def attack(run: Run, pid: int, host: str, port: int, ak: str, secret: str,
           args: argparse.Namespace, header_timeout: float, idle_timeout: float,
           command: List[str]) -> int:
    before_samples = [good_call(host, port, ak, secret) for _ in range(50)]
    time.sleep(1)
    rss_start, fds_start = rss_kib(pid), open_fds(pid)
    overflows_start = listen_overflows()
    parts_start = rss_parts(pid)
    t0 = time.monotonic()
    threading.Thread(target=monitor, args=(run, pid, t0), daemon=True).start()
    threading.Thread(target=sampler, args=(run, host, port, ak, secret, args.every),
                     daemon=True).start()
    selector = selectors.DefaultSelector()

    def closed(hostile: Hostile, at: float) -> None:
        if hostile.closed is None:
            hostile.closed = at
            if hostile.sock is not None:
                try:
                    selector.unregister(hostile.sock)
                except (KeyError, ValueError):
                    pass
                hostile.sock.close()
                hostile.sock = None

    def admit(hostile: Hostile) -> None:
        run.hostiles.append(hostile)
        if hostile.sock is None:
            closed(hostile, time.monotonic())
            return
        hostile.sock.setblocking(False)
        selector.register(hostile.sock, selectors.EVENT_READ, hostile)

    # Idle: one answered request each, then nothing (the idle timeout runs from the answer).
    for index in range(args.idle):
        sock = connect(host, port, source(1, index))
        ok = False
        if sock is not None:
            try:
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                ok = read_answer(sock)
            except OSError:
                ok = False
        now = time.monotonic()
        hostile = Hostile("idle", sock if ok else None, now, now + idle_timeout + GRACE)
        if sock is not None and not ok:
            sock.close()
        admit(hostile)
    phases = [("idle", time.monotonic() - t0)]
    # Slow: a head that never ends, one byte a second (the first now).
    for index in range(args.slow):
        sock = connect(host, port, source(2, index))
        now = time.monotonic()
        if sock is not None:
            try:
                sock.sendall(b"G")
            except OSError:
                sock.close()
                sock = None
        admit(Hostile("slow", sock, now, now + header_timeout + GRACE))
    phases.append(("slow", time.monotonic() - t0))
    # Big: an unfinished head of args.big_bytes, sent at once.
    filler = b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * args.big_bytes
    for index in range(args.big):
        sock = connect(host, port, source(3, index))
        now = time.monotonic()
        if sock is not None:
            try:
                sock.settimeout(2)
                sock.sendall(filler)
            except OSError:
                pass  # refused or reset before all of it was taken: judged below
        admit(Hostile("big", sock, now, now + header_timeout + GRACE))
    opened_in = time.monotonic() - t0
    phases.append(("big", opened_in))
    print(f"opened {len(run.hostiles)} hostile connections in {opened_in:.1f} s (each kind "
          f"done at: {', '.join(f'{kind} {at:.1f} s' for kind, at in phases)})", flush=True)

    timeline: List[str] = []
    next_report, next_drip = 0.0, time.monotonic() + 1
    last_deadline = max(h.deadline for h in run.hostiles)
    while time.monotonic() < last_deadline + 2 and any(h.closed is None for h in run.hostiles):
        for key, _ in selector.select(timeout=0.2):
            hostile: Hostile = key.data
            try:
                data = hostile.sock.recv(65536) if hostile.sock is not None else b""
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                hostile.answer += data[:200]
            else:
                closed(hostile, time.monotonic())
        now = time.monotonic()
        if now >= next_drip:
            next_drip += 1
            for hostile in run.hostiles:
                if hostile.kind == "slow" and hostile.sock is not None:
                    try:
                        hostile.sock.send(b"E")
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed(hostile, now)
        if now - t0 >= next_report:
            next_report = (int((now - t0) / 5) + 1) * 5
            still = {kind: sum(1 for h in run.hostiles if h.kind == kind and h.closed is None)
                     for kind in ("slow", "idle", "big")}
            rss = rss_kib(pid)
            timeline.append(f"| {now - t0:.0f} s | {still['slow']} | {still['idle']} | "
                            f"{still['big']} | {open_fds(pid)} | {rss / 1024:.1f} MiB |")
    end_hostile = time.monotonic()
    # Settling: the good client keeps calling (so the allocator keeps working) while RSS is
    # read every 5 s.
    settling = []
    for waited in range(5, args.settle + 1, 5):
        time.sleep(max(0.0, end_hostile + waited - time.monotonic()))
        settling.append((waited, rss_kib(pid), rss_parts(pid)))
    run.stop.set()
    rss_end, fds_end = rss_kib(pid), open_fds(pid)
    after_samples = [good_call(host, port, ak, secret) for _ in range(50)]

    print("\nServer:", " ".join(Path(command[0]).name if i == 0 else part
                               for i, part in enumerate(command)
                               if not part.startswith("/tmp")), f"(open-file limit {args.nofile})")
    print("\nOpen hostile connections over time (t from the first hostile connect):\n")
    print("| t | slow open | idle open | big open | server fds | server RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(timeline))

    print("\nHow the hostile connections ended:\n")
    print("| kind | count | closed at once (< 1 s) | closed by its deadline (timeout + 1 s) | "
          "outlived it | last closed after |")
    print("|---|---:|---:|---:|---:|---:|")
    late_total = 0
    for kind, timeout in (("slow", header_timeout), ("idle", idle_timeout),
                          ("big", header_timeout)):
        group = [h for h in run.hostiles if h.kind == kind]
        if not group:
            continue
        lives = [(h.closed if h.closed is not None else end_hostile) - h.opened for h in group]
        at_once = sum(1 for life in lives if life < 1)
        late = sum(1 for h in group if (h.closed or float("inf")) > h.deadline)
        late_total += late
        print(f"| {kind} ({timeout:.0f} s) | {len(group)} | {at_once} | {len(group) - late} | "
              f"{late} | {max(lives):.1f} s |")

    during = [s for s in run.samples if s.at >= t0]
    print("\nSigned DescribeImages from 127.0.0.1, each on a fresh connection:\n")
    print("| when | calls | 200 | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(latency_row("before", before_samples))
    print(latency_row("while the hostile connections were open", during))
    print(latency_row("after", after_samples))
    failures = [s for s in during + after_samples if s.status != "200"]
    slow_calls = [s for s in during + after_samples if s.millis >= 100]
    missed_calls = slow_calls + failures
    for call in missed_calls[:10]:
        print(f"  call at t = {call.at - t0:.2f} s: {call.status} in {call.millis:.1f} ms")
    if len(missed_calls) > 10:
        print(f"  ... and {len(missed_calls) - 10} more")

    peak = max((kib for _, kib, _ in run.rss), default=rss_start)
    peak_fds = max((fds for _, _, fds in run.rss), default=fds_start)
    print("\n| server | RSS | open descriptors |\n|---|---:|---:|")
    print(f"| before | {rss_start / 1024:.1f} MiB ({parts_start}) | {fds_start} |")
    print(f"| peak | {peak / 1024:.1f} MiB | {peak_fds} |")
    for waited, kib, parts in settling:
        fds = fds_end if waited == settling[-1][0] else ""
        print(f"| {waited} s after the last hostile connection closed | {kib / 1024:.1f} MiB "
              f"({parts}) | {fds} |")

    missed = []
    if failures:
        missed.append(f"{len(failures)} good call(s) failed: "
                      f"{sorted(set(s.status for s in failures))}")
    if slow_calls:
        missed.append(f"{len(slow_calls)} good call(s) took 100 ms or more")
    if late_total:
        missed.append(f"{late_total} hostile connection(s) outlived their timeout")
    if rss_end - rss_start > 20 * 1024:
        missed.append(f"RSS ended {(rss_end - rss_start) / 1024:.1f} MiB above the start")
    print(f"\nListen-queue overflows during the run (whole machine): "
          f"{listen_overflows() - overflows_start}")
    print("\n" + ("MISSED: " + "; ".join(missed) if missed else "all targets met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
