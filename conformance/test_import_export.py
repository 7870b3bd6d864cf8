"""ImportImage, ExportImage, DescribeExportImageStatus and DescribeExportImageInfo
(images-api.md 9-12) against the real binary, with real qcow2 files made by `qemu-img` and a
real S3-compatible server (moto's standalone server, started here).

* Local folders (no --buckets): bucket B of any region is <data-dir>/buckets/B; imports land
  in <data-dir>/image-files/images/<id>/disk-<n>.qcow2 and must equal the source byte for byte,
  and so must the exported object.
* S3 (--buckets): import from one moto bucket, share with a second account, export to another
  moto bucket, download with boto3 and compare.
* Bad objects end `Upload_failed` without leaving bytes; names that could leave a bucket are
  refused at call time and nothing is written outside the buckets.
* kill -9 during an import or an export, and (PostgreSQL) a replica killed while its import
  runs: the transfer is taken over and completes, never as a partial image.

Every success body is checked strictly against the SDK's <Action>ResponseBody model (Flavor.op);
every wait is a bounded poll that says what it saw. Both store engines run this file: the
servers here take their backend from ENS_IMAGES_TEST_BACKEND like every World."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

import pytest

from access_support import AdminCli, expect_denied, policy_doc, statement
from ens_support import (
    BACKEND,
    CUSTOM_IMAGE_ID_RE,
    KNOWN_NODES,
    ServerProcess,
    World,
    _server_env,
    assert_forward,
    assert_request_id,
    check_code_zero,
    check_describe_envelope,
    check_self_images_body,
    database_url_for,
    expect_error,
    is_int,
    make_flavor,
    new_access_key,
    raw_v1,
    require_binary,
    self_images,
    wait_status,
)

MIB = 1 << 20
GIB = 1 << 30
REGION = "cn-beijing"
EXPORT_STATUSES = ("Unexported", "Exporting", "Exported", "ExportError")
IMPORT_WALK = ["Creating", "Available"]
FAILED_IMPORT_WALK = ["Creating", "Upload_failed"]
EXPORT_WALK = ["Unexported", "Exporting", "Exported"]
XML_CONTENT_TYPE = "text/xml;charset=utf-8"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NODE_RE = re.compile(r"^[a-z]+(-[a-z0-9_]+)+$")

# Import and export waits: generous bounds, polls every 100 ms.
TRANSFER_TIMEOUT = 60.0
POLL = 0.1


# ---------------------------------------------------------------------------------------
# qcow2 files
# ---------------------------------------------------------------------------------------


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which("qemu-img")
    assert binary, ("qemu-img is required by the import/export tests and was not found on PATH "
                    "(Debian: apt-get install qemu-utils; scripts/test.sh installs it)")
    result = subprocess.run([binary, *map(str, args)], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=300)
    if check:
        assert result.returncode == 0, (f"qemu-img {' '.join(map(str, args))} failed "
                                        f"(rc={result.returncode}): {result.stderr!r}")
    return result


def qcow2_info(path: Path) -> Dict[str, Any]:
    return json.loads(qemu_img("info", "--output=json", path).stdout)


def random_qcow2(path: Path, mib: int) -> Path:
    """A qcow2 with `mib` MiB of random data clusters: `qemu-img convert` of a random raw file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.name + ".raw")
    with open(raw, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, path)
    raw.unlink()
    info = qcow2_info(path)
    assert info["format"] == "qcow2" and info["virtual-size"] == mib * MIB, info
    return path


def empty_qcow2(path: Path, size: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    qemu_img("create", "-f", "qcow2", path, size)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The source files, made once: a 4 MiB random qcow2 (virtual size 4 MiB: ImageSize 1),
    an empty 3 GiB qcow2 (ImageSize 3), a 24 MiB random qcow2 for the S3 flow, and the bad
    objects."""
    base = tmp_path_factory.mktemp("qcow2-sources")
    small = random_qcow2(base / "small.qcow2", 4)
    three = empty_qcow2(base / "three-gib.qcow2", "3G")
    medium = random_qcow2(base / "medium.qcow2", 24)
    data = small.read_bytes()
    truncated = base / "truncated.qcow2"
    truncated.write_bytes(data[:len(data) // 2])  # cut in the middle of the data clusters
    not_qcow2 = base / "not-qcow2.qcow2"
    not_qcow2.write_bytes(os.urandom(MIB))
    empty = base / "empty.qcow2"
    empty.write_bytes(b"")
    return SimpleNamespace(small=small, three=three, medium=medium, truncated=truncated,
                           not_qcow2=not_qcow2, empty=empty, base=base)


# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------


def bucket_dir(world: World, name: str) -> Path:
    """Local bucket `name` of a server without --buckets: <data-dir>/buckets/<name>."""
    path = world.data_dir / "buckets" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_folder(data_dir: Path, image_id: str) -> Path:
    return data_dir / "image-files" / "images" / image_id


def server_log(world: World) -> str:
    return "\n--- server stderr (tail) ---\n" + world.server.stderr_text()[-4000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A private server without --buckets (local folders), leases of 1 s."""
    w = World(tmp_path_factory.mktemp("ens-import"), build_seconds=0, log_name="import",
              extra_args=["--transfer-lease-seconds", "1"])
    bucket_dir(w, "images-in")
    bucket_dir(w, "exports")
    yield w
    w.stop()


class MotoServer:
    """moto's standalone S3 server (`python -m moto.server`) on a free loopback port."""

    def __init__(self, base: Path):
        self.log_path = base / "moto.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        match = None
        while match is None:
            text = self.log_path.read_text("utf-8", "replace")
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", text)
            if match:
                break
            assert self.proc.poll() is None, f"moto server exited (rc={self.proc.returncode}):\n{text}"
            assert time.monotonic() < deadline, f"moto server did not start within 60 s:\n{text}"
            time.sleep(0.1)
        self.endpoint = match.group(1)
        self.client = self.s3_client()
        while True:  # answers requests?
            try:
                self.client.list_buckets()
                break
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                assert time.monotonic() < deadline, f"moto server does not answer: {e!r}"
                time.sleep(0.1)

    def s3_client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 2}))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


S3_REAL_IN, S3_REAL_OUT = "ens-src-real", "ens-dst-real"


