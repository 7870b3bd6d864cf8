"""Fresh servers: generated root credentials (no env key), built-in catalog, restarts, and
catalog validation at start-up."""
from __future__ import annotations

import copy
import json
import re
import stat
import time

import pytest

from ens_support import (
    FLAVORS,
    LISTENING_RE,
    NODE_DALIAN,
    NODE_HANGZHOU,
    assert_api_error,
    check_describe_envelope,
    make_catalog,
    make_flavor,
    new_access_key,
    spawn_server,
    start_server,
    write_catalog,
)

CREDS_FILE = "root-credentials.json"


def read_creds(data_dir):
    path = data_dir / CREDS_FILE
    assert path.is_file(), f"{path} was not written"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}, expected 0o600"
    creds = json.loads(path.read_text("utf-8"))
    assert isinstance(creds, dict), creds
    for key in ("AccessKeyId", "AccessKeySecret"):
        assert isinstance(creds.get(key), str) and creds[key], f"{key} missing/empty: {creds!r}"
    assert "AccountId" in creds and str(creds["AccountId"]).strip(), creds
    return creds


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """No --catalog, no root key in the environment."""
    base = tmp_path_factory.mktemp("ens-default")
    srv = start_server(base / "data", catalog=None, ak=None, secret=None, log_name="default")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def default_creds(default_server):
    return read_creds(default_server.data_dir)


def test_root_credentials_file_written(default_server, default_creds):
    assert re.fullmatch(r"\d+", str(default_creds["AccountId"])), default_creds
    assert default_creds["AccessKeyId"] != default_creds["AccessKeySecret"]
    assert len(default_creds["AccessKeySecret"]) >= 16


@pytest.mark.parametrize("name", sorted(FLAVORS))
def test_generated_credentials_work(default_server, default_creds, name):
    sdk = make_flavor(name, default_server.host, default_creds["AccessKeyId"],
                      default_creds["AccessKeySecret"])
    body = sdk.describe()
    images = check_describe_envelope(body)
    assert body["TotalCount"] >= 8
    assert len(images) == min(10, body["TotalCount"])
    # ...and a wrong secret for the same key id is still rejected.
    err = sdk.with_credentials(default_creds["AccessKeyId"], "wrong" + "0" * 20).describe_error()
    assert err.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret"), err


def test_builtin_catalog(default_server, default_creds):
    sdk = make_flavor("core", default_server.host, default_creds["AccessKeyId"],
                      default_creds["AccessKeySecret"])
    bodies = sdk.walk(50)
    images = [img for b in bodies for img in check_describe_envelope(b)]
    total = bodies[0]["TotalCount"]
    assert total >= 8, "the built-in catalog must hold at least 8 public images"
    assert len(images) == total
    ids = [i["ImageId"] for i in images]
    assert len(set(ids)) == total, "each image exactly once"
    assert all(i["ImageOwnerAlias"] == "system" for i in images)
    # Same order with a different page size.
    assert [i["ImageId"] for b in sdk.walk(3) for i in b["Images"]["Image"]] == ids
    for node in (NODE_DALIAN, NODE_HANGZHOU):
        body = sdk.describe(EnsRegionId=node, PageSize="50")
        node_images = check_describe_envelope(body)
        assert set(i["ImageId"] for i in node_images) <= set(ids)
        assert all(i["RegionId"] == node for i in node_images)
    err = sdk.describe_error(EnsRegionId="cn-nowhere-telecom")
    assert_api_error(err, "InvalidParameter.EnsRegionId", 400)


def test_env_key_is_not_needed_for_other_keys(default_server, default_creds):
    stranger = make_flavor("tea_v3", default_server.host, *new_access_key())
    err = stranger.describe_error()
    assert_api_error(err, "InvalidAccessKeyId.NotFound", 404)


