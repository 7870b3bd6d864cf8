"""Concurrency and crash durability of the image store.

* 16 writer threads (each its own SDK client; Tea V3, Tea V1 and core mixed) interleave
  CreateImage / ModifyImageSharePermission / ModifyImageAttribute / DeleteImage on their own
  images and try to change other accounts' images; afterwards every acknowledged write is
  checked against what every account sees.
* kill -9: acknowledged writes survive a SIGKILL; builds interrupted by a SIGKILL resume
  where they were after a restart."""
from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Set

from aliyunsdkcore.client import AcsClient

from ens_support import (
    CUSTOM_IMAGE_ID_RE,
    FAILED_STATUSES,
    NODE_HANGZHOU,
    World,
    all_images,
    assert_forward,
    check_share_permission_body,
    expect_error,
    self_images,
    wait_status,
)

FLAVOR_CYCLE = ("tea_v3", "tea_v2", "core")
WALK = ["Creating", "Packing", "Uploading", "Available"]


def threaded_sdk(world, tenant, flavor):
    sdk = world.sdk(tenant, flavor)
    if flavor == "core":
        # No SDK-side retries: a retried CreateImage would be a write nobody acknowledged.
        sdk.client = AcsClient(tenant.ak, tenant.secret, "cn-hangzhou", auto_retry=False)
    return sdk


# ------------------------------------------------------------------------- concurrency

@dataclass
class Owned:
    name: str
    shares: Set[str] = field(default_factory=set)


