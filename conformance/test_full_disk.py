"""A full disk under the embedded store, made real: the data directory is a size-limited
tmpfs, filled to the last byte.

* Reads keep working, through the official SDKs, and replay protection keeps refusing a
  replayed request while nothing can be written.
* Writes are refused with a retryable 503 ServiceUnavailable and a log line that says why.
* Once space is freed, writes succeed again and the nonces accepted meanwhile reach the
  record, so a replay is refused after a restart too.
* A kill -9 while the disk is full loses no acknowledged write, and the next start refuses
  requests signed before it (their nonces may be missing from the record)."""
from __future__ import annotations

import errno
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from ens_support import (
    BACKEND,
    World,
    check_json_error,
    encode_query,
    raw_request,
    raw_v1,
    self_images,
    v1_params,
)

pytestmark = [
    pytest.mark.skipif(BACKEND == "postgres",
                       reason="the disk under PostgreSQL is PostgreSQL's; this fills the embedded store's"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root"),
]

DISK_SIZE = "24m"
FULL_LOG_LINE = "the disk holding the store is full"


@contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Writes a file until the disk refuses another byte; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def listed_names(world: World, tenant, flavor: str) -> Dict[str, str]:
    return {image["ImageId"]: image["ImageName"]
            for image in self_images(world.sdk(tenant, flavor))}


NONCES_HELD_LOG_LINE = "claims are kept in memory and written once it can be"


def rename_until_refused(world: World, tenant, image_id: str, attempts: int = 400) -> Tuple[List[str], dict]:
    """Renames the image again and again (signed raw V1, no client-side retries) until one
    is refused; returns the names acknowledged and the refusal."""
    acknowledged: List[str] = []
    for n in range(attempts):
        name = f"Full-{n}"
        answer = raw_v1(world.host, tenant.ak, tenant.secret, action="ModifyImageAttribute",
                        extra={"ImageId": image_id, "ImageName": name})
        if answer.status == 200:
            acknowledged.append(name)
            continue
        return acknowledged, check_json_error(answer, "ServiceUnavailable", 503)
    raise AssertionError(f"{attempts} renames on a full disk were all acknowledged")


@pytest.fixture
def full_world(tmp_path):
    """A world whose data directory is a small tmpfs, with a tenant owning three images."""
    with small_disk(tmp_path / "w" / "data") as disk:
        world = World(tmp_path / "w", build_seconds=0, log_name="full-disk")
        try:
            tenant = world.new_tenant()
            api = world.sdk(tenant, "tea_v3")
            instance = world.instance(tenant)
            made = {world.create_image(api, tenant, name=f"Kept-{n}", InstanceId=instance): f"Kept-{n}"
                    for n in range(3)}
            yield world, disk, tenant, made
        finally:
            world.server.stop()


def test_reads_go_on_writes_are_refused_and_everything_returns_once_space_is_freed(full_world):
    world, disk, tenant, made = full_world
    filler = fill(disk)

    # Reads: both official SDKs, again and again (each signed request claims a nonce).
    for _ in range(5):
        assert listed_names(world, tenant, "tea_v3") == made
        assert listed_names(world, tenant, "core") == made
    answered = v1_params(tenant.ak, tenant.secret, method="GET", action="DescribeSelfImages")
    assert raw_request(world.host, "GET", f"/?{encode_query(answered)}").status == 200
    check_json_error(raw_request(world.host, "GET", f"/?{encode_query(answered)}"), "SignatureNonceUsed", 400)

    # Writes: refused as retryable, with a log line naming the cause.
    target = next(iter(made))
    acknowledged, _ = rename_until_refused(world, tenant, target)
    assert FULL_LOG_LINE in world.server.stderr_text()
    if acknowledged:
        made[target] = acknowledged[-1]
    assert listed_names(world, tenant, "tea_v3") == made

    # Space freed: writes work, and the nonces accepted meanwhile reach the record.
    filler.unlink()
    answer = raw_v1(world.host, tenant.ak, tenant.secret, action="ModifyImageAttribute",
                    extra={"ImageId": target, "ImageName": "After-full"})
    assert answer.status == 200, answer.body
    made[target] = "After-full"
    deadline = time.monotonic() + 10
    while "the claims held in memory are on record" not in world.server.stderr_text():
        assert time.monotonic() < deadline, world.server.describe_output()
        time.sleep(0.2)

    world.restart(log_name="full-disk-after")
    stderr = world.server.stderr_text()
    assert "misses nonces" not in stderr, stderr
    # The replay is refused by the record itself, not by a start-up guard.
    check_json_error(raw_request(world.host, "GET", f"/?{encode_query(answered)}"), "SignatureNonceUsed", 400)
    assert listed_names(world, tenant, "core") == made


def test_a_kill_while_the_disk_is_full_loses_no_acknowledged_write_and_opens_no_replay(full_world):
    world, disk, tenant, made = full_world
    filler = fill(disk)
    # Signed reads until one's nonce claim could not be written: an append to the nonce
    # record may still fit in space the record's file already holds.
    for _ in range(400):
        answered = v1_params(tenant.ak, tenant.secret, method="GET", action="DescribeSelfImages")
        assert raw_request(world.host, "GET", f"/?{encode_query(answered)}").status == 200
        if NONCES_HELD_LOG_LINE in world.server.stderr_text():
            break
    else:
        raise AssertionError("400 signed reads on a full disk all had their nonces recorded")
    target = next(iter(made))
    acknowledged, _ = rename_until_refused(world, tenant, target)
    if acknowledged:
        made[target] = acknowledged[-1]

    world.server.kill9()
    filler.unlink()
    world.restart(log_name="full-disk-killed")
    stderr = world.server.stderr_text()
    assert "misses nonces accepted while it could not be written" in stderr, stderr
    # The request answered while its nonce could not be recorded cannot be replayed.
    body = check_json_error(raw_request(world.host, "GET", f"/?{encode_query(answered)}"),
                            "InvalidTimeStamp.Expired", 400)
    assert "record of used nonces" in body["Message"], body
    time.sleep(1.1)  # timestamps count whole seconds: sign after the start
    assert listed_names(world, tenant, "tea_v3") == made
    answer = raw_v1(world.host, tenant.ak, tenant.secret, action="ModifyImageAttribute",
                    extra={"ImageId": target, "ImageName": "After-kill"})
    assert answer.status == 200, answer.body