def test_generated_secret_not_logged(default_server, default_creds):
    # Runs after the SDK calls above (same module, file order).
    sdk = make_flavor("tea_v2", default_server.host, default_creds["AccessKeyId"],
                      default_creds["AccessKeySecret"])
    sdk.describe(PageSize="1")
    secret = default_creds["AccessKeySecret"]
    assert secret not in default_server.stdout_text(), "generated secret leaked to stdout"
    assert secret not in default_server.stderr_text(), "generated secret leaked to stderr"


def test_credentials_persist_across_restart(tmp_path):
    data = tmp_path / "data"
    first = start_server(data, log_name="first")
    try:
        creds = read_creds(data)
        body = make_flavor("core", first.host, creds["AccessKeyId"],
                           creds["AccessKeySecret"]).describe(PageSize="1")
        assert body["TotalCount"] >= 8
    finally:
        rc = first.stop()
    assert rc == 0, f"SIGTERM must stop the server cleanly (exit 0), got {rc}\n{first.describe_output()}"
    second = start_server(data, log_name="second")
    try:
        assert read_creds(data) == creds, "root credentials changed on restart"
        body = make_flavor("tea_v3", second.host, creds["AccessKeyId"],
                           creds["AccessKeySecret"]).describe(PageSize="1")
        assert body["TotalCount"] >= 8
        assert creds["AccessKeySecret"] not in second.stdout_text() + second.stderr_text()
    finally:
        second.stop()


def test_env_key_persists_across_restart(tmp_path):
    data = tmp_path / "data"
    catalog = write_catalog(tmp_path / "catalog.json", make_catalog(12))
    ak, secret = new_access_key()
    for attempt in ("first", "second"):
        srv = start_server(data, catalog=catalog, ak=ak, secret=secret, log_name=attempt)
        try:
            body = make_flavor("tea_v2", srv.host, ak, secret).describe(PageSize="50")
            assert body["TotalCount"] == 12
            assert [i["ImageId"] for i in body["Images"]["Image"]] == \
                [e["ImageId"] for e in make_catalog(12)]
        finally:
            srv.stop()


# --------------------------------------------------------------------------- bad catalogs

def run_until_exit(tmp_path, catalog_text, timeout=30.0):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(catalog_text, "utf-8")
    ak, secret = new_access_key()
    srv = spawn_server(tmp_path / "data", catalog=catalog, ak=ak, secret=secret, log_name="bad")
    deadline = time.monotonic() + timeout
    try:
        while srv.proc.poll() is None:
            if LISTENING_RE.search(srv.stdout_text()):
                pytest.fail("server started listening despite an invalid catalog\n"
                            + srv.describe_output())
            if time.monotonic() > deadline:
                pytest.fail(f"server neither exited nor listened within {timeout}s\n"
                            + srv.describe_output())
            time.sleep(0.05)
    finally:
        srv.stop()
    output = srv.stdout_text() + "\n" + srv.stderr_text()
    assert not LISTENING_RE.search(srv.stdout_text()), output
    return srv.proc.returncode, output


def _base_entries():
    return copy.deepcopy(make_catalog(4))


def _case_missing_name(entries):
    del entries[2]["ImageName"]
    return 2, "ImageName"


def _case_missing_id(entries):
    del entries[2]["ImageId"]
    return 2, "ImageId"


def _case_bad_time(entries):
    entries[2]["CreationTime"] = "08/12/2017 12:10"
    return 2, "CreationTime"


def _case_duplicate_id(entries):
    entries[3]["ImageId"] = entries[1]["ImageId"]
    return 3, "ImageId"


def _case_unknown_field(entries):
    entries[2]["Colour"] = "blue"
    return 2, "Colour"


def _case_bad_name_prefix(entries):
    entries[2]["ImageName"] = "aliyun_base_image"
    return 2, "ImageName"


def _case_bad_name_chars(entries):
    entries[2]["ImageName"] = "bad name/with spaces"
    return 2, "ImageName"


def _case_bad_name_start(entries):
    entries[2]["ImageName"] = "9lives"
    return 2, "ImageName"


