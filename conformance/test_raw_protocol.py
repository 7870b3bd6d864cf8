"""Signed raw requests for what the SDKs never send (missing pieces, unsigned headers, form
bodies, ...). Requests are signed with the SDKs' own helper functions (Tea
Utils.get_rpcsignature / Utils.get_authorization), whose correctness is first checked against
the public documentation examples."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from ens_support import (
    API_VERSION,
    CATALOG_SIZE,
    TeaUtils,
    TeaSm3Flavor,
    assert_api_error,
    check_describe_envelope,
    check_json_error,
    encode_query,
    raw_request,
    raw_v1,
    raw_v3,
    utc_timestamp,
    v1_params,
)


def test_signing_helpers_match_public_doc_examples():
    # protocol.md 4.2 worked example (V1).
    params = {
        "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26",
    }
    assert TeaUtils.get_rpcsignature(params, "GET", "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    # protocol.md 5.2 public example (V3).
    request = SimpleNamespace(
        method="POST", pathname="/",
        query={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
               "RegionId": "cn-shanghai"},
        headers={
            "host": "ecs.cn-shanghai.aliyuncs.com",
            "x-acs-action": "RunInstances",
            "x-acs-version": "2014-05-26",
            "x-acs-date": "2023-10-26T10:22:32Z",
            "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
            "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        })
    auth = TeaUtils.get_authorization(
        request, "ACS3-HMAC-SHA256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "YourAccessKeyId", "YourAccessKeySecret")
    assert auth.endswith(
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")


# --------------------------------------------------------------------------- positive controls

@pytest.mark.parametrize("method", ["POST", "GET"])
def test_raw_v1_request_accepted(server, catalog_entries, method):
    resp = raw_v1(server.host, server.ak, server.secret, method=method,
                  extra={"PageSize": "3", "PageNumber": "2"})
    assert resp.status == 200, resp.body
    assert resp.content_type.replace(" ", "").lower() == "application/json;charset=utf-8"
    body = resp.json()
    check_describe_envelope(body)
    assert [i["ImageId"] for i in body["Images"]["Image"]] == \
        [e["ImageId"] for e in catalog_entries[3:6]]
    if "x-acs-request-id" in resp.headers:  # optional header; must agree with the body
        assert resp.headers["x-acs-request-id"] == body["RequestId"]


@pytest.mark.parametrize("fmt", [None, "JSON", "json", "Json"])
def test_raw_v1_json_format_variants(server, fmt):
    resp = raw_v1(server.host, server.ak, server.secret, fmt=fmt, extra={"PageSize": "1"})
    assert resp.status == 200, resp.body
    assert resp.content_type.replace(" ", "").lower().startswith("application/json")
    assert resp.json()["TotalCount"] == CATALOG_SIZE


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_raw_v3_request_accepted(server, catalog_entries, method):
    resp = raw_v3(server.host, server.ak, server.secret,
                  {"PageSize": "2", "ImageName": catalog_entries[4]["ImageName"]}, method=method)
    assert resp.status == 200, resp.body
    body = resp.json()
    check_describe_envelope(body)
    assert catalog_entries[4]["ImageId"] in [i["ImageId"] for i in body["Images"]["Image"]]


# --------------------------------------------------------------------------- missing pieces

def test_missing_signature_unsigned_v1(server):
    params = {
        "Action": "DescribeImages", "Version": API_VERSION, "AccessKeyId": server.ak,
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex, "Timestamp": utc_timestamp(), "Format": "JSON",
    }
    resp = raw_request(server.host, "POST", "/?" + encode_query(params))
    check_json_error(resp, "MissingSignature", 400)


def test_missing_signature_bare(server):
    resp = raw_request(server.host, "GET", "/?Action=DescribeImages&Version=" + API_VERSION)
    check_json_error(resp, "MissingSignature", 400)


@pytest.mark.parametrize("name,code", [
    ("SignatureNonce", "MissingSignatureNonce"),
    ("Timestamp", "MissingTimestamp"),
])
def test_missing_common_param(server, name, code):
    resp = raw_v1(server.host, server.ak, server.secret, omit=(name,))
    body = check_json_error(resp, code, 400)
    assert name in body["Message"]


def test_invalid_timestamp_format(server):
    resp = raw_v1(server.host, server.ak, server.secret, timestamp="2025/01/02 03:04:05")
    check_json_error(resp, "InvalidTimeStamp.Format", 400)


def test_invalid_signature_method(server):
    resp = raw_v1(server.host, server.ak, server.secret,
                  extra={"SignatureMethod": "HMAC-SHA256"})
    check_json_error(resp, "InvalidSignatureMethod", 400)


@pytest.mark.parametrize("header", [
    "x-acs-date", "x-acs-signature-nonce", "host", "x-acs-action", "x-acs-version",
    "x-acs-content-sha256",
])
def test_v3_required_header_not_signed(server, header):
    """V3 request whose SignedHeaders omits a header that is present -> IncompleteSignature."""
    resp = raw_v3(server.host, server.ak, server.secret, {"PageSize": "1"}, unsigned=(header,))
    check_json_error(resp, "IncompleteSignature", 400)


def test_v3_wrong_secret(server):
    resp = raw_v3(server.host, server.ak, server.secret + "z", {"PageSize": "1"})
    check_json_error(resp, "SignatureDoesNotMatch", 400)


# --------------------------------------------------------------------------- dispatch rules

def test_wrong_path(server):
    resp = raw_v1(server.host, server.ak, server.secret, path="/v1/images")
    check_json_error(resp, "InvalidApi.NotFound", 404)


def test_unsigned_action_headers_do_not_override_v1_query(server):
    resp = raw_v1(server.host, server.ak, server.secret, extra={"PageSize": "2"},
                  headers={"x-acs-action": "DeleteImage", "x-acs-version": "2099-01-01"})
    assert resp.status == 200, resp.body
    body = resp.json()
    check_describe_envelope(body)
    assert body["PageSize"] == 2


def test_form_body_parameters(server, catalog_entries):
    target = catalog_entries[17]
    resp = raw_v1(server.host, server.ak, server.secret, body={"ImageId": target["ImageId"]})
    assert resp.status == 200, resp.body
    assert [i["ImageId"] for i in resp.json()["Images"]["Image"]] == [target["ImageId"]]


def test_form_body_wins_over_query(server, catalog_entries):
    in_query, in_body = catalog_entries[20], catalog_entries[21]
    resp = raw_v1(server.host, server.ak, server.secret,
                  extra={"ImageId": in_query["ImageId"]}, body={"ImageId": in_body["ImageId"]})
    assert resp.status == 200, resp.body
    assert [i["ImageId"] for i in resp.json()["Images"]["Image"]] == [in_body["ImageId"]]


def test_invalid_format(server):
    resp = raw_v1(server.host, server.ak, server.secret, fmt="YAML")
    check_json_error(resp, "InvalidParameter.Format", 400)


def test_v1_signature_checked_against_actual_method(server):
    """Signed for GET, sent as POST: the method is part of the string to sign."""
    params = v1_params(server.ak, server.secret, method="GET")
    resp = raw_request(server.host, "POST", "/?" + encode_query(params))
    body = check_json_error(resp, "SignatureDoesNotMatch", 400)
    assert body["Message"].split(":", 1)[1].startswith("POST&%2F&")


def test_tea_sm3_signature_accepted(server, catalog_entries):
    """ACS3-HMAC-SM3 (protocol.md section 5): the Tea client with that algorithm."""
    flavor = TeaSm3Flavor(server.host, server.ak, server.secret)
    body = flavor.describe(PageSize="2")
    check_describe_envelope(body)
    assert [i["ImageId"] for i in body["Images"]["Image"]] == \
        [e["ImageId"] for e in catalog_entries[:2]]
    bad = flavor.with_credentials(server.ak, server.secret + "0")
    err = bad.describe_error()
    assert_api_error(err, "SignatureDoesNotMatch", 400)