@pytest.fixture(scope="module")
def s3world(tmp_path_factory, moto):
    """A server whose cn-beijing buckets s3-in and s3-out are buckets of the moto server
    (under other real names), credentials from AWS_* in the server's environment only."""
    base = tmp_path_factory.mktemp("ens-s3")
    for real in (S3_REAL_IN, S3_REAL_OUT):
        moto.client.create_bucket(Bucket=real)
    config = {"buckets": [
        {"region": REGION, "bucket": "s3-in",
         "s3": {"endpoint": moto.endpoint, "bucket": S3_REAL_IN, "region": "us-east-1",
                "allow_http": True}},
        {"region": REGION, "bucket": "s3-out",
         "s3": {"endpoint": moto.endpoint, "bucket": S3_REAL_OUT, "region": "us-east-1",
                "allow_http": True}},
    ]}
    buckets_file = base / "buckets.json"
    buckets_file.write_text(json.dumps(config, indent=1), "utf-8")
    w = World(base, build_seconds=0, log_name="s3",
              extra_args=["--buckets", str(buckets_file), "--transfer-lease-seconds", "1"],
              env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": ""})
    yield w
    w.stop()


# ---------------------------------------------------------------------------------------
# Calls and waits
# ---------------------------------------------------------------------------------------


def import_params(name: str, bucket: Optional[str] = "images-in", key: Optional[str] = None,
                  region: Optional[str] = REGION, **extra: Any) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "ImageName": name, "Architecture": "x86_64", "OSType": "linux", "ImageFormat": "qcow2",
        "ComputeType": "ens_vm", "OSSBucket": bucket, "OSSObject": key, "OSSRegion": region,
        "Platform": "centos", "OSVersion": "7.9",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def import_image(api, **params) -> str:
    body = api.op("ImportImage", **params)
    assert set(body) == {"RequestId", "ImageId"}, f"ImportImage answers RequestId and ImageId: {body!r}"
    assert CUSTOM_IMAGE_ID_RE.match(body["ImageId"]), body
    return body["ImageId"]


def export_image(api, image_id: str, bucket: str, prefix: Optional[str] = None,
                 region: str = REGION, **extra: Any) -> str:
    params = {"ImageId": image_id, "OSSBucket": bucket, "OSSRegionId": region, **extra}
    if prefix is not None:
        params["OSSPrefix"] = prefix
    body = api.op("ExportImage", **params)
    assert set(body) == {"RequestId", "ExportedImageURL"}, body
    assert isinstance(body["ExportedImageURL"], str) and body["ExportedImageURL"], body
    return body["ExportedImageURL"]


def export_status(api, image_id: str) -> str:
    body = api.op("DescribeExportImageStatus", ImageId=image_id)
    assert set(body) == {"RequestId", "ImageExportStatus"}, body
    assert body["ImageExportStatus"] in EXPORT_STATUSES, body
    return body["ImageExportStatus"]


def wait_import(api, image_id: str, wanted=("Available",), timeout: float = TRANSFER_TIMEOUT,
                log: Callable[[], str] = lambda: "") -> List[str]:
    """Polls DescribeSelfImages until the import ends (Available or Upload_failed); the end
    must be one of `wanted`; statuses only move forward."""
    try:
        seen = wait_status(api, image_id, ("Available", "Upload_failed"), timeout=timeout,
                           interval=POLL)
    except AssertionError as e:
        raise AssertionError(f"import of {image_id}: {e}{log()}") from None
    assert seen[-1] in wanted, f"import of {image_id} ended {seen[-1]}, expected {wanted}: " \
                               f"saw {seen}{log()}"
    assert_forward(seen, IMPORT_WALK if seen[-1] == "Available" else FAILED_IMPORT_WALK)
    return seen


def wait_export(api, image_id: str, wanted=("Exported",), timeout: float = TRANSFER_TIMEOUT,
                log: Callable[[], str] = lambda: "") -> List[str]:
    """Polls DescribeExportImageStatus until Exported or ExportError (must be in `wanted`)."""
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while True:
        status = export_status(api, image_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("Exported", "ExportError"):
            break
        assert time.monotonic() < deadline, \
            f"export of {image_id} did not end within {timeout}s; statuses seen: {seen}{log()}"
        time.sleep(POLL)
    assert seen[-1] in wanted, f"export of {image_id} ended {seen[-1]}, expected {wanted}: " \
                               f"saw {seen}{log()}"
    assert seen[0] != "Unexported", \
        f"ExportImage answered, so the status must already be Exporting or later: {seen}"
    return seen


def wait_gone(path: Path, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, \
            f"{path} still exists {timeout}s later {what}: {sorted(p.name for p in path.rglob('*'))}"
        time.sleep(POLL)


def only(images: List[Dict[str, Any]], image_id: str) -> Dict[str, Any]:
    found = [i for i in images if i["ImageId"] == image_id]
    assert len(found) == 1, f"{image_id} must be listed exactly once, got {found!r}"
    return found[0]


def disks(image_id: str, *sizes: int) -> Dict[str, Any]:
    out = [{"Type": "system", "Size": str(sizes[0]), "Format": "qcow2", "imageId": image_id}]
    out += [{"Type": "data", "Size": str(s), "Format": "qcow2", "imageId": image_id}
            for s in sizes[1:]]
    return {"DiskDeviceMapping": out}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def parse_time(value: str) -> dt.datetime:
    assert TIME_RE.match(value), value
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def check_imported(api, image_id: str, name: str, sizes, before: dt.datetime,
                   after: dt.datetime, platform: str = "centos",
                   os_version: str = "7.9") -> Dict[str, Any]:
    """DescribeSelfImages shows the Available import exactly (strict model check included)."""
    img = dict(only(self_images(api), image_id))
    created = parse_time(img.pop("CreationTime"))
    slack = dt.timedelta(seconds=2)
    assert before - slack <= created <= after + slack, (created, before, after)
    region = img.pop("RegionId")
    assert NODE_RE.match(region), f"RegionId must be an ENS node: {region!r}"
    # An import is on every node the server knows: any node filter finds it.
    for node in {region, *KNOWN_NODES}:
        on_node = api.op("DescribeImages", EnsRegionId=node, ImageId=image_id)
        assert [i["ImageId"] for i in check_describe_envelope(on_node)] == [image_id], \
            f"DescribeImages(EnsRegionId={node}) must list the imported image: {on_node!r}"
    assert img == {
        "ImageId": image_id, "ImageName": name, "ImageOwnerAlias": "self", "Status": "Available",
        "Architecture": "x86_64", "Platform": platform, "OsVersion": os_version,
        "ComputeType": "ens_vm", "ImageSize": str(sizes[0]),
        "ImageStorageSize": str(sum(sizes)), "DiskDeviceMappings": disks(image_id, *sizes),
    }, "an imported image: ImageSize = system disk virtual size in GiB rounded up, one " \
       "DiskDeviceMapping per file, no InstanceId/SnapshotId"
    return img


def export_infos(api, **params) -> Dict[str, Any]:
    """DescribeExportImageInfo, strictly checked (Flavor.op runs check_response_model)."""
    body = api.op("DescribeExportImageInfo", **params)
    assert "Code" not in body, f"DescribeExportImageInfo has no Code field: {body!r}"
    for key in ("PageNumber", "PageSize", "TotalCount"):
        assert is_int(body.get(key)), f"{key} must be a JSON integer, got {body.get(key)!r}"
    assert isinstance(body.get("Images"), dict) and set(body["Images"]) == {"Image"}, body
    for img in body["Images"]["Image"]:
        assert set(img) == {"ImageId", "ImageName", "ImageOwnerAlias", "Architecture",
                            "Platform", "CreationTime", "ImageExportStatus",
                            "ExportedImageURL"}, img
        assert all(isinstance(v, str) for v in img.values()), img
        assert img["ImageExportStatus"] in EXPORT_STATUSES, img
        assert TIME_RE.match(img["CreationTime"]), img
    return body


def file_uri_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "file", f"a local bucket's ExportedImageURL is a file: URL, got {url!r}"
    return Path(urllib.parse.unquote(parts.path))


# ---------------------------------------------------------------------------------------
# Local folders: the whole flow
# ---------------------------------------------------------------------------------------


def test_local_folder_import_export_round_trip(world, sources):
    """Import (Tea V3) from <data-dir>/buckets/images-in, DescribeSelfImages/DescribeImages,
    export to <data-dir>/buckets/exports with a prefix, DescribeExportImageStatus /
    DescribeExportImageInfo, and the exported file equals the source byte for byte."""
    me = world.new_tenant()
    api = world.sdk(me)
    nested = bucket_dir(world, "images-in") / "team" / "v1"
    nested.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sources.small, nested / "small.qcow2")
    before = now()
    image_id = import_image(api, **import_params("Local-small_1", key="team/v1/small.qcow2"))
    after = now()
    wait_import(api, image_id, log=lambda: server_log(world))
    check_imported(api, image_id, "Local-small_1", [1], before, after)

    stored = image_folder(world.data_dir, image_id) / "disk-0.qcow2"
    assert stored.is_file(), f"the import must be kept at {stored}"
    assert stored.read_bytes() == sources.small.read_bytes(), "the kept file is the source, byte for byte"

    # DescribeImages lists it for the owner, as its own.
    listed = check_describe_envelope(api.op("DescribeImages", ImageId=image_id))
    assert [i["ImageId"] for i in listed] == [image_id], listed
    assert listed[0]["ImageOwnerAlias"] == "self" and listed[0]["ImageSize"] == "1", listed[0]
    assert listed[0]["DiskDeviceMappings"] == disks(image_id, 1), listed[0]

    # Never exported.
    assert export_status(api, image_id) == "Unexported"
    body = export_infos(api, ImageId=image_id)
    assert [i["ExportedImageURL"] for i in body["Images"]["Image"]] == [""], body
    assert [i["ImageExportStatus"] for i in body["Images"]["Image"]] == ["Unexported"], body

    url = export_image(api, image_id, "exports", prefix="team1/")
    target = bucket_dir(world, "exports") / "team1" / f"{image_id}.qcow2"
    assert file_uri_path(url) == target.resolve(), \
        f"ExportedImageURL must name the object <OSSPrefix><ImageId>.qcow2 in the bucket: {url}"
    seen = wait_export(api, image_id, log=lambda: server_log(world))
    assert_forward(seen, EXPORT_WALK)

    assert target.is_file(), f"the export must be at {target}"
    assert target.read_bytes() == sources.small.read_bytes(), \
        "the exported object equals the imported source, byte for byte"
    info = qcow2_info(target)
    assert info["format"] == "qcow2" and info["virtual-size"] == 4 * MIB, info

    body = export_infos(api, ImageId=image_id)
    assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == (1, 10, 1), body
    own = only(self_images(api), image_id)
    assert body["Images"]["Image"] == [{
        "ImageId": image_id, "ImageName": "Local-small_1", "ImageOwnerAlias": "self",
        "Architecture": "x86_64", "Platform": "centos", "CreationTime": own["CreationTime"],
        "ImageExportStatus": "Exported", "ExportedImageURL": url,
    }], body
    # The export does not change the image.
    assert only(self_images(api), image_id)["Status"] == "Available"


def test_import_size_is_the_virtual_size_rounded_up(world, sources):
    """An empty 3 GiB qcow2 (a few hundred KiB of file) is an image of 3 GiB."""
    me = world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.three, bucket_dir(world, "images-in") / "three-gib.qcow2")
    before = now()
    image_id = import_image(api, **import_params("Three-GiB", key="three-gib.qcow2",
                                                 Platform="ubuntu", OSVersion="22.04",
                                                 LicenseType="BYOL"))
    after = now()
    wait_import(api, image_id, log=lambda: server_log(world))
    check_imported(api, image_id, "Three-GiB", [3], before, after, platform="ubuntu",
                   os_version="22.04")
    stored = image_folder(world.data_dir, image_id) / "disk-0.qcow2"
    assert sha256_of(stored) == sha256_of(sources.three)


def test_describe_export_image_info_lists_every_own_image(world, sources):
    """Every custom image of the caller (imported or made by CreateImage), oldest first, with
    its export state; ImageId/ImageName filters and pages; nothing of other accounts."""
    me, other = world.new_tenant(), world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "list-small.qcow2")
    imported = import_image(api, **import_params("Listed-import", key="list-small.qcow2"))
    created = world.create_image(api, me, name="Listed-create")
    wait_import(api, imported, log=lambda: server_log(world))
    world.create_image(world.sdk(other), other, name="Not-mine")

    body = export_infos(api)
    assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == (1, 10, 2), body
    listed = body["Images"]["Image"]
    assert [i["ImageId"] for i in listed] == [imported, created], "oldest first, own images only"
    assert [(i["ImageName"], i["ImageExportStatus"], i["ExportedImageURL"]) for i in listed] == \
        [("Listed-import", "Unexported", ""), ("Listed-create", "Unexported", "")]
    assert all(i["ImageOwnerAlias"] == "self" for i in listed), listed

    page = export_infos(api, PageNumber=2, PageSize=1)
    assert (page["PageNumber"], page["PageSize"], page["TotalCount"]) == (2, 1, 2), page
    assert [i["ImageId"] for i in page["Images"]["Image"]] == [created]
    past = export_infos(api, PageNumber=3, PageSize=1)
    assert past["TotalCount"] == 2 and past["Images"]["Image"] == [], past
    by_name = export_infos(api, ImageName="Listed-create")
    assert [i["ImageId"] for i in by_name["Images"]["Image"]] == [created], by_name
    by_id = export_infos(api, ImageId=imported)
    assert [i["ImageId"] for i in by_id["Images"]["Image"]] == [imported], by_id
    assert export_infos(world.sdk(other), ImageId=imported)["Images"]["Image"] == [], \
        "another account's image is not listed"