BAD_CASES = {
    "missing-ImageName": _case_missing_name,
    "missing-ImageId": _case_missing_id,
    "bad-CreationTime": _case_bad_time,
    "duplicate-ImageId": _case_duplicate_id,
    "unknown-field": _case_unknown_field,
    "name-starts-aliyun": _case_bad_name_prefix,
    "name-bad-chars": _case_bad_name_chars,
    "name-starts-digit": _case_bad_name_start,
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_invalid_catalog_entry_rejected(tmp_path, case):
    entries = _base_entries()
    index, field_name = BAD_CASES[case](entries)
    image_id = entries[index].get("ImageId")
    rc, output = run_until_exit(tmp_path, json.dumps({"Images": entries}))
    assert rc != 0, f"serve must exit non-zero for {case}\n{output}"
    assert field_name in output, f"message must name the field {field_name!r}:\n{output}"
    names_entry = (image_id is not None and image_id in output) or \
        re.search(rf"(?<![\w.-]){index}(?![\w.-])", output) is not None
    assert names_entry, f"message must name the entry (index {index} / {image_id}):\n{output}"


def test_malformed_catalog_json_rejected(tmp_path):
    rc, output = run_until_exit(tmp_path, '{"Images": [ {"ImageId": "x", ')
    assert rc != 0, output
    assert output.strip(), "a failing start must say why"


def _start_with_catalog(tmp_path, entries, log_name):
    catalog = write_catalog(tmp_path / "catalog.json", entries)
    ak, secret = new_access_key()
    srv = start_server(tmp_path / "data", catalog=catalog, ak=ak, secret=secret, log_name=log_name)
    return srv, make_flavor("core", srv.host, ak, secret)


MINIMAL = {"ImageId": "minimal_image_01", "ImageName": "Minimal.One", "Architecture": "x86_64",
           "Platform": "centos", "ImageSize": 30, "CreationTime": "2020-01-02T03:04:05Z"}


def test_catalog_optional_fields(tmp_path):
    """SnapshotId, OSType, DiskDeviceMappings and EnsRegionIds are optional; ImageSize may be a
    number; an entry without EnsRegionIds is on every node the store knows."""
    located = dict(MINIMAL, ImageId="located_image_02", ImageName="Located.Two",
                   ImageSize="50", EnsRegionIds=[NODE_DALIAN])
    srv, sdk = _start_with_catalog(tmp_path, [dict(MINIMAL), located], "optional")
    try:
        body = sdk.describe()
        images = check_describe_envelope(body)
        assert body["TotalCount"] == 2
        assert [i["ImageId"] for i in images] == ["minimal_image_01", "located_image_02"]
        minimal = images[0]
        assert minimal["ImageSize"] == "30" and minimal["ImageName"] == "Minimal.One"
        assert "SnapshotId" not in minimal
        body = sdk.describe(EnsRegionId=NODE_DALIAN)
        assert [i["ImageId"] for i in body["Images"]["Image"]] == \
            ["minimal_image_01", "located_image_02"]
        assert all(i["RegionId"] == NODE_DALIAN for i in body["Images"]["Image"])
    finally:
        srv.stop()


def test_catalog_without_node_lists_pages_consistently(tmp_path):
    """However the server places node-less images, TotalCount must equal what the pages hold."""
    entries = [dict(MINIMAL, ImageId=f"minimal_image_{n:02d}", ImageName=f"Minimal.N{n}")
               for n in range(3)]
    srv, sdk = _start_with_catalog(tmp_path, entries, "nodeless")
    try:
        bodies = sdk.walk(2)
        listed = [i["ImageId"] for b in bodies for i in check_describe_envelope(b)]
        assert len(listed) == len(set(listed))
        for b in bodies:
            assert b["TotalCount"] == len(listed), \
                f"TotalCount {b['TotalCount']} but the pages hold {len(listed)} images: {bodies!r}"
    finally:
        srv.stop()