@dataclass
class Journal:
    """What the threads were told (acknowledged), shared under a lock."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: List[str] = field(default_factory=list)          # acknowledged CreateImage IDs
    created_by: Dict[int, List[str]] = field(default_factory=lambda: defaultdict(list))
    owner_of: Dict[str, str] = field(default_factory=dict)    # image -> account
    live: Dict[str, Owned] = field(default_factory=dict)      # acknowledged, not deleted
    deleted: Set[str] = field(default_factory=set)
    problems: List[str] = field(default_factory=list)
    calls: int = 0
    server_errors: List[str] = field(default_factory=list)

    def problem(self, text):
        with self.lock:
            self.problems.append(text)


def run_writer(world, tenant, flavor, seed, targets, journal, iterations, start):
    rng = random.Random(seed)
    sdk = threaded_sdk(world, tenant, flavor)
    instance = world.instance(tenant, NODE_HANGZHOU, data_disk=[20])
    mine: Dict[str, Owned] = {}
    tag = f"[{flavor} {tenant.account_id} seed={seed}]"

    def attempt(action, **params):
        with journal.lock:
            journal.calls += 1
        err = None
        try:
            body = sdk.op(action, **params)
            return body, None
        except AssertionError as e:
            journal.problem(f"{tag} {action} {params}: {e}")
            return None, None
        except Exception as e:  # noqa: BLE001
            err = e
        code = getattr(err, "code", None) or (err.get_error_code() if hasattr(err, "get_error_code")
                                              else None)
        status = getattr(err, "status_code", None) or (
            err.get_http_status() if hasattr(err, "get_http_status") else None)
        if status is None or status >= 500:
            with journal.lock:
                journal.server_errors.append(f"{tag} {action} {params}: {status} {code} {err}")
        return None, (code, status)

    start.wait()
    for i in range(iterations):
        roll = rng.random()
        if not mine or roll < 0.25:
            name = f"T{seed}-{i}"
            body, err = attempt("CreateImage", ImageName=name, InstanceId=instance,
                                WithDataDisks=rng.choice([True, False]))
            if body is None:
                journal.problem(f"{tag} CreateImage failed: {err}")
                continue
            image_id = body["ImageId"]
            mine[image_id] = Owned(name)
            with journal.lock:
                journal.created.append(image_id)
                journal.created_by[seed].append(image_id)
                journal.owner_of[image_id] = tenant.account_id
                journal.live[image_id] = Owned(name)
            continue
        image_id = rng.choice(sorted(mine))
        own = mine[image_id]
        if roll < 0.45:
            name = f"R{seed}-{i}"
            body, err = attempt("ModifyImageAttribute", ImageId=image_id, ImageName=name)
            if body is None:
                journal.problem(f"{tag} rename {image_id} failed: {err}")
                continue
            own.name = name
        elif roll < 0.65:
            candidates = [t for t in targets if t != tenant.account_id and t not in own.shares]
            if not candidates:
                continue
            chosen = rng.sample(candidates, k=min(len(candidates), rng.choice([1, 2])))
            body, err = attempt("ModifyImageSharePermission", ImageId=image_id,
                                AddAccounts=",".join(chosen))
            if body is None:
                journal.problem(f"{tag} share {image_id} with {chosen} failed: {err}")
                continue
            own.shares.update(chosen)
        elif roll < 0.75:
            if not own.shares:
                continue
            gone = rng.choice(sorted(own.shares))
            body, err = attempt("ModifyImageSharePermission", ImageId=image_id, RemoveAccounts=gone)
            if body is None:
                journal.problem(f"{tag} unshare {image_id} from {gone} failed: {err}")
                continue
            own.shares.discard(gone)
        elif roll < 0.88:
            if own.shares:
                body, err = attempt("DeleteImage", ImageId=image_id)
                if body is not None or err[0] != "Error.DeleteImage":
                    journal.problem(f"{tag} DeleteImage of shared {image_id}: expected "
                                    f"Error.DeleteImage, got {body or err}")
                for target in sorted(own.shares):
                    body, err = attempt("ModifyImageSharePermission", ImageId=image_id,
                                        RemoveAccounts=target)
                    if body is None:
                        journal.problem(f"{tag} unshare before delete failed: {err}")
                own.shares.clear()
            body, err = attempt("DeleteImage", ImageId=image_id)
            if body is None:
                journal.problem(f"{tag} DeleteImage {image_id} failed: {err}")
                continue
            del mine[image_id]
            with journal.lock:
                journal.deleted.add(image_id)
                journal.live.pop(image_id, None)
            continue
        else:
            # Try to change an image of another account (shared with us or not).
            with journal.lock:
                foreign = [m for m, o in journal.owner_of.items() if o != tenant.account_id]
            if not foreign:
                continue
            victim = rng.choice(foreign)
            action, params, allowed = rng.choice([
                ("ModifyImageAttribute", {"ImageName": f"Stolen{seed}"},
                 {"NoPermission", "InvalidParameter.ImageId"}),
                ("DeleteImage", {}, {"NoPermission", "Error.DeleteImage"}),
                ("ModifyImageSharePermission", {"AddAccounts": tenant.account_id},
                 {"NoPermission", "InvalidParameter.ImageId", "InvalidParameter.AddAccounts"}),
                ("ModifyImageSharePermission", {"RemoveAccounts": tenant.account_id},
                 {"NoPermission", "InvalidParameter.ImageId"}),
            ])
            body, err = attempt(action, ImageId=victim, **params)
            if body is not None or err is None or err[0] not in allowed or err[1] != 400:
                journal.problem(f"{tag} {action} on foreign image {victim}: expected one of "
                                f"{sorted(allowed)}, got {body or err}")
            continue
        with journal.lock:
            journal.live[image_id] = Owned(own.name, set(own.shares))


def run_reader(world, tenant, flavor, journal, stop):
    sdk = threaded_sdk(world, tenant, flavor)
    while not stop.is_set():
        for action in ("DescribeSelfImages", "DescribeImages"):
            with journal.lock:
                journal.calls += 1
            try:
                body = sdk.op(action, PageSize="50")
            except AssertionError as e:
                journal.problem(f"[reader {flavor}] {action}: {e}")
                continue
            except Exception as e:  # noqa: BLE001
                with journal.lock:
                    journal.server_errors.append(f"[reader {flavor}] {action}: {e}")
                continue
            ids = [i["ImageId"] for i in body["Images"]["Image"]]
            if len(ids) != len(set(ids)):
                journal.problem(f"[reader] {action} listed an image twice: {ids}")
            if int(body["TotalCount"]) < len(ids):
                journal.problem(f"[reader] {action} TotalCount {body['TotalCount']} < {len(ids)}")


def test_concurrent_writers_keep_every_acknowledged_write(world):
    owners = [world.new_tenant() for _ in range(4)]
    recipients = [world.new_tenant() for _ in range(2)]
    targets = [t.account_id for t in owners + recipients]
    journal = Journal()
    start = threading.Barrier(16 + 1)
    threads = []
    for n in range(16):
        tenant = owners[n % 4]
        threads.append(threading.Thread(
            target=run_writer, name=f"writer-{n}", daemon=True,
            args=(world, tenant, FLAVOR_CYCLE[n % 3], 1000 + n, targets, journal, 14, start)))
    stop = threading.Event()
    readers = [threading.Thread(target=run_reader, daemon=True, name=f"reader-{n}",
                                args=(world, recipients[n], FLAVOR_CYCLE[n], journal, stop))
               for n in range(2)]
    for t in threads + readers:
        t.start()
    start.wait(timeout=60)
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), f"{t.name} did not finish"
    stop.set()
    for t in readers:
        t.join(timeout=30)

    assert journal.server_errors == [], "no request may fail with a 5xx or without a response"
    assert journal.problems == [], "\n".join(journal.problems[:30])
    assert journal.calls > 16 * 10
    # The mix really happened.
    assert journal.deleted, "no DeleteImage was acknowledged"
    assert any(o.shares for o in journal.live.values()), "no share survived to the end"
    assert len(journal.live) >= 16

    # IDs: unique and well-formed.
    created = journal.created
    assert len(created) == len(set(created)), "two CreateImage calls returned the same ImageId"
    assert all(CUSTOM_IMAGE_ID_RE.match(i) for i in created), created
    assert journal.deleted <= set(created)
    assert set(journal.live) == set(created) - journal.deleted

    by_id = {t.account_id: t for t in owners + recipients}
    sdks = {acc: world.sdk(t, "tea_v3") for acc, t in by_id.items()}
    shared_with: Dict[str, Set[str]] = defaultdict(set)
    for image_id, own in journal.live.items():
        for target in own.shares:
            shared_with[target].add(image_id)
    n_public = len(world.public_ids)

    for acc, sdk in sdks.items():
        own_live = {i for i, o in journal.owner_of.items() if o == acc and i in journal.live}
        listed = self_images(sdk, page_size=7)
        listed_ids = [i["ImageId"] for i in listed]
        assert len(listed_ids) == len(set(listed_ids)), f"{acc}: an image is listed twice"
        mine = {i["ImageId"]: i for i in listed if i["ImageOwnerAlias"] == "self"}
        others = {i["ImageId"] for i in listed if i["ImageOwnerAlias"] == "others"}
        assert set(mine) == own_live, \
            f"{acc}: own images differ: missing {own_live - set(mine)}, extra {set(mine) - own_live}"
        assert others == shared_with[acc], \
            f"{acc}: shared-in images differ: missing {shared_with[acc] - others}, " \
            f"extra {others - shared_with[acc]}"
        for image_id, img in mine.items():
            assert img["ImageName"] == journal.live[image_id].name, (image_id, img)
            assert img["Status"] == "Available", img
        # Creation order: one thread's creates were sequential, so they are listed in the
        # order that thread got them acknowledged.
        for seq in journal.created_by.values():
            seq_live = [i for i in seq if i in own_live]
            assert [i for i in listed_ids if i in seq_live] == seq_live, "creation order"
        # DescribeImages: TotalCount equals what walking every page gives.
        walked = all_images(sdk, page_size=7)
        ids = [i["ImageId"] for i in walked]
        assert len(ids) == len(set(ids))
        assert len(walked) == n_public + len(own_live) + len(shared_with[acc]), acc
        assert set(ids[n_public:]) == own_live | shared_with[acc]
        assert sdk.op("DescribeImages", PageSize="1")["TotalCount"] == len(walked)

    for image_id, own in journal.live.items():
        owner_sdk = sdks[journal.owner_of[image_id]]
        body = owner_sdk.op("DescribeImageSharePermission", ImageId=image_id, PageSize="100")
        assert sorted(check_share_permission_body(body)) == sorted(own.shares), image_id

    everything_visible = set()
    for sdk in sdks.values():
        everything_visible |= {i["ImageId"] for i in self_images(sdk)}
    for image_id in journal.deleted:
        assert image_id not in everything_visible, f"deleted {image_id} is still visible"
        owner_sdk = sdks[journal.owner_of[image_id]]
        expect_error(owner_sdk, "DescribeImageSharePermission", "InvalidParameter.ImageId",
                     ImageId=image_id)
        expect_error(owner_sdk, "DeleteImage", "Error.DeleteImage", ImageId=image_id)


# ------------------------------------------------------------------------------ kill -9

def snapshot_state(world, tenants):
    """Everything each account can see: self images, DescribeImages, share lists."""
    state = {}
    for t in tenants:
        sdk = world.sdk(t, "tea_v2")
        mine = self_images(sdk)
        shares = {}
        for img in mine:
            if img["ImageOwnerAlias"] == "self":
                body = sdk.op("DescribeImageSharePermission", ImageId=img["ImageId"],
                              PageSize="100")
                shares[img["ImageId"]] = sorted(check_share_permission_body(body))
        state[t.account_id] = {
            "self": mine,
            "describe": all_images(sdk),
            "shares": shares,
        }
    return state


def test_kill9_keeps_acknowledged_writes(tmp_path):
    world = World(tmp_path, build_seconds=0, log_name="crash")
    try:
        a, b = world.new_tenant(), world.new_tenant()
        api = world.sdk(a, "tea_v3")
        inst = world.instance(a, NODE_HANGZHOU, data_disk=[30, 40])
        ids = [world.create_image(api, a, name=f"Crash-{n}", InstanceId=inst,
                                  WithDataDisks=(n % 2 == 0)) for n in range(8)]
        names = {i: f"Crash-{n}" for n, i in enumerate(ids)}
        for n in (1, 3, 5, 6):
            api.op("ModifyImageAttribute", ImageId=ids[n], ImageName=f"Renamed-{n}")
            names[ids[n]] = f"Renamed-{n}"
        shares = {ids[2]: [b.account_id], ids[3]: [b.account_id], ids[4]: [b.account_id]}
        for image_id in shares:
            api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=b.account_id)
        api.op("ModifyImageSharePermission", ImageId=ids[4], RemoveAccounts=b.account_id)
        shares[ids[4]] = []
        api.op("DeleteImage", ImageId=ids[4])
        api.op("DeleteImage", ImageId=ids[7])
        live = [i for i in ids if i not in (ids[4], ids[7])]
        b_image = world.create_image(world.sdk(b, "core"), b, name="B-own")
        world.sdk(b, "core").op("ModifyImageSharePermission", ImageId=b_image,
                                AddAccounts=a.account_id)
        last = world.sdk(b, "core").op("ModifyImageAttribute", ImageId=b_image,
                                       ImageName="B-renamed-last")
        assert last["Code"] == 0
        before = snapshot_state(world, [a, b])
        rc = world.server.kill9()
        assert rc == -9, f"the server must have died of SIGKILL, got rc={rc}"

        world.restart()
        api = world.sdk(a, "tea_v3")  # new port
        after = snapshot_state(world, [a, b])
        assert after == before, "state after kill -9 and restart differs from the acknowledged state"
        # ...and independently of the snapshot, the journal of acknowledged writes:
        mine = [i for i in after[a.account_id]["self"] if i["ImageOwnerAlias"] == "self"]
        assert [i["ImageId"] for i in mine] == live
        assert {i["ImageId"]: i["ImageName"] for i in mine} == {i: names[i] for i in live}
        assert after[a.account_id]["shares"] == {i: shares.get(i, []) for i in live}
        b_sees = {i["ImageId"]: i for i in after[b.account_id]["self"]}
        assert set(b_sees) == {ids[2], ids[3], b_image}
        assert b_sees[b_image]["ImageName"] == "B-renamed-last"
        assert after[a.account_id]["shares"][ids[2]] == [b.account_id]
        for gone in (ids[4], ids[7]):
            expect_error(api, "DeleteImage", "Error.DeleteImage", ImageId=gone)
        # Admin-side writes survived as well, and the store still takes writes.
        assert inst in [i["InstanceId"] for i in world.admin.instances()]
        world.create_image(api, a, name="After-restart", InstanceId=inst)
    finally:
        world.stop()


def test_kill9_with_writes_in_flight(tmp_path):
    """Writers keep creating and renaming while the server is SIGKILLed: every acknowledged
    write is there after the restart; an unacknowledged one may or may not be."""
    world = World(tmp_path, build_seconds=0, log_name="inflight")
    try:
        tenants = [world.new_tenant() for _ in range(3)]
        instances = {t.account_id: world.instance(t) for t in tenants}
        lock = threading.Lock()
        acked: Dict[str, Dict[str, object]] = {}  # image -> {"owner", "names": acked names}
        pending_creates = []
        pending_names: Dict[str, str] = {}
        api_errors = []
        killed = threading.Event()

        def writer(n):
            tenant = tenants[n % 3]
            sdk = threaded_sdk(world, tenant, FLAVOR_CYCLE[n % 3])
            rng = random.Random(n)
            i = 0
            while True:
                i += 1
                with lock:
                    # Only images this writer created: two writers renaming one image at
                    # once would leave "the last acknowledged name" undefined.
                    own = [k for k, v in acked.items() if v["writer"] == n]
                rename = own and rng.random() < 0.4
                try:
                    if rename:
                        image_id = rng.choice(own)
                        name = f"W{n}-r{i}"
                        with lock:
                            pending_names[image_id] = name
                        sdk.op("ModifyImageAttribute", ImageId=image_id, ImageName=name)
                        with lock:
                            acked[image_id]["names"].append(name)
                    else:
                        name = f"W{n}-c{i}"
                        with lock:
                            pending_creates.append(name)
                        body = sdk.op("CreateImage", ImageName=name,
                                      InstanceId=instances[tenant.account_id])
                        with lock:
                            acked[body["ImageId"]] = {"owner": tenant.account_id,
                                                      "writer": n, "names": [name]}
                except Exception as e:  # noqa: BLE001 - connection failures after the kill
                    if not killed.is_set() or getattr(e, "status_code", None) or \
                            hasattr(e, "get_http_status") and e.get_http_status():
                        api_errors.append(f"writer {n}: {type(e).__name__}: {e}")
                    return
                if i > 400:
                    return

        threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        killed.set()
        world.server.kill9()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
        assert api_errors == [], api_errors
        assert len(acked) >= 60, f"only {len(acked)} creates acknowledged before the kill"

        world.restart()
        for tenant in tenants:
            listed = self_images(world.sdk(tenant, "tea_v3"))
            ids = [i["ImageId"] for i in listed]
            assert len(ids) == len(set(ids)), "an image is listed twice after the restart"
            assert all(CUSTOM_IMAGE_ID_RE.match(i) for i in ids)
            mine = {k for k, v in acked.items() if v["owner"] == tenant.account_id}
            missing = mine - set(ids)
            assert not missing, f"acknowledged creates lost by kill -9: {sorted(missing)}"
            extra = [i for i in listed if i["ImageId"] not in mine]
            # Only creates in flight at the kill may show up unannounced.
            assert len(extra) <= 2, f"unacknowledged images after restart: {extra}"
            for img in extra:
                assert img["ImageName"] in pending_creates, img
            for img in listed:
                if img["ImageId"] in mine:
                    names = acked[img["ImageId"]]["names"]
                    allowed = {names[-1], pending_names.get(img["ImageId"])}
                    assert img["ImageName"] in allowed, \
                        f"{img['ImageId']}: name {img['ImageName']!r}, last acknowledged " \
                        f"{names[-1]!r}"
                assert img["Status"] == "Available", img
    finally:
        world.stop()


def statuses_until(api, image_id, wanted, timeout):
    return wait_status(api, image_id, wanted, timeout=timeout, interval=0.05)


def test_kill9_during_build_resumes(tmp_path):
    world = World(tmp_path, build_seconds=2, log_name="build")
    try:
        owner = world.new_tenant()
        api = world.sdk(owner, "tea_v3")
        first = world.create_image(api, owner, name="Killed-while-packing")
        seen_first = statuses_until(api, first, ("Packing",) + FAILED_STATUSES + ("Available",), 10)
        assert seen_first == ["Creating", "Packing"], seen_first
        second = world.create_image(api, owner, name="Killed-while-creating")
        seen_second = statuses_until(api, second, WALK + list(FAILED_STATUSES), 5)
        assert seen_second == ["Creating"], seen_second
        world.server.kill9()

        world.restart()
        api = world.sdk(owner, "tea_v3")
        done = ("Available",) + FAILED_STATUSES
        # Poll both together so neither walk is missed.
        deadline = time.monotonic() + 20
        walks = {first: list(seen_first), second: list(seen_second)}
        while True:
            statuses = {i["ImageId"]: i["Status"] for i in self_images(api)}
            for image_id, walk in walks.items():
                if walk[-1] != statuses[image_id]:
                    walk.append(statuses[image_id])
            if all(w[-1] in done for w in walks.values()):
                break
            assert time.monotonic() < deadline, f"builds did not finish after restart: {walks}"
            time.sleep(0.05)
        for image_id, walk in walks.items():
            assert walk[-1] == "Available", f"{image_id}: {walk}"
            assert_forward(walk, WALK)
        assert walks[first][:2] == ["Creating", "Packing"]
        assert "Creating" not in walks[first][2:], \
            f"the image killed while Packing restarted its build: {walks[first]}"
        listed = [i["ImageId"] for i in all_images(api)]
        assert first in listed and second in listed
    finally:
        world.stop()
