"""Format=XML (V1 only). aliyunsdkcore's legacy do_action()/get_response() keep the request's
Format (do_action_with_exception forces JSON) and return the raw bytes unparsed, so they are the
SDK path to XML; the rest goes through signed raw requests."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from ens_support import (
    BACKEND,
    CATALOG_SIZE,
    CoreFlavor,
    assert_request_id,
    expected_image,
    raw_v1,
)

XML_CONTENT_TYPE = "text/xml;charset=utf-8"
ERROR_CHILDREN = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def core_get(server, fmt, **params):
    flavor = CoreFlavor(server.host, server.ak, server.secret)
    request = flavor.new_request(**params)
    request.set_accept_format(fmt)
    status, headers, body = flavor.client.get_response(request)
    return status, headers, body


def child_text(elem, tag):
    found = elem.find(tag)
    assert found is not None, f"<{tag}> missing under <{elem.tag}>: {ET.tostring(elem)[:400]!r}"
    return found.text or ""


def test_core_do_action_returns_raw_xml(server, catalog_entries):
    flavor = CoreFlavor(server.host, server.ak, server.secret)
    request = flavor.new_request(PageSize="2")
    request.set_accept_format("XML")
    body = flavor.client.do_action(request)
    root = ET.fromstring(body)
    assert root.tag == "DescribeImagesResponse"
    assert [child_text(i, "ImageId") for i in root.find("Images")] == \
        [e["ImageId"] for e in catalog_entries[:2]]


def test_xml_success_shape(server, catalog_entries):
    status, headers, body = core_get(server, "XML", PageSize="11", PageNumber="1")
    assert status == 200, body
    assert headers.get("Content-Type") == XML_CONTENT_TYPE
    root = ET.fromstring(body)
    assert root.tag == "DescribeImagesResponse"
    assert_request_id(child_text(root, "RequestId"))
    assert child_text(root, "Code") == "0"
    assert child_text(root, "PageNumber") == "1"
    assert child_text(root, "PageSize") == "11"
    assert child_text(root, "TotalCount") == str(CATALOG_SIZE)
    wrappers = root.findall("Images")
    assert len(wrappers) == 1
    items = list(wrappers[0])
    assert [i.tag for i in items] == ["Image"] * 11, "array items must repeat <Image> under <Images>"
    for item, entry in zip(items, catalog_entries[:11]):
        exp = expected_image(entry)
        for key in ("ImageId", "ImageName", "ImageOwnerAlias", "Architecture", "Platform",
                    "ImageSize", "CreationTime"):
            assert child_text(item, key) == exp[key], (key, entry["ImageId"])
        assert child_text(item, "RegionId")
        if "SnapshotId" in exp:
            assert child_text(item, "SnapshotId") == exp["SnapshotId"]
        else:
            assert item.find("SnapshotId") is None
        if "DiskDeviceMappings" in exp:
            ddm = item.find("DiskDeviceMappings")
            assert ddm is not None
            mappings = list(ddm)
            want = exp["DiskDeviceMappings"]["DiskDeviceMapping"]
            assert [m.tag for m in mappings] == ["DiskDeviceMapping"] * len(want)
            for m, w in zip(mappings, want):
                assert {k: child_text(m, k) for k in ("Type", "Size", "Format", "imageId")} == w


def test_xml_matches_json(server):
    _, _, xml_body = core_get(server, "XML", PageSize="5", PageNumber="4")
    _, _, json_body = core_get(server, "JSON", PageSize="5", PageNumber="4")
    root = ET.fromstring(xml_body)
    data = json.loads(json_body)
    xml_images = list(root.find("Images"))
    assert len(xml_images) == len(data["Images"]["Image"]) == 5
    for x, j in zip(xml_images, data["Images"]["Image"]):
        for key, value in j.items():
            if isinstance(value, str):
                assert child_text(x, key) == value, key
    assert child_text(root, "RequestId") != data["RequestId"]


def test_xml_empty_list(server):
    status, headers, body = core_get(server, "XML", ImageId="m-nope00000000000000000000")
    assert status == 200
    root = ET.fromstring(body)
    assert child_text(root, "TotalCount") == "0"
    images = root.find("Images")
    assert images is None or len(list(images)) == 0
    assert root.find(".//Image") is None


def check_xml_error(status, content_type, body, code, http_status):
    assert status == http_status, body
    assert content_type == XML_CONTENT_TYPE, content_type
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert ERROR_CHILDREN <= {c.tag for c in root}, [c.tag for c in root]
    assert child_text(root, "Code") == code
    assert_request_id(child_text(root, "RequestId"))
    assert child_text(root, "Message")
    return root


def test_xml_error_via_core(server):
    status, headers, body = core_get(server, "XML", PageSize="abc")
    check_xml_error(status, headers.get("Content-Type"), body, "InvalidParameter.PageSize", 400)


def test_xml_error_unknown_node(server):
    status, headers, body = core_get(server, "XML", EnsRegionId="cn-nowhere-telecom")
    check_xml_error(status, headers.get("Content-Type"), body, "InvalidParameter.EnsRegionId", 400)


def test_xml_error_bad_signature(server):
    resp = raw_v1(server.host, server.ak, server.secret + "q", fmt="XML")
    check_xml_error(resp.status, resp.content_type, resp.body, "SignatureDoesNotMatch", 400)


def test_xml_format_is_case_insensitive(server, catalog_entries):
    resp = raw_v1(server.host, server.ak, server.secret, fmt="xml", extra={"PageSize": "2"})
    assert resp.status == 200, resp.body
    assert resp.content_type == XML_CONTENT_TYPE
    root = ET.fromstring(resp.body)
    assert root.tag == "DescribeImagesResponse"
    assert [child_text(i, "ImageId") for i in root.find("Images")] == \
        [e["ImageId"] for e in catalog_entries[:2]]


@pytest.mark.skipif(BACKEND == "postgres",
                    reason="the stored field is planted with Python's sqlite3 in the embedded store")
def test_xml_stays_well_formed_with_control_characters_in_stored_fields(tmp_path):
    """The admin CLI refuses control characters in operator fields; a store that holds some
    anyway (written by an older version) is still answered in XML that a strict parser
    accepts (the characters XML cannot carry become U+FFFD), and in JSON with the characters
    themselves, escaped."""
    import sqlite3
    import subprocess

    from ens_support import World, _server_env, require_binary

    world = World(tmp_path, build_seconds=0, log_name="xml-control")
    try:
        tenant = world.new_tenant()
        raw_version = "7.9\x01\x1b[31m\x7f"
        refused = subprocess.run(
            [str(require_binary()), "admin", "--data-dir", str(world.data_dir), "instance", "add",
             "--account", tenant.account_id, "--node", "cn-dalian-unicom", "--os-version", raw_version],
            capture_output=True, text=True, env=_server_env(None, None, world.data_dir), timeout=60)
        assert refused.returncode != 0, refused
        assert "--os-version" in refused.stderr and "U+0001" in refused.stderr, refused.stderr

        instance = world.instance(tenant)
        db = sqlite3.connect(world.data_dir / "ens-images.db", timeout=10)
        try:
            with db:
                changed = db.execute("UPDATE instances SET os_version = ? WHERE id = ?",
                                     (raw_version, instance)).rowcount
        finally:
            db.close()
        assert changed == 1
        image_id = world.create_image(world.sdk(tenant, "tea_v3"), tenant, name="ctl",
                                      InstanceId=instance)

        answer = raw_v1(world.host, tenant.ak, tenant.secret, action="DescribeSelfImages",
                        fmt="XML", extra={"ImageId": image_id})
        assert answer.status == 200, answer.body
        root = ET.fromstring(answer.body)  # expat: refuses any character XML forbids
        versions = [i.findtext("OsVersion") for i in root.iter("Image")]
        assert versions == ["7.9\ufffd\ufffd[31m\x7f"], versions

        as_json = raw_v1(world.host, tenant.ak, tenant.secret, action="DescribeSelfImages",
                         fmt="JSON", extra={"ImageId": image_id})
        assert as_json.status == 200, as_json.body
        images = as_json.json()["Images"]["Image"]
        assert [i["OsVersion"] for i in images] == [raw_version]
    finally:
        world.stop()