def test_import_without_platform_and_os_version(world, sources):
    """Only the required parameters (no Platform, OSVersion, OSSRegion): Platform falls back
    to `linux`; the image is listed with every DescribeSelfImages field a non-empty string."""
    me = world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "bare.qcow2")
    image_id = import_image(api, **import_params("Bare-import", key="bare.qcow2", region=None,
                                                 Platform=None, OSVersion=None))
    wait_import(api, image_id, log=lambda: server_log(world))
    img = only(self_images(api), image_id)  # check_self_images_body: OsVersion non-empty
    assert img["Platform"] == "linux", img


# ---------------------------------------------------------------------------------------
# S3-compatible object storage (moto)
# ---------------------------------------------------------------------------------------


def test_s3_import_share_export_round_trip(s3world, moto, sources):
    """The definition of done: import from an S3 bucket with the Tea SDK, describe, share
    with a second account (which then sees it as `others`), export to another bucket,
    download with boto3 and compare byte for byte."""
    owner, friend = s3world.new_tenant(), s3world.new_tenant()
    api, friend_api = s3world.sdk(owner), s3world.sdk(friend)
    source_key = "incoming/medium image.qcow2"
    moto.client.upload_file(str(sources.medium), S3_REAL_IN, source_key)

    before = now()
    image_id = import_image(api, **import_params("S3-medium", bucket="s3-in", key=source_key))
    after = now()
    wait_import(api, image_id, log=lambda: server_log(s3world))
    check_imported(api, image_id, "S3-medium", [1], before, after)
    stored = image_folder(s3world.data_dir, image_id) / "disk-0.qcow2"
    assert sha256_of(stored) == sha256_of(sources.medium), "the import is the S3 object, byte for byte"

    body = api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=friend.account_id)
    assert set(body) == {"RequestId"}, body
    theirs = only(check_describe_envelope(friend_api.op("DescribeImages", ImageId=image_id)),
                  image_id)
    assert theirs["ImageOwnerAlias"] == "others", theirs
    assert theirs["ImageSize"] == "1" and theirs["DiskDeviceMappings"] == disks(image_id, 1), theirs
    assert only(self_images(friend_api), image_id)["ImageOwnerAlias"] == "others"
    assert only(self_images(api), image_id)["ImageOwnerAlias"] == "self"

    url = export_image(api, image_id, "s3-out", prefix="shared/")
    key = f"shared/{image_id}.qcow2"
    assert url == f"{moto.endpoint}/{S3_REAL_OUT}/{key}", \
        f"ExportedImageURL defaults to <endpoint>/<real bucket>/<OSSPrefix><ImageId>.qcow2: {url}"
    seen = wait_export(api, image_id, log=lambda: server_log(s3world))
    assert_forward(seen, EXPORT_WALK)

    downloaded = sources.base / f"downloaded-{image_id}.qcow2"
    moto.client.download_file(S3_REAL_OUT, key, str(downloaded))
    assert downloaded.read_bytes() == sources.medium.read_bytes(), \
        "the object downloaded from the export bucket equals the source, byte for byte"
    assert qcow2_info(downloaded)["virtual-size"] == 24 * MIB
    listed = moto.client.list_objects_v2(Bucket=S3_REAL_OUT, Prefix="shared/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [key], listed.get("Contents")
    info = only(export_infos(api, ImageId=image_id)["Images"]["Image"], image_id)
    assert (info["ImageExportStatus"], info["ExportedImageURL"]) == ("Exported", url), info
    # The shared-in account cannot export it.
    expect_error(friend_api, "ExportImage", "InvalidParameter", ImageId=image_id,
                 OSSBucket="s3-out", OSSRegionId=REGION)


def test_image_files_on_s3(tmp_path_factory, moto, sources):
    """Image files kept in an S3 bucket (how replicas on several hosts share them): an import
    from a folder bucket lands in that bucket as images/<id>/disk-0.qcow2, byte for byte, the
    export reads it back from there, and deleting the image removes the object."""
    real = "ens-image-files"
    moto.client.create_bucket(Bucket=real)
    base = tmp_path_factory.mktemp("ens-s3-files")
    config = {"image_files": {"s3": {"endpoint": moto.endpoint, "bucket": real,
                                     "region": "us-east-1", "allow_http": True}}}
    buckets_file = base / "buckets.json"
    buckets_file.write_text(json.dumps(config), "utf-8")
    w = World(base, build_seconds=0, log_name="s3-files",
              extra_args=["--buckets", str(buckets_file)],
              env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": ""})
    try:
        me = w.new_tenant()
        api = w.sdk(me)
        shutil.copyfile(sources.medium, bucket_dir(w, "images-in") / "medium.qcow2")
        bucket_dir(w, "exports")
        image_id = import_image(api, **import_params("On-s3", key="medium.qcow2"))
        wait_import(api, image_id, log=lambda: server_log(w))
        key = f"images/{image_id}/disk-0.qcow2"
        stored = moto.client.get_object(Bucket=real, Key=key)["Body"].read()
        assert stored == sources.medium.read_bytes(), "the image file in S3 is the source"
        assert not (w.data_dir / "image-files").exists() or \
            not any((w.data_dir / "image-files").rglob("*.qcow2")), "nothing kept locally"

        url = export_image(api, image_id, "exports", prefix="back-")
        wait_export(api, image_id, log=lambda: server_log(w))
        assert file_uri_path(url).read_bytes() == sources.medium.read_bytes()

        api.op("DeleteImage", ImageId=image_id)
        deadline = time.monotonic() + TRANSFER_TIMEOUT
        while time.monotonic() < deadline:
            listed = moto.client.list_objects_v2(Bucket=real, Prefix=f"images/{image_id}/")
            if not listed.get("Contents"):
                break
            time.sleep(POLL)
        assert not listed.get("Contents"), f"the deleted image's object stays: {listed.get('Contents')}"
    finally:
        w.stop()


def test_s3_bucket_is_mapped_per_region(s3world, moto, sources):
    """s3-in is configured for cn-beijing only: in another region it is an unknown bucket."""
    me = s3world.new_tenant()
    api = s3world.sdk(me)
    moto.client.upload_file(str(sources.small), S3_REAL_IN, "small.qcow2")
    expect_error(api, "ImportImage", "InvalidParameter.OSSBucket",
                 **import_params("Wrong-region", bucket="s3-in", key="small.qcow2",
                                 region="ap-southeast-1"))
    assert self_images(api) == [], "a refused ImportImage creates nothing"


# ---------------------------------------------------------------------------------------
# Core SDK (V1) and XML
# ---------------------------------------------------------------------------------------


def test_core_sdk_two_disk_import_and_export(world, sources):
    """aliyunsdkens ImportImageRequest with a hand-written DiskDeviceMapping (system disk of
    1 GiB, data disk of 3 GiB) → both disks with their sizes; export and status via core."""
    me = world.new_tenant()
    core = world.sdk(me, "core")
    folder = bucket_dir(world, "images-in")
    shutil.copyfile(sources.small, folder / "core-system.qcow2")
    shutil.copyfile(sources.three, folder / "core-data.qcow2")
    mapping = json.dumps([  # default separators (spaces), as a core SDK caller writes it
        {"OSSBucket": "images-in", "OSSObject": "core-system.qcow2", "OSSRegion": REGION},
        {"OSSBucket": "images-in", "OSSObject": "core-data.qcow2"},
    ])
    params = import_params("Core-two-disks", bucket=None, key=None, region=None,
                           DiskDeviceMapping=mapping)
    before = now()
    image_id = import_image(core, **params)
    after = now()
    wait_import(core, image_id, log=lambda: server_log(world))
    check_imported(core, image_id, "Core-two-disks", [1, 3], before, after)
    folder_of = image_folder(world.data_dir, image_id)
    assert sha256_of(folder_of / "disk-0.qcow2") == sha256_of(sources.small)
    assert sha256_of(folder_of / "disk-1.qcow2") == sha256_of(sources.three)

    assert export_status(core, image_id) == "Unexported"
    url = export_image(core, image_id, "exports", prefix="core")
    target = bucket_dir(world, "exports") / f"core{image_id}.qcow2"
    assert file_uri_path(url) == target.resolve(), url
    wait_export(core, image_id, log=lambda: server_log(world))
    assert target.read_bytes() == sources.small.read_bytes(), "an export writes the system disk"
    body = export_infos(core, ImageId=image_id, PageSize="50")
    assert body["PageSize"] == 50, body
    assert [(i["ImageExportStatus"], i["ExportedImageURL"]) for i in body["Images"]["Image"]] \
        == [("Exported", url)]


def xml_child(elem, tag: str) -> str:
    found = elem.find(tag)
    assert found is not None, f"<{tag}> missing under <{elem.tag}>: {ET.tostring(elem)[:400]!r}"
    return found.text or ""


def test_xml_export_status_and_info(world, sources):
    """Format=XML (signed raw V1 requests) for DescribeExportImageStatus and
    DescribeExportImageInfo, matching the JSON answers."""
    me = world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "xml.qcow2")
    image_id = import_image(api, **import_params("Xml-export", key="xml.qcow2"))
    other = world.create_image(api, me, name="Xml-never")
    wait_import(api, image_id, log=lambda: server_log(world))
    url = export_image(api, image_id, "exports", prefix="xml-")
    wait_export(api, image_id, log=lambda: server_log(world))

    resp = raw_v1(world.host, me.ak, me.secret, action="DescribeExportImageStatus", fmt="XML",
                  extra={"ImageId": image_id})
    assert resp.status == 200, resp.body
    assert resp.content_type == XML_CONTENT_TYPE, resp.content_type
    root = ET.fromstring(resp.body)
    assert root.tag == "DescribeExportImageStatusResponse", root.tag
    assert {c.tag for c in root} == {"RequestId", "ImageExportStatus"}, [c.tag for c in root]
    assert_request_id(xml_child(root, "RequestId"))
    assert xml_child(root, "ImageExportStatus") == "Exported"

    resp = raw_v1(world.host, me.ak, me.secret, action="DescribeExportImageInfo", fmt="XML",
                  extra={"PageSize": "5"})
    assert resp.status == 200, resp.body
    assert resp.content_type == XML_CONTENT_TYPE, resp.content_type
    root = ET.fromstring(resp.body)
    assert root.tag == "DescribeExportImageInfoResponse", root.tag
    assert_request_id(xml_child(root, "RequestId"))
    assert (xml_child(root, "PageNumber"), xml_child(root, "PageSize"),
            xml_child(root, "TotalCount")) == ("1", "5", "2")
    wrappers = root.findall("Images")
    assert len(wrappers) == 1, ET.tostring(root)[:500]
    items = list(wrappers[0])
    assert [i.tag for i in items] == ["Image", "Image"], "array items repeat <Image> under <Images>"
    as_json = export_infos(api, PageSize=5)["Images"]["Image"]
    assert [xml_child(i, "ImageId") for i in items] == [image_id, other]
    for item, j in zip(items, as_json):
        assert {c.tag for c in item} == set(j), (ET.tostring(item), j)
        for key, value in j.items():
            assert xml_child(item, key) == value, (key, ET.tostring(item))
    assert xml_child(items[0], "ExportedImageURL") == url
    assert xml_child(items[1], "ExportedImageURL") == ""
    assert xml_child(items[1], "ImageExportStatus") == "Unexported"


# ---------------------------------------------------------------------------------------
# Bad objects, bad names, bad parameters
# ---------------------------------------------------------------------------------------

BAD_OBJECTS = ("not-qcow2", "empty", "truncated", "missing")


@pytest.mark.parametrize("case", BAD_OBJECTS)
def test_bad_object_ends_upload_failed_without_bytes(world, sources, case):
    """Not a qcow2, empty, truncated mid-data, or missing: the call is accepted, the import
    ends Upload_failed, no byte is kept, and the image cannot be exported."""
    me = world.new_tenant()
    api = world.sdk(me)
    folder = bucket_dir(world, "images-in") / "bad"
    folder.mkdir(exist_ok=True)
    key = f"bad/{case}-{secrets.token_hex(3)}.qcow2"
    if case != "missing":
        shutil.copyfile(getattr(sources, case.replace("-", "_")), bucket_dir(world, "images-in") / key)
    image_id = import_image(api, **import_params(f"Bad-{case}", key=key))
    seen = wait_import(api, image_id, wanted=("Upload_failed",), log=lambda: server_log(world))
    assert seen[-1] == "Upload_failed"
    leftover = image_folder(world.data_dir, image_id)
    assert not leftover.exists(), \
        f"a failed import keeps no bytes: {sorted(str(p) for p in leftover.rglob('*'))}"
    assert api.op("DescribeImages", ImageId=image_id)["Images"]["Image"] == [], \
        "an image that failed is not usable, so DescribeImages does not list it"
    expect_error(api, "ExportImage", "IncorrectStatus.Image", ImageId=image_id,
                 OSSBucket="exports", OSSRegionId=REGION)
    assert export_status(api, image_id) == "Unexported"
    check_code_zero(api.op("DeleteImage", ImageId=image_id))
    assert self_images(api) == []


def test_truncated_source_still_has_a_readable_header(sources):
    """What makes the truncated case meaningful: the cut file's header is intact (qemu-img
    info reads it as the 4 MiB qcow2 it was), only its tables show the damage (qemu-img check
    fails): the server must look past the header to refuse it."""
    info = qcow2_info(sources.truncated)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 4 * MIB), info
    check = qemu_img("check", sources.truncated, check=False)
    assert check.returncode != 0, "qemu-img check must see the truncation"
    assert sources.truncated.stat().st_size * 2 <= sources.small.stat().st_size


