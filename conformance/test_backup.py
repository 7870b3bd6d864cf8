"""Backup and restore, exactly as README's "Backup and restore" section says to do them.

* A clean stop leaves the embedded store self-contained: the `.db` file alone, copied to a
  new data directory, holds every acknowledged write.
* `ens-images admin backup --to FILE` runs while writers keep creating and renaming images;
  the copy, restored by README's steps, holds every write acknowledged before the backup
  began, and nothing that was never acknowledged.
* On PostgreSQL the command refuses and points to pg_dump."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from ens_support import (
    BACKEND,
    CUSTOM_IMAGE_ID_RE,
    World,
    _server_env,
    make_flavor,
    require_binary,
    self_images,
    start_server,
)

STORE_FILE = "ens-images.db"
# What a data directory holds besides the store: the master key seals the AccessKey
# secrets in the store; without it the restored store cannot be opened.
KEY_FILES = ("master.key",)

sqlite_only = pytest.mark.skipif(
    BACKEND == "postgres",
    reason="admin backup copies the embedded SQLite store; PostgreSQL stores use pg_dump",
)


def admin_backup(data_dir: Path, to: Path) -> subprocess.CompletedProcess:
    cmd = [str(require_binary()), "admin", "--data-dir", str(data_dir), "backup", "--to", str(to)]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=_server_env(None, None, data_dir), timeout=120)


def restore(backup: Path, data_dir: Path, keys_from: Path) -> None:
    """README's restore: with the service stopped, the backup becomes the store file, the
    journal files of the store it replaces are removed, the master key comes along."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in (STORE_FILE + "-wal", STORE_FILE + "-shm"):
        (data_dir / stale).unlink(missing_ok=True)
    shutil.copyfile(backup, data_dir / STORE_FILE)
    for name in KEY_FILES:
        shutil.copyfile(keys_from / name, data_dir / name)


def new_world(base: Path, log_name: str) -> World:
    base.mkdir()
    return World(base, build_seconds=0, log_name=log_name)


def start_restored(data_dir: Path, log_name: str):
    """A restored store has no record of used nonces: the server refuses requests signed
    before its start, and timestamps count whole seconds, so the first call waits for the
    next second."""
    server = start_server(data_dir, log_name=log_name)
    assert "nonce file is missing" in server.stderr_text(), server.stderr_text()
    time.sleep(1.1)
    return server


def listed(server_host: str, tenant) -> Dict[str, str]:
    images = self_images(make_flavor("tea_v3", server_host, tenant.ak, tenant.secret))
    ids = [image["ImageId"] for image in images]
    assert len(ids) == len(set(ids)), "an image is listed twice"
    assert all(CUSTOM_IMAGE_ID_RE.match(image_id) for image_id in ids), ids
    return {image["ImageId"]: image["ImageName"] for image in images}


