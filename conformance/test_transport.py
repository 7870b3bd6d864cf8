"""Transport: HTTPS with a self-signed certificate (clients that trust it, clients that do
not, plain HTTP to the TLS port), the acs:SecureTransport condition, and per-AccessKey
throttling (Throttling.User with x-acs-retry-after)."""
from __future__ import annotations

import http.client
import socket
import ssl
import time

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException as CoreClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from alibabacloud_tea_openapi import exceptions as tea_exceptions

from access_support import (
    ALL_FLAVORS,
    FULL,
    AclWorld,
    expect_denied,
    forget_tea_connections,
    make_sdk,
    policy_doc,
    raw_v1_from,
    self_signed_cert,
    statement,
)
from ens_support import (
    assert_request_id,
    check_describe_envelope,
    check_json_error,
    encode_query,
    raw_request,
    v1_params,
)

RATE = 5
BURST = 5


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("ens-tls-cert"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory, cert):
    w = AclWorld(tmp_path_factory.mktemp("ens-tls"), log_name="tls", tls=cert)
    yield w
    w.stop()


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    """A plain-HTTP server with a tight per-key rate limit (each test uses fresh keys)."""
    w = AclWorld(tmp_path_factory.mktemp("ens-rate"), log_name="rate", rate_limit=RATE,
                 rate_burst=BURST)
    yield w
    w.stop()


@pytest.fixture(params=ALL_FLAVORS)
def flavor(request):
    return request.param


@pytest.fixture
def server(tls):
    return tls.server


def ca_path(cert):
    return str(cert[0])


def call_failure(api):
    """Runs DescribeImages and returns the client-side (non-API) exception it raised."""
    try:
        body = api.describe()
    except (tea_exceptions.AlibabaCloudException, CoreServerException) as e:
        raise AssertionError(f"[{api.name}] expected a transport failure, got an API error {e!r}")
    except Exception as e:  # noqa: BLE001 - the SDKs raise different transport exceptions
        return e
    raise AssertionError(f"[{api.name}] expected a transport failure, got success: {body!r}")


# ---------------------------------------------------------------------------------------
# HTTPS
# ---------------------------------------------------------------------------------------


def test_tls_server_announces_https(tls):
    assert tls.server.scheme == "https", tls.server.stdout_text()


def test_https_with_trusted_certificate(tls, cert, flavor):
    api = tls.sdk(tls.root, flavor, protocol="https", ca=ca_path(cert))
    images = check_describe_envelope(api.op("DescribeImages", PageSize="50"))
    assert images, "the built-in catalog is visible over HTTPS"
    # A RAM user works over HTTPS as well.
    user = tls.user(policy_doc(statement("Allow", "ens:Describe*")))
    check_describe_envelope(tls.sdk(user, flavor, protocol="https", ca=ca_path(cert))
                            .op("DescribeImages"))


def test_core_ca_bundle_from_environment(tls, cert, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_CA_BUNDLE", ca_path(cert))
    api = make_sdk("core", tls.host, tls.root, protocol="https")
    check_describe_envelope(api.op("DescribeImages"))


def test_tea_ca_through_runtime_options(tls, cert):
    from alibabacloud_ens20171110 import models as ens_models
    from darabonba.runtime import RuntimeOptions
    api = make_sdk("tea_v3", tls.host, tls.root, protocol="https")
    forget_tea_connections(tls.host)
    resp = api.client.describe_images_with_options(ens_models.DescribeImagesRequest(),
                                                   RuntimeOptions(ca=ca_path(cert)))
    assert resp.status_code == 200
    assert_request_id(resp.body.request_id)


def test_untrusting_client_fails(tls, flavor):
    forget_tea_connections(tls.host)  # a fresh Tea session, not one a `ca` already extended
    api = tls.sdk(tls.root, flavor, protocol="https")
    exc = call_failure(api)
    text = str(exc).lower() + repr(exc).lower()
    assert "certificate verify failed" in text or "certificate_verify_failed" in text, \
        f"[{flavor}] expected a certificate verification failure, got {exc!r}: {exc}"
    if flavor == "core":
        assert isinstance(exc, CoreClientException) and exc.get_error_code() == "SDK.HttpError"
    forget_tea_connections(tls.host)


def test_untrusting_stdlib_client_fails(tls, cert):
    host, port = tls.host.rsplit(":", 1)
    context = ssl.create_default_context()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="127.0.0.1")
    trusting = ssl.create_default_context(cafile=ca_path(cert))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with trusting.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock:
            assert tls_sock.version() in ("TLSv1.2", "TLSv1.3"), tls_sock.version()