TRAVERSALS = ("../x", "/etc/passwd", "a/../../b", "..")


def files_under(root: Path) -> set:
    """Every file under `root`, except the store's own (database, logs, image files)."""
    out = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_dir() or "image-files" in rel.parts or path.suffix == ".log" \
                or ".db" in path.name or path.name.startswith("policy-"):
            continue
        out.add(str(rel))
    return out


@pytest.mark.parametrize("value", TRAVERSALS)
def test_names_that_leave_the_bucket_are_refused(world, sources, value):
    """OSSObject, OSSBucket, DiskDeviceMapping entries and OSSPrefix that could reach outside
    a bucket are refused with InvalidParameter.<Name>, and no file appears anywhere."""
    me = world.new_tenant()
    api = world.sdk(me)
    exportable = world.create_image(api, me, name="Traversal-target")
    # A valid qcow2 just outside the bucket, and one outside the buckets root.
    buckets_root = world.data_dir / "buckets"
    shutil.copyfile(sources.small, buckets_root / "secret.qcow2")
    shutil.copyfile(sources.small, world.data_dir / "secret.qcow2")
    before = files_under(world.base)

    refusals = [
        ("ImportImage", "InvalidParameter.OSSObject",
         import_params("Traverse", key=value)),
        # The planted files, one and two levels up from the bucket.
        ("ImportImage", "InvalidParameter.OSSObject",
         import_params("Traverse", key="../secret.qcow2")),
        ("ImportImage", "InvalidParameter.OSSObject",
         import_params("Traverse", key="sub/../../../secret.qcow2")),
        ("ImportImage", "InvalidParameter.OSSBucket",
         import_params("Traverse", bucket=value, key="small.qcow2")),
        ("ImportImage", "InvalidParameter.DiskDeviceMapping",
         import_params("Traverse", bucket=None, key=None, region=None, DiskDeviceMapping=[
             {"OSSBucket": "images-in", "OSSObject": value, "OSSRegion": REGION}])),
        ("ImportImage", "InvalidParameter.DiskDeviceMapping",
         import_params("Traverse", bucket=None, key=None, region=None, DiskDeviceMapping=[
             {"OSSBucket": "images-in", "OSSObject": "ok.qcow2"},
             {"OSSBucket": value, "OSSObject": "ok.qcow2"}])),
        ("ExportImage", "InvalidParameter.OSSPrefix",
         {"ImageId": exportable, "OSSBucket": "exports", "OSSRegionId": REGION,
          "OSSPrefix": value}),
        ("ExportImage", "InvalidParameter.OSSBucket",
         {"ImageId": exportable, "OSSBucket": value, "OSSRegionId": REGION}),
    ]
    for action, code, params in refusals:
        expect_error(api, action, code, **params)

    assert [i["ImageId"] for i in self_images(api)] == [exportable], \
        "refused ImportImage calls create nothing"
    assert export_status(api, exportable) == "Unexported", "refused ExportImage calls start nothing"
    time.sleep(0.3)  # an absence check: give a (wrongly) started transfer time to write
    created = files_under(world.base) - before
    assert created == set(), f"files appeared after refused calls: {sorted(created)}"
    for stray in (Path(f"/etc/passwd{exportable}.qcow2"), Path(f"/b{exportable}.qcow2"),
                  buckets_root / f"x{exportable}.qcow2", buckets_root / f"b{exportable}.qcow2"):
        assert not stray.exists(), stray


