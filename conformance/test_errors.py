"""Gateway errors reached through the official SDKs (protocol.md sections 6, 8, 9): each test
asserts the exception's code, HTTP status and request id as the SDK exposes them."""
from __future__ import annotations

import secrets
import uuid

import pytest

from ens_support import (
    API_VERSION,
    CATALOG_SIZE,
    SPECIAL_NAME,
    TeaUtils,
    assert_api_error,
    assert_request_id,
    check_describe_envelope,
    check_error_envelope,
    make_flavor,
    pe,
    utc_timestamp,
)

V1_MISMATCH_PREFIX = "Specified signature is not matched with our calculation. server string to sign is:"


def independent_v1_string_to_sign(method, params):
    """protocol.md 4.2, written independently of both SDKs."""
    cqs = "&".join(f"{pe(k)}={pe(params[k])}"
                   for k in sorted(params, key=lambda s: s.encode("utf-8")) if k != "Signature")
    return f"{method}&{pe('/')}&{pe(cqs)}"


def test_wrong_secret(sdk, monkeypatch):
    captured = []
    original = TeaUtils.get_rpcsignature

    def recording(signed_params, method, secret):
        captured.append((dict(signed_params), method))
        return original(signed_params, method, secret)

    monkeypatch.setattr(TeaUtils, "get_rpcsignature", staticmethod(recording))
    bad = sdk.with_credentials(sdk.ak, sdk.secret[:-1] + ("0" if sdk.secret[-1] != "0" else "1"))
    err = bad.describe_error(ImageName=SPECIAL_NAME, Status="a b*c~d/e+f")
    if sdk.name == "core":
        # aliyunsdkcore compares Message.split(':')[1] with its own string-to-sign and, when
        # equal, rewrites SignatureDoesNotMatch into InvalidAccessKeySecret. Getting this code
        # proves the server's V1 message format and string-to-sign are byte-identical.
        assert_api_error(err, "InvalidAccessKeySecret", 400, sdk)
    else:
        assert_api_error(err, "SignatureDoesNotMatch", 400, sdk)
        assert isinstance(err.data, dict)
        check_error_envelope(err.data)
        assert err.data["RequestId"] == err.request_id
    if sdk.name == "tea_v2":
        message = err.data["Message"]
        assert message.startswith(V1_MISMATCH_PREFIX), message
        assert len(captured) == 1
        params, method = captured[0]
        assert message.split(":", 1)[1] == independent_v1_string_to_sign(method, params)


def test_unknown_access_key(sdk):
    stranger = sdk.with_credentials("LTAI" + secrets.token_hex(10), secrets.token_hex(16))
    err = stranger.describe_error()
    assert_api_error(err, "InvalidAccessKeyId.NotFound", 404, sdk)


@pytest.mark.parametrize("offset", [-20 * 60, 20 * 60], ids=["past", "future"])
def test_timestamp_expired(sdk, monkeypatch, offset):
    sdk.patch_timestamp(monkeypatch, utc_timestamp(offset))
    err = sdk.describe_error()
    assert_api_error(err, "InvalidTimeStamp.Expired", 400, sdk)


def test_timestamp_within_skew_accepted(sdk, monkeypatch):
    sdk.patch_timestamp(monkeypatch, utc_timestamp(-5 * 60))
    body = sdk.describe(PageSize="2")
    check_describe_envelope(body)
    assert body["TotalCount"] == CATALOG_SIZE


def test_nonce_reuse(sdk, monkeypatch):
    sdk.patch_nonce(monkeypatch, uuid.uuid4().hex)
    first = sdk.describe(PageSize="1")
    assert first["TotalCount"] == CATALOG_SIZE
    err = sdk.describe_error(PageSize="1")
    assert_api_error(err, "SignatureNonceUsed", 400, sdk)
    assert err.request_id != first["RequestId"]


def test_nonce_not_burned_by_failed_signature(sdk, monkeypatch):
    """Nonces are recorded only after the signature verified (protocol.md section 6)."""
    sdk.patch_nonce(monkeypatch, uuid.uuid4().hex)
    bad = sdk.with_credentials(sdk.ak, "not-" + sdk.secret)
    err = bad.describe_error()
    assert err.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret"), err
    body = sdk.describe(PageSize="1")  # same nonce, right secret
    assert body["TotalCount"] == CATALOG_SIZE


def test_generic_call_path_works(sdk):
    """Positive control for the CommonRequest / call_api path used by the next tests."""
    body = sdk.call("DescribeImages", API_VERSION, PageSize="3")
    assert len(check_describe_envelope(body)) == 3


@pytest.mark.parametrize("version", ["2099-01-01", "2014-05-26"])
def test_invalid_version(sdk, version):
    err = sdk.call_error("DescribeImages", version)
    assert_api_error(err, "InvalidVersion", 400, sdk)


@pytest.mark.parametrize("action", ["DescribeImagez", "describeImages", "NoSuchAction"])
def test_unknown_action(sdk, action):
    err = sdk.call_error(action, API_VERSION)
    assert_api_error(err, "InvalidAction.NotFound", 404, sdk)


@pytest.mark.parametrize("flavor_name", ["tea_v3", "tea_v2"], indirect=True)
def test_error_body_envelope(sdk):
    """Tea keeps the whole error body: check RequestId/HostId/Code/Message/Recommend."""
    errors = [
        sdk.describe_error(PageSize="0"),
        sdk.describe_error(EnsRegionId="cn-nowhere-telecom"),
        sdk.with_credentials("LTAI" + secrets.token_hex(10), "x").describe_error(),
        sdk.call_error("DescribeImages", "2099-01-01"),
    ]
    rids = set()
    for err in errors:
        assert isinstance(err.data, dict), err
        check_error_envelope(err.data)
        assert err.data["Code"] == err.code
        assert err.data["RequestId"] == err.request_id
        rids.add(err.request_id)
    assert len(rids) == len(errors), "every error response needs a fresh RequestId"


def test_secret_never_logged(server, flavor_name):
    sdk = make_flavor(flavor_name, server.host, server.ak, server.secret)
    sdk.describe(PageSize="1")
    sdk.with_credentials(server.ak, server.secret + "x").describe_error()
    sdk.describe_error(PageSize="abc")
    stdout, stderr = server.stdout_text(), server.stderr_text()
    assert server.secret not in stdout, "root AccessKeySecret leaked to stdout"
    assert server.secret not in stderr, "root AccessKeySecret leaked to stderr"


def test_request_ids_unique_across_flavors(server):
    rids = []
    for name in ("tea_v3", "tea_v2", "core"):
        sdk = make_flavor(name, server.host, server.ak, server.secret)
        for _ in range(3):
            body = sdk.describe(PageSize="1")
            assert_request_id(body["RequestId"])
            rids.append(body["RequestId"])
    assert len(set(rids)) == len(rids)