def test_plain_http_to_tls_port_fails(tls, flavor):
    api = tls.sdk(tls.root, flavor, protocol="http")
    exc = call_failure(api)
    if flavor == "core":
        assert isinstance(exc, CoreClientException) and exc.get_error_code() == "SDK.HttpError"


def test_plain_http_raw_to_tls_port_gets_no_api_answer(tls):
    host, port = tls.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/?Action=DescribeImages&Version=2017-11-10")
        resp = conn.getresponse()
        data = resp.read()
    except (http.client.HTTPException, OSError):
        return  # refused at the TLS layer: fine
    finally:
        conn.close()
    assert resp.status != 200 and b"RequestId" not in data, \
        f"plain HTTP on the TLS port got an API answer: {resp.status} {data[:300]!r}"


# ---------------------------------------------------------------------------------------
# acs:SecureTransport
# ---------------------------------------------------------------------------------------


def secure_only(value):
    return policy_doc(statement("Allow", "ens:*", "*", {"Bool": {"acs:SecureTransport": value}}))


def test_secure_transport_true_needs_https(tls, throttled, cert, flavor):
    over_tls = tls.user(secure_only("true"))
    check_describe_envelope(tls.sdk(over_tls, flavor, protocol="https", ca=ca_path(cert))
                            .op("DescribeImages"))
    over_http = throttled.user(secure_only("true"))
    expect_denied(throttled.sdk(over_http, flavor), "DescribeImages")


def test_secure_transport_false_needs_plain_http(tls, throttled, cert, flavor):
    over_tls = tls.user(secure_only("false"))
    expect_denied(tls.sdk(over_tls, flavor, protocol="https", ca=ca_path(cert)),
                  "DescribeImages")
    over_http = throttled.user(secure_only("false"))
    check_describe_envelope(throttled.sdk(over_http, flavor).op("DescribeImages"))


# ---------------------------------------------------------------------------------------
# Throttling
# ---------------------------------------------------------------------------------------


def throttle_error(api, exc):
    """The throttling refusal as the SDK reports it: (RequestId, retry-after ms or None)."""
    if api.name == "core":
        assert isinstance(exc, CoreServerException), exc
        assert exc.get_error_code() == "Throttling.User", exc
        assert exc.get_http_status() == 400, exc
        assert_request_id(exc.get_request_id())
        return exc.get_request_id(), None
    assert isinstance(exc, tea_exceptions.ThrottlingException), \
        f"[{api.name}] Throttling.User with x-acs-retry-after must raise ThrottlingException, " \
        f"got {type(exc).__name__}: {exc!r}"
    assert exc.code == "Throttling.User" and exc.status_code == 400, exc
    assert isinstance(exc.retry_after, int) and exc.retry_after > 0, exc.retry_after
    assert_request_id(exc.request_id)
    return exc.request_id, exc.retry_after


def burst(api, count):
    """`count` DescribeImages calls as fast as possible: ["ok" | (RequestId, retry_after)]."""
    outcomes = []
    for _ in range(count):
        try:
            check_describe_envelope(api.describe(PageSize="1"))
            outcomes.append("ok")
        except (tea_exceptions.AlibabaCloudException, CoreServerException) as e:
            outcomes.append(throttle_error(api, e))
    return outcomes


def test_a_throttled_call_keeps_its_nonce(throttled):
    """Throttling comes before the nonce claim: the very request refused as throttled, sent
    again byte for byte once the bucket refilled, is answered, and only that once."""
    key = throttled.key()
    target = "/?" + encode_query(v1_params(key.ak, key.secret))
    assert burst(throttled.sdk(key, "core"), BURST) == ["ok"] * BURST
    refused = raw_request(throttled.host, "POST", target)
    check_json_error(refused, "Throttling.User", 400)
    time.sleep(int(refused.headers["x-acs-retry-after"]) / 1000.0 + 0.05)
    answered = raw_request(throttled.host, "POST", target)
    assert answered.status == 200, answered.body
    check_describe_envelope(answered.json())
    time.sleep(1.0 / RATE + 0.05)
    check_json_error(raw_request(throttled.host, "POST", target), "SignatureNonceUsed", 400)