def test_unconfigured_bucket_is_refused_at_call_time(world, sources):
    me = world.new_tenant()
    api = world.sdk(me)
    exportable = world.create_image(api, me, name="Unconfigured-target")
    # A plain file where a bucket folder would be is no bucket either.
    (world.data_dir / "buckets" / "plain-file").write_bytes(b"not a folder")
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "ok.qcow2")
    for bucket in ("no-such-bucket", "plain-file"):
        expect_error(api, "ImportImage", "InvalidParameter.OSSBucket",
                     **import_params("Unconfigured", bucket=bucket, key="ok.qcow2"))
        expect_error(api, "ExportImage", "InvalidParameter.OSSBucket", ImageId=exportable,
                     OSSBucket=bucket, OSSRegionId=REGION)
    expect_error(api, "ImportImage", "InvalidParameter.DiskDeviceMapping",
                 **import_params("Unconfigured", bucket=None, key=None, region=None,
                                 DiskDeviceMapping=[
                                     {"OSSBucket": "images-in", "OSSObject": "ok.qcow2"},
                                     {"OSSBucket": "no-such-bucket", "OSSObject": "ok.qcow2"}]))
    assert [i["ImageId"] for i in self_images(api)] == [exportable]
    assert export_status(api, exportable) == "Unexported"