@sqlite_only
def test_a_clean_stop_leaves_the_database_file_self_contained(tmp_path):
    world = new_world(tmp_path / "first", "clean-stop")
    try:
        tenant = world.new_tenant()
        api = world.sdk(tenant, "tea_v3")
        instance = world.instance(tenant)
        made = {}
        for n in range(20):
            image_id = world.create_image(api, tenant, name=f"Clean-{n}", InstanceId=instance)
            made[image_id] = f"Clean-{n}"
        renamed = next(iter(made))
        api.op("ModifyImageAttribute", ImageId=renamed, ImageName="Clean-renamed")
        made[renamed] = "Clean-renamed"
    finally:
        world.stop()
    wal = world.data_dir / (STORE_FILE + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, \
        f"after a clean stop the WAL still holds {wal.stat().st_size} bytes"

    # The database file alone (no -wal, no nonce file) in a new directory.
    alone = tmp_path / "alone"
    restore(world.data_dir / STORE_FILE, alone, keys_from=world.data_dir)
    server = start_restored(alone, "alone")
    try:
        assert listed(server.host, tenant) == made
    finally:
        server.stop()


@sqlite_only
def test_a_stop_right_after_the_listening_line_is_clean(tmp_path):
    """SIGTERM is watched before the service says it listens: a stop that follows the line at
    once ends cleanly (exit 0, the WAL checkpointed), not by the signal's default action."""
    for attempt in range(5):
        data_dir = tmp_path / f"data-{attempt}"
        server = start_server(data_dir, log_name="quick-stop")
        rc = server.stop()
        assert rc == 0, f"attempt {attempt}: exit {rc}\n{server.describe_output()}"
        wal = data_dir / (STORE_FILE + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, f"attempt {attempt}: WAL left behind"


@sqlite_only
def test_a_backup_under_write_load_restores_every_write_acknowledged_before_it(tmp_path):
    world = new_world(tmp_path / "live", "backup")
    tenants = [world.new_tenant() for _ in range(3)]
    instances = {t.account_id: world.instance(t) for t in tenants}
    lock = threading.Lock()
    # image -> (owner, names acknowledged in order, acknowledgement times)
    acked: Dict[str, Dict[str, object]] = {}
    sent_names: Dict[str, List[str]] = {}  # image -> every name a rename tried
    sent_creates: List[str] = []
    errors: List[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        tenant = tenants[n % len(tenants)]
        # Tea clients do not retry on their own: a retried CreateImage would be a write
        # nobody acknowledged.
        sdk = world.sdk(tenant, ("tea_v3", "tea_v2")[n % 2])
        i = 0
        while not stop.is_set() and i < 2000:
            i += 1
            with lock:
                own = [k for k, v in acked.items() if v["writer"] == n]
            try:
                if own and i % 3 == 0:
                    image_id = own[i % len(own)]
                    name = f"B{n}-r{i}"
                    with lock:
                        sent_names.setdefault(image_id, []).append(name)
                    sdk.op("ModifyImageAttribute", ImageId=image_id, ImageName=name)
                    with lock:
                        acked[image_id]["names"].append((time.monotonic(), name))
                else:
                    name = f"B{n}-c{i}"
                    with lock:
                        sent_creates.append(name)
                    body = sdk.op("CreateImage", ImageName=name,
                                  InstanceId=instances[tenant.account_id])
                    with lock:
                        acked[body["ImageId"]] = {"owner": tenant, "writer": n,
                                                  "names": [(time.monotonic(), name)]}
            except Exception as error:  # noqa: BLE001 - every failure is a finding here
                errors.append(f"writer {n}: {type(error).__name__}: {error}")
                return

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 80 and time.monotonic() < deadline and not errors:
            time.sleep(0.01)
        assert not errors, errors
        assert len(acked) >= 80, f"only {len(acked)} creates acknowledged in 30 s"

        began = time.monotonic()
        with lock:
            before = {image_id: {"owner": v["owner"], "names": list(v["names"])}
                      for image_id, v in acked.items()}
        backup = tmp_path / "backups" / "ens.db"
        backup.parent.mkdir()
        done = admin_backup(world.data_dir, backup)
        assert done.returncode == 0, done.stderr
        ended = time.monotonic()
        with lock:
            acked_during = sum(1 for v in acked.values() if v["names"][0][0] > began)
        # Writes went on while the copy was made.
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        assert not errors, errors
        with lock:
            after_backup = sum(1 for v in acked.values() if v["names"][0][0] > ended)
        assert after_backup > 0, "no write was acknowledged after the backup: no load to speak of"

        # A second backup to the same file is refused: a backup never overwrites one.
        again = admin_backup(world.data_dir, backup)
        assert again.returncode != 0 and "exists" in again.stderr, again
        assert not backup.with_name(backup.name + ".partial").exists()
    finally:
        stop.set()
        world.stop()

    restored = tmp_path / "restored"
    restore(backup, restored, keys_from=world.data_dir)
    server = start_restored(restored, "restored")
    try:
        for tenant in tenants:
            found = listed(server.host, tenant)
            mine = {k: v for k, v in before.items() if v["owner"] is tenant}
            missing = sorted(set(mine) - set(found))
            assert not missing, f"acknowledged before the backup began, missing: {missing}"
            for image_id, name in found.items():
                if image_id in mine:
                    # The name acknowledged last before the backup, or one sent after it.
                    allowed = {mine[image_id]["names"][-1][1], *sent_names.get(image_id, [])}
                    assert name in allowed, f"{image_id}: restored name {name!r}"
                else:
                    assert name in sent_creates, f"{image_id} {name!r} was never sent"
        print(f"backup: {len(before)} creates acknowledged before it, {acked_during} during it")
    finally:
        server.stop()


@pytest.mark.skipif(BACKEND != "postgres", reason="the PostgreSQL refusal needs the PostgreSQL backend")
def test_backup_of_a_postgresql_store_points_to_pg_dump(tmp_path):
    world = new_world(tmp_path / "pg", "pg-backup")
    try:
        target = tmp_path / "ens.db"
        refused = admin_backup(world.data_dir, target)
        assert refused.returncode != 0, refused
        assert "pg_dump" in refused.stderr, refused.stderr
        assert not target.exists()
    finally:
        world.stop()