def test_throttling_per_access_key(throttled, flavor):
    hot, cold = throttled.key(), throttled.key()  # two keys of the same account
    api = throttled.sdk(hot, flavor)
    started = time.monotonic()
    outcomes = burst(api, 4 * BURST)
    elapsed = time.monotonic() - started
    assert outcomes[:BURST] == ["ok"] * BURST, f"the first {BURST} calls fit the burst: {outcomes}"
    refused = [o for o in outcomes if o != "ok"]
    assert refused, f"{4 * BURST} calls in {elapsed:.2f}s never hit Throttling.User: {outcomes}"
    allowed = outcomes.count("ok")
    assert allowed <= BURST + RATE * elapsed + 1, \
        f"{allowed} calls passed in {elapsed:.2f}s with rate {RATE}, burst {BURST}: {outcomes}"
    waits = [o[1] for o in refused if o[1] is not None]
    assert all(0 < w <= 1000 for w in waits), f"x-acs-retry-after (ms) out of range: {waits}"

    # Another key of the same account has its own bucket.
    other = throttled.sdk(cold, flavor)
    assert burst(other, BURST) == ["ok"] * BURST, "another AccessKey must not be throttled"

    # After waiting as told, the hot key works again.
    time.sleep((max(waits) if waits else 1000.0 / RATE) / 1000.0 + 0.05)
    assert burst(api, 1) == ["ok"], "after waiting x-acs-retry-after the key works again"

    # Every refusal was audited as Throttling.User for the hot key.
    audited = {r["RequestId"]: r for r in throttled.admin.audit(outcome="Throttling.User",
                                                                 limit=100000)}
    for rid, _ in refused:
        assert rid in audited, f"throttled call {rid} missing from the audit"
        assert audited[rid]["AccessKeyId"] == hot.ak, audited[rid]
        assert audited[rid]["Action"] == "DescribeImages", audited[rid]


def test_throttling_raw_header_and_refill(throttled):
    key = throttled.key()
    responses = []
    for _ in range(3 * BURST):
        responses.append(raw_v1_from(throttled.host, key.ak, key.secret))
    statuses = [r.status for r in responses]
    assert statuses[:BURST] == [200] * BURST, statuses
    limited = [r for r in responses if r.status != 200]
    assert limited, statuses
    for resp in limited:
        check_json_error(resp, "Throttling.User", 400)
        header = resp.headers.get("x-acs-retry-after")
        assert header is not None and header.isdigit() and int(header) > 0, \
            f"Throttling.User must carry a positive x-acs-retry-after (ms): {resp.headers}"
    # A full second refills the bucket to the burst size (rate 5/s, burst 5).
    time.sleep(BURST / RATE + 0.1)
    statuses = [raw_v1_from(throttled.host, key.ak, key.secret).status for _ in range(BURST)]
    assert statuses == [200] * BURST, f"the bucket refills to {BURST} tokens: {statuses}"


def test_throttling_applies_to_writes_and_keeps_state(throttled):
    """A throttled write changes nothing."""
    key = throttled.key()
    api = throttled.sdk(key, "tea_v3")
    img = throttled.image(throttled.root)
    names = []
    refused = 0
    for n in range(3 * BURST):
        name = f"Throttled-{n}"
        try:
            api.op("ModifyImageAttribute", ImageId=img, ImageName=name)
            names.append(name)
        except tea_exceptions.ThrottlingException as e:
            assert e.code == "Throttling.User"
            refused += 1
    assert refused > 0 and names, (refused, names)
    current = throttled.self_images()[img]["ImageName"]
    assert current == names[-1], f"a throttled rename took effect: {current} vs {names}"


def test_full_policy_user_throttled_separately(throttled):
    """RAM user keys get their own bucket too."""
    user = throttled.user(FULL)
    api = throttled.sdk(user, "tea_v2")
    outcomes = burst(api, 3 * BURST)
    assert outcomes[:BURST] == ["ok"] * BURST and any(o != "ok" for o in outcomes), outcomes