def test_parameter_errors(world):
    me = world.new_tenant()
    api = world.sdk(me)
    expect_error(api, "ImportImage", "InvalidParameter.ImageFormat",
                 **import_params("Raw-format", key="ok.qcow2", ImageFormat="raw"))
    params = import_params("Nameless", key="ok.qcow2")
    del params["ImageName"]
    expect_error(api, "ImportImage", "MissingParameter", **params)
    expect_error(api, "DescribeExportImageInfo", "InvalidParameter.PageSize", PageSize=51)
    expect_error(world.sdk(me, "core"), "DescribeExportImageInfo", "InvalidParameter.PageSize",
                 PageSize="51")
    assert self_images(api) == []
    assert export_infos(api, PageSize=50)["PageSize"] == 50


def test_export_refused_for_public_and_shared_in_images(world):
    me, owner = world.new_tenant(), world.new_tenant()
    api = world.sdk(me)
    expect_error(api, "ExportImage", "InvalidParameter", ImageId=world.public_ids[0],
                 OSSBucket="exports", OSSRegionId=REGION)
    shared = world.create_image(world.sdk(owner), owner, name="Shared-in")
    world.sdk(owner).op("ModifyImageSharePermission", ImageId=shared, AddAccounts=me.account_id)
    assert only(self_images(api), shared)["ImageOwnerAlias"] == "others"
    expect_error(api, "ExportImage", "InvalidParameter", ImageId=shared, OSSBucket="exports",
                 OSSRegionId=REGION)
    assert export_status(world.sdk(owner), shared) == "Unexported"
    assert not list(bucket_dir(world, "exports").glob(f"*{shared}*"))


# ---------------------------------------------------------------------------------------
# Exports that cannot start: Creating, and an export already running
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stall_world(tmp_path_factory):
    """A server whose cn-beijing bucket `stall` is an S3 endpoint that accepts connections
    and never answers: an import from it stays Creating, an export to it stays Exporting,
    for as long as the test needs, whatever the timing."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # never accepted: the kernel completes handshakes, nobody answers
    base = tmp_path_factory.mktemp("ens-stall")
    config = {"buckets": [{"region": REGION, "bucket": "stall",
                           "s3": {"endpoint": f"http://127.0.0.1:{hole.getsockname()[1]}",
                                  "bucket": "hole", "allow_http": True}}]}
    buckets_file = base / "buckets.json"
    buckets_file.write_text(json.dumps(config), "utf-8")
    w = World(base, build_seconds=0, log_name="stall",
              extra_args=["--buckets", str(buckets_file), "--transfer-lease-seconds", "1"],
              env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": ""})
    bucket_dir(w, "images-in")
    bucket_dir(w, "exports")
    yield w
    w.server.stop(timeout=20)
    hole.close()


def test_export_refused_while_creating_or_exporting(stall_world, sources):
    """ExportImage of an image still Creating, and a second ExportImage while one runs:
    IncorrectStatus.Image, and neither changes anything (deterministic: the transfers wait on
    an endpoint that never answers)."""
    w = stall_world
    me = w.new_tenant()
    api = w.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(w, "images-in") / "small.qcow2")
    ready = import_image(api, **import_params("Ready", key="small.qcow2"))
    wait_import(api, ready, log=lambda: server_log(w))

    creating = import_image(api, **import_params("Stalled", bucket="stall", key="never.qcow2"))
    assert only(self_images(api), creating)["Status"] == "Creating"
    expect_error(api, "ExportImage", "IncorrectStatus.Image", ImageId=creating,
                 OSSBucket="exports", OSSRegionId=REGION)
    assert export_status(api, creating) == "Unexported"

    url = export_image(api, ready, "stall", prefix="p")
    assert export_status(api, ready) == "Exporting"
    expect_error(api, "ExportImage", "IncorrectStatus.Image", ImageId=ready,
                 OSSBucket="exports", OSSRegionId=REGION)
    time.sleep(0.5)
    assert export_status(api, ready) == "Exporting", "still running: the second call changed nothing"
    infos = {i["ImageId"]: i for i in export_infos(api)["Images"]["Image"]}
    assert (infos[ready]["ImageExportStatus"], infos[ready]["ExportedImageURL"]) == \
        ("Exporting", url), infos[ready]
    assert infos[creating]["ImageExportStatus"] == "Unexported", infos[creating]
    assert only(self_images(api), creating)["Status"] == "Creating"
    assert not (bucket_dir(w, "exports") / f"{ready}.qcow2").exists()

    # Two transfers hang on the silent endpoint; the server runs others beside them.
    beside = import_image(api, **import_params("Beside", key="small.qcow2"))
    wait_import(api, beside, log=lambda: server_log(w))
    assert only(self_images(api), beside)["Status"] == "Available"
    assert export_status(api, ready) == "Exporting"


# ---------------------------------------------------------------------------------------
# An image made by CreateImage: a sparse qcow2 of its system disk's size
# ---------------------------------------------------------------------------------------


def test_export_of_a_created_image_is_an_empty_qcow2(world):
    me = world.new_tenant()
    api = world.sdk(me)
    instance = world.instance(me, system_disk=20, data_disk=[50])
    image_id = world.create_image(api, me, name="Created-export", InstanceId=instance,
                                  WithDataDisks="true")
    assert only(self_images(api), image_id)["Status"] == "Available"
    url = export_image(api, image_id, "exports", prefix="created-")
    wait_export(api, image_id, log=lambda: server_log(world))
    target = file_uri_path(url)
    assert target == (bucket_dir(world, "exports") / f"created-{image_id}.qcow2").resolve()
    info = qcow2_info(target)
    assert info["format"] == "qcow2", info
    assert info["virtual-size"] == 20 * GIB, f"the system disk's size (20 GiB): {info}"
    check = qemu_img("check", target, check=False)
    assert check.returncode == 0, f"qemu-img check must pass: {check.stdout!r} {check.stderr!r}"
    assert target.stat().st_size < MIB, f"an empty image is small: {target.stat().st_size} bytes"


# ---------------------------------------------------------------------------------------
# kill -9
# ---------------------------------------------------------------------------------------

BIG_MIB = 64  # the debug build copies a few tens of MiB/s: the kill lands mid-copy


@pytest.fixture(scope="module")
def crash_world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("ens-crash"), build_seconds=0, log_name="crash",
              extra_args=["--transfer-lease-seconds", "1"])
    big = random_qcow2(bucket_dir(w, "images-in") / "big.qcow2", BIG_MIB)
    w.big = big
    w.big_sha256 = sha256_of(big)
    bucket_dir(w, "exports")
    yield w
    w.stop()


def test_import_killed_mid_copy_completes_after_restart(crash_world):
    """kill -9 right after ImportImage answers (64 MiB source), restart with a lease of 1 s:
    the import completes, and the kept file is the whole source."""
    w = crash_world
    me = w.new_tenant()
    image_id = import_image(w.sdk(me), **import_params("Crash-import", key="big.qcow2"))
    w.server.kill9()
    folder = image_folder(w.data_dir, image_id)
    if (folder / "disk-0.qcow2").exists():
        warnings.warn("the kill landed after the import's copy: the take-over was not exercised")
    w.restart()
    api = w.sdk(me)
    wait_import(api, image_id, log=lambda: server_log(w))
    img = only(self_images(api), image_id)
    assert (img["ImageSize"], img["DiskDeviceMappings"]) == ("1", disks(image_id, 1)), img
    stored = folder / "disk-0.qcow2"
    assert sha256_of(stored) == w.big_sha256, "never a partial image: the kept file is the source"
    leftovers = sorted(p.name for p in folder.iterdir() if p.name != "disk-0.qcow2")
    assert not leftovers, f"image folder of {image_id} keeps files of the killed copy: {leftovers}"


def test_export_killed_mid_copy_completes_after_restart(crash_world):
    """kill -9 right after ExportImage answers, restart: Exported, object equals the source."""
    w = crash_world
    me = w.new_tenant()
    api = w.sdk(me)
    image_id = import_image(api, **import_params("Crash-export", key="big.qcow2"))
    wait_import(api, image_id, log=lambda: server_log(w))
    url = export_image(api, image_id, "exports", prefix="crash-")
    w.server.kill9()
    target = file_uri_path(url)
    if target.exists():
        warnings.warn("the kill landed after the export's copy: the take-over was not exercised")
    w.restart()
    api = w.sdk(me)
    wait_export(api, image_id, log=lambda: server_log(w))
    assert sha256_of(target) == w.big_sha256, "the exported object equals the source after the restart"
    extra = sorted(p.name for p in target.parent.iterdir()
                   if image_id in p.name and p != target)
    assert not extra, f"export bucket keeps files of the killed upload beside {target.name}: {extra}"


# ---------------------------------------------------------------------------------------
# Deleting an image removes its bytes
# ---------------------------------------------------------------------------------------


def test_delete_image_removes_its_files(world, sources):
    me = world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "doomed.qcow2")
    image_id = import_image(api, **import_params("Doomed", key="doomed.qcow2"))
    wait_import(api, image_id, log=lambda: server_log(world))
    folder = image_folder(world.data_dir, image_id)
    assert (folder / "disk-0.qcow2").is_file()
    check_code_zero(api.op("DeleteImage", ImageId=image_id))
    assert self_images(api) == []
    wait_gone(folder, what="after DeleteImage")
    assert (bucket_dir(world, "images-in") / "doomed.qcow2").is_file(), \
        "the source object is the caller's: it stays"


# ---------------------------------------------------------------------------------------
# Replicas (PostgreSQL)
# ---------------------------------------------------------------------------------------


def spawn_replica(base: Path, name: str, database_url: str, master_key: Path,
                  buckets_file: Path, ak: str, secret: str) -> ServerProcess:
    data_dir = base / name
    data_dir.mkdir(exist_ok=True)
    stderr_path = base / f"{name}.{secrets.token_hex(2)}.stderr.log"
    cmd = [str(require_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
           "--database-url", database_url, "--master-key-file", str(master_key),
           "--buckets", str(buckets_file), "--transfer-lease-seconds", "1",
           "--image-build-seconds", "0"]
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=_server_env(ak, secret))
    replica = ServerProcess(proc, data_dir, stderr_path, ak, secret)
    replica.wait_listening(timeout=90)
    return replica


@pytest.mark.skipif(BACKEND != "postgres",
                    reason="replicas share one PostgreSQL database: runs with "
                           "ENS_IMAGES_TEST_BACKEND=postgres (the embedded SQLite store is "
                           "one process's)")
def test_replica_takes_over_the_import_of_a_killed_replica(tmp_path):
    """Replicas A and B share one database, one image-files folder and one local bucket; an
    import recorded through A, A killed -9 at once: B (lease 1 s) completes it, and a
    restarted A and B both read it Available."""
    shared = tmp_path / "shared"
    (shared / "buckets" / "images-in").mkdir(parents=True)
    (shared / "files").mkdir()
    source = random_qcow2(shared / "buckets" / "images-in" / "replicated.qcow2", 64)
    buckets_file = tmp_path / "buckets.json"
    buckets_file.write_text(json.dumps({"local_root": str(shared / "buckets"),
                                        "image_files": {"local": str(shared / "files")}}), "utf-8")
    master_key = tmp_path / "master.key"
    master_key.write_text(secrets.token_hex(32))
    master_key.chmod(0o600)
    database_url = database_url_for(tmp_path / "cluster-database")
    ak, secret = new_access_key()
    start = lambda name: spawn_replica(tmp_path, name, database_url, master_key,  # noqa: E731
                                       buckets_file, ak, secret)
    a, b = start("a"), start("b")
    replicas = [a, b]
    try:
        image_id = import_image(make_flavor("tea_v3", a.host, ak, secret),
                                **import_params("Replicated", key="replicated.qcow2"))
        a.kill9()
        via_b = make_flavor("tea_v2", b.host, ak, secret)
        seen = wait_status(via_b, image_id, ("Available", "Upload_failed"),
                           timeout=TRANSFER_TIMEOUT, interval=POLL)
        assert seen[-1] == "Available", f"B must finish A's import: {seen}\n{b.stderr_text()[-3000:]}"
        stored = shared / "files" / "images" / image_id / "disk-0.qcow2"
        assert sha256_of(stored) == sha256_of(source), "the shared image file is the source"
        a2 = start("a")
        replicas.append(a2)
        for replica, flavor in ((a2, "tea_v3"), (b, "core")):
            img = only(self_images(make_flavor(flavor, replica.host, ak, secret)), image_id)
            assert (img["Status"], img["ImageSize"]) == ("Available", "1"), (replica.host, img)
    finally:
        for replica in replicas:
            replica.stop()


# ---------------------------------------------------------------------------------------
# RAM and audit
# ---------------------------------------------------------------------------------------


def test_ram_user_allowed_only_export_status(world, sources):
    me = world.new_tenant()
    owner_api = world.sdk(me)
    admin = AdminCli(world.data_dir)
    name = f"exp-status-{secrets.token_hex(3)}"
    admin.create_user(me.account_id, name)
    admin.create_policy(me.account_id, f"p-{name}",
                        policy_doc(statement("Allow", "ens:DescribeExportImageStatus")))
    admin.attach(me.account_id, f"p-{name}", name)
    user = admin.create_key(me.account_id, name)
    image_id = world.create_image(owner_api, me, name="Ram-target")
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "ram.qcow2")
    for flavor in ("tea_v3", "core"):
        api = make_flavor(flavor, world.host, user.ak, user.secret)
        expect_denied(api, "ImportImage", **import_params("Ram-import", key="ram.qcow2"))
        expect_denied(api, "ExportImage", ImageId=image_id, OSSBucket="exports",
                      OSSRegionId=REGION)
        expect_denied(api, "DescribeExportImageInfo")
        assert export_status(api, image_id) == "Unexported", "the one allowed action works"
    assert [i["ImageId"] for i in self_images(owner_api)] == [image_id], "denied calls create nothing"
    assert export_status(owner_api, image_id) == "Unexported"


def test_import_and_export_are_audited(world, sources):
    me = world.new_tenant()
    api = world.sdk(me)
    shutil.copyfile(sources.small, bucket_dir(world, "images-in") / "audited.qcow2")
    imported = api.op("ImportImage", **import_params("Audited", key="audited.qcow2"))
    image_id = imported["ImageId"]
    wait_import(api, image_id, log=lambda: server_log(world))
    refused = api.op_error("ImportImage", **import_params("Audited-raw", key="audited.qcow2",
                                                          ImageFormat="raw"))
    exported = api.op("ExportImage", ImageId=image_id, OSSBucket="exports", OSSRegionId=REGION)
    wait_export(api, image_id, log=lambda: server_log(world))
    export_infos(api)  # reads are not audited

    # The record of a copy's end is written just after the status it reports: wait for it.
    deadline = time.monotonic() + 10
    while True:
        records = world.admin.run("audit", "--account", me.account_id)
        if len(records) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    got = [(r["RequestId"], r["Action"], r["Outcome"], r["Resource"]) for r in records]
    arn = f"acs:ens::{me.account_id}:image/{image_id}"
    assert got == [
        (exported["RequestId"], "ExportImage", "Success", arn),
        (exported["RequestId"], "ExportImage", "Success", "*"),
        (refused.request_id, "ImportImage", "InvalidParameter.ImageFormat", "*"),
        (imported["RequestId"], "ImportImage", "Success", arn),
        (imported["RequestId"], "ImportImage", "Success", "*"),
    ], "ImportImage and ExportImage are audited like every write when answered, and again " \
       f"under the call's RequestId when their copy ends, newest first; reads are not:\n" \
       f"{json.dumps(records, indent=1)}"
    calls = [r for r in records if r["Resource"] == "*"]
    assert all(r["AccessKeyId"] == me.ak for r in calls), records
    ends = [r for r in records if r["Resource"] == arn]
    assert all(r["AccessKeyId"] is None and r["SourceIp"] == "" for r in ends), records
