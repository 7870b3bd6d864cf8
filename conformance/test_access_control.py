"""Access control: RAM users and policies (actions, resources, conditions, explicit Deny),
AccessKey states, STS tokens, the audit log, and secrets at rest, driven through the three
official SDK flavours (Tea V3, Tea V1 'v2', core V1) against a private server."""
from __future__ import annotations

import datetime as _dt
import json
import secrets
import stat
import subprocess
import time

import pytest

from access_support import (
    ALL_FLAVORS,
    FULL,
    READ_ONLY,
    AclWorld,
    AdminCli,
    Principal,
    expect_denied,
    files_containing,
    image_arn,
    make_sdk,
    parse_time,
    policy_doc,
    raw_v1_from,
    rid_of,
    start_acl_server,
    statement,
)
from ens_support import (
    BACKEND,
    assert_request_id,
    check_code_zero,
    check_describe_envelope,
    check_json_error,
    check_self_images_body,
    check_share_permission_body,
    database_url_for,
    expect_error,
    new_access_key,
)


@pytest.fixture(scope="module")
def acl(tmp_path_factory):
    w = AclWorld(tmp_path_factory.mktemp("ens-acl"), log_name="acl", build_seconds=0)
    yield w
    w.stop()


@pytest.fixture(params=ALL_FLAVORS)
def flavor(request):
    return request.param


@pytest.fixture
def server(acl):
    """Lets conftest attach this module's server log to a failure report."""
    return acl.server


def arn(acl, image_id, account=None):
    """The resource the server names for an image action (node part empty)."""
    return f"acs:ens::{account or acl.root.account_id}:image/{image_id}"


def owner_view(acl, image_id, owner=None):
    return acl.self_images(owner).get(image_id)


def shares(acl, image_id, owner=None):
    body = acl.sdk(owner or acl.root).op("DescribeImageSharePermission", ImageId=image_id)
    return sorted(check_share_permission_body(body))


# ---------------------------------------------------------------------------------------
# 1. Read-only, full, explicit Deny
# ---------------------------------------------------------------------------------------


def test_read_only_user_reads_but_cannot_write(acl, flavor):
    other = acl.account()
    ro = acl.user(READ_ONLY)
    img = acl.image(name="Ro-target")
    before_images = acl.self_images()
    before = before_images[img]
    api = acl.sdk(ro, flavor)

    listing = check_describe_envelope(api.op("DescribeImages", ImageId=img))
    assert [i["ImageId"] for i in listing] == [img]
    assert listing[0]["ImageOwnerAlias"] == "self", listing
    own = check_self_images_body(api.op("DescribeSelfImages", ImageId=img))
    assert img in {i["ImageId"] for i in own}, "a RAM user sees its account's images"
    assert check_share_permission_body(api.op("DescribeImageSharePermission", ImageId=img)) == []

    instance = acl.admin.add_instance(acl.root.account_id)
    expect_denied(api, "CreateImage", InstanceId=instance, ImageName="Ro-made")
    expect_denied(api, "DeleteImage", arn(acl, img), ImageId=img)
    expect_denied(api, "ModifyImageAttribute", ImageId=img, ImageName="Ro-renamed")
    expect_denied(api, "ModifyImageSharePermission", arn(acl, img), ImageId=img,
                  AddAccounts=other.account_id)

    after_images = acl.self_images()
    assert set(after_images) == set(before_images), "a denied CreateImage/DeleteImage changed " \
                                                    "the account's images"
    assert after_images[img] == before, "a denied call changed the image"
    assert shares(acl, img) == [], "a denied ModifyImageSharePermission shared the image"


def test_full_user_can_do_everything(acl, flavor):
    other = acl.account()
    full = acl.user(FULL)
    api = acl.sdk(full, flavor)
    body = api.op("CreateImage", InstanceId=acl.admin.add_instance(acl.root.account_id),
                  ImageName="Full-made")
    check_code_zero(body)
    img = body["ImageId"]
    assert owner_view(acl, img)["ImageName"] == "Full-made", "the image belongs to the account"
    check_code_zero(api.op("ModifyImageAttribute", ImageId=img, ImageName="Full-renamed"))
    assert owner_view(acl, img)["ImageName"] == "Full-renamed"
    api.op("ModifyImageSharePermission", ImageId=img, AddAccounts=other.account_id)
    assert shares(acl, img) == [other.account_id]
    assert check_share_permission_body(
        api.op("DescribeImageSharePermission", ImageId=img)) == [other.account_id]
    api.op("ModifyImageSharePermission", ImageId=img, RemoveAccounts=other.account_id)
    check_code_zero(api.op("DeleteImage", ImageId=img))
    assert owner_view(acl, img) is None, "DeleteImage by the full user did not delete"


@pytest.mark.parametrize("shape", ["one-policy", "two-policies"])
def test_explicit_deny_beats_allow_all(acl, flavor, shape):
    deny = statement("Deny", "ens:DeleteImage")
    if shape == "one-policy":
        user = acl.user(policy_doc(statement("Allow", "ens:*"), deny))
    else:
        user = acl.user(FULL, policy_doc(deny))
    img = acl.image()
    api = acl.sdk(user, flavor)
    err = expect_denied(api, "DeleteImage", arn(acl, img), ImageId=img)
    assert owner_view(acl, img) is not None, "a denied DeleteImage deleted the image"
    # Everything else ens:* allows still works.
    check_code_zero(api.op("ModifyImageAttribute", ImageId=img, ImageName="Deny-kept"))
    assert owner_view(acl, img)["ImageName"] == "Deny-kept"
    assert err.request_id


def test_deny_on_one_image_resource(acl, flavor):
    keep, free = acl.image(), acl.image()
    user = acl.user(policy_doc(statement("Allow", "ens:*"),
                               statement("Deny", "ens:DeleteImage",
                                         image_arn(acl.root.account_id, keep))))
    api = acl.sdk(user, flavor)
    expect_denied(api, "DeleteImage", arn(acl, keep), ImageId=keep)
    check_code_zero(api.op("DeleteImage", ImageId=free))
    images = acl.self_images()
    assert keep in images and free not in images


def test_action_wildcards(acl, flavor):
    other = acl.account()
    user = acl.user(policy_doc(statement("Allow", ["ens:Modify*", "ens:DescribeSelf*"])))
    api = acl.sdk(user, flavor)
    img = acl.image(name="Wild-before")
    check_code_zero(api.op("ModifyImageAttribute", ImageId=img, ImageName="Wild-after"))
    api.op("ModifyImageSharePermission", ImageId=img, AddAccounts=other.account_id)
    assert shares(acl, img) == [other.account_id]
    check_self_images_body(api.op("DescribeSelfImages", ImageId=img))
    expect_denied(api, "DescribeImages")
    expect_denied(api, "DescribeImageSharePermission", ImageId=img)
    expect_denied(api, "DeleteImage", arn(acl, img), ImageId=img)
    assert owner_view(acl, img)["ImageName"] == "Wild-after"


# ---------------------------------------------------------------------------------------
# 2. Resource-scoped user
# ---------------------------------------------------------------------------------------


def test_resource_scoped_user(acl, flavor):
    other = acl.account()
    mine, theirs = acl.image(name="Scoped-mine"), acl.image(name="Scoped-theirs")
    user = acl.user(policy_doc(statement(
        "Allow", ["ens:DeleteImage", "ens:ModifyImageSharePermission"],
        image_arn(acl.root.account_id, mine))))
    api = acl.sdk(user, flavor)

    expect_denied(api, "DeleteImage", arn(acl, theirs), ImageId=theirs)
    expect_denied(api, "ModifyImageSharePermission", arn(acl, theirs), ImageId=theirs,
                  AddAccounts=other.account_id)
    # Actions on `*` are outside an image-scoped policy.
    expect_denied(api, "ModifyImageAttribute", ImageId=mine, ImageName="Scoped-renamed")
    expect_denied(api, "DescribeImages", ImageId=mine)

    api.op("ModifyImageSharePermission", ImageId=mine, AddAccounts=other.account_id)
    assert shares(acl, mine) == [other.account_id]
    api.op("ModifyImageSharePermission", ImageId=mine, RemoveAccounts=other.account_id)
    check_code_zero(api.op("DeleteImage", ImageId=mine))

    images = acl.self_images()
    assert mine not in images, "DeleteImage on the allowed image did not delete it"
    assert theirs in images and images[theirs]["ImageName"] == "Scoped-theirs"
    assert shares(acl, theirs) == []


# ---------------------------------------------------------------------------------------
# 3. Conditions: source IP, time (SecureTransport: test_transport.py)
# ---------------------------------------------------------------------------------------


def describe_only(condition):
    return policy_doc(statement("Allow", "ens:Describe*", "*", condition))


@pytest.mark.parametrize("condition, allowed", [
    ({"IpAddress": {"acs:SourceIp": "127.0.0.1/32"}}, True),
    ({"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}}, True),
    ({"IpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}}, False),
    ({"IpAddress": {"acs:SourceIp": "192.168.1.7"}}, False),
    ({"NotIpAddress": {"acs:SourceIp": "127.0.0.0/8"}}, False),
    ({"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}}, True),
], ids=["ip-loopback32", "ip-list-with-loopback", "ip-10-only", "ip-single-other",
        "notip-loopback", "notip-10"])
def test_source_ip_condition(acl, flavor, condition, allowed):
    api = acl.sdk(acl.user(describe_only(condition)), flavor)
    if allowed:
        check_describe_envelope(api.op("DescribeImages", PageSize="5"))
    else:
        expect_denied(api, "DescribeImages", PageSize="5")


def test_source_ip_is_the_peer_address(acl):
    """The condition and the audit use the TCP peer (here another loopback address), not a
    client-supplied forwarding header."""
    user = acl.user(describe_only({"IpAddress": {"acs:SourceIp": "127.0.0.1/32"}}))
    resp = raw_v1_from(acl.host, user.ak, user.secret, source_ip="127.0.0.2")
    denied = check_json_error(resp, "NoPermission", 400)
    spoofed = raw_v1_from(acl.host, user.ak, user.secret, source_ip="127.0.0.2",
                          headers={"X-Forwarded-For": "127.0.0.1",
                                   "X-Real-IP": "127.0.0.1"})
    denied_spoofed = check_json_error(spoofed, "NoPermission", 400)
    ok = raw_v1_from(acl.host, user.ak, user.secret, source_ip="127.0.0.1",
                     headers={"X-Forwarded-For": "10.1.2.3"})
    assert ok.status == 200, ok.body[:300]
    check_describe_envelope(ok.json())
    for rid in (denied["RequestId"], denied_spoofed["RequestId"]):
        recs = [r for r in acl.admin.audit(account=acl.root.account_id, outcome="NoPermission")
                if r["RequestId"] == rid]
        assert len(recs) == 1, f"denied call {rid} not audited once"
        assert recs[0]["SourceIp"] == "127.0.0.2", recs[0]


def iso(delta_days):
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=delta_days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("operator, delta, allowed", [
    ("DateGreaterThan", -1, True),
    ("DateGreaterThan", +1, False),
    ("DateLessThan", +1, True),
    ("DateLessThan", -1, False),
])
def test_current_time_condition(acl, flavor, operator, delta, allowed):
    api = acl.sdk(acl.user(describe_only({operator: {"acs:CurrentTime": iso(delta)}})), flavor)
    if allowed:
        check_describe_envelope(api.op("DescribeImages", PageSize="5"))
    else:
        expect_denied(api, "DescribeImages", PageSize="5")


# ---------------------------------------------------------------------------------------
# 4. Policy changes apply on the next request; user deletion
# ---------------------------------------------------------------------------------------


def test_policy_changes_apply_on_next_request(acl, flavor):
    account = acl.root.account_id
    name = f"live-{secrets.token_hex(3)}"
    user = acl.user(name=name)  # no policy at all
    api = acl.sdk(user, flavor)
    read = acl.policy(READ_ONLY)
    block = acl.policy(policy_doc(statement("Deny", "ens:DescribeImages")))

    expect_denied(api, "DescribeImages")
    acl.admin.attach(account, read, name)
    check_describe_envelope(api.op("DescribeImages"))
    acl.admin.attach(account, block, name)
    expect_denied(api, "DescribeImages")
    check_self_images_body(api.op("DescribeSelfImages"))  # not covered by the Deny
    acl.admin.detach(account, block, name)
    check_describe_envelope(api.op("DescribeImages"))
    # An attached policy cannot be deleted.
    acl.admin.fail("policy", "delete", "--account", account, "--name", read)
    acl.admin.detach(account, read, name)
    expect_denied(api, "DescribeImages")
    acl.admin.attach(account, read, name)
    check_describe_envelope(api.op("DescribeImages"))

    acl.admin.delete_user(account, name)
    expect_error(api, "DescribeImages", "InvalidAccessKeyId.NotFound", 404)
    assert name not in {u["UserName"] for u in acl.admin.users(account)}
    assert user.ak not in {k["AccessKeyId"] for k in acl.admin.keys()}
    # Its attachments went with it: the policy can be deleted now.
    acl.admin.run("policy", "delete", "--account", account, "--name", read)
    assert read not in {p["PolicyName"] for p in acl.admin.policies(account)}


def test_user_without_policy_and_other_account_scope(acl, flavor):
    """A user with no policy can do nothing; a policy naming another account's images grants
    nothing on this account's images."""
    nothing = acl.sdk(acl.user(), flavor)
    expect_denied(nothing, "DescribeImages")
    expect_denied(nothing, "DescribeSelfImages")
    img = acl.image()
    other = acl.account()
    foreign = acl.user(policy_doc(statement("Allow", "ens:DeleteImage",
                                            image_arn(other.account_id, img))))
    expect_denied(acl.sdk(foreign, flavor), "DeleteImage", arn(acl, img), ImageId=img)
    assert owner_view(acl, img) is not None


# ---------------------------------------------------------------------------------------
# 5. Key states
# ---------------------------------------------------------------------------------------


def test_key_disable_enable_delete(acl, flavor):
    key = acl.key()
    sibling = acl.key()
    api = acl.sdk(key, flavor)
    check_describe_envelope(api.op("DescribeImages"))
    assert acl.admin.key_status(key.ak) == "Active"

    acl.admin.run("key", "disable", key.ak)
    expect_error(api, "DescribeImages", "InvalidAccessKeyId.Inactive", 400)
    assert acl.admin.key_status(key.ak) not in (None, "Active")
    check_describe_envelope(acl.sdk(sibling, flavor).op("DescribeImages"))  # only that key

    acl.admin.run("key", "enable", key.ak)
    check_describe_envelope(api.op("DescribeImages"))
    assert acl.admin.key_status(key.ak) == "Active"

    acl.admin.run("key", "delete", key.ak)
    expect_error(api, "DescribeImages", "InvalidAccessKeyId.NotFound", 404)
    assert acl.admin.key_status(key.ak) is None
    acl.admin.fail("key", "enable", key.ak)
    check_describe_envelope(acl.sdk(sibling, flavor).op("DescribeImages"))


def test_disabled_ram_user_key_on_a_write(acl, flavor):
    user = acl.user(FULL)
    img = acl.image(name="Inactive-kept")
    acl.admin.run("key", "disable", user.ak)
    expect_error(acl.sdk(user, flavor), "ModifyImageAttribute", "InvalidAccessKeyId.Inactive",
                 400, ImageId=img, ImageName="Inactive-renamed")
    assert owner_view(acl, img)["ImageName"] == "Inactive-kept"


# ---------------------------------------------------------------------------------------
# 10. STS tokens
# ---------------------------------------------------------------------------------------


def test_security_token_is_refused(acl, flavor):
    key = acl.key()
    token = "CAIS" + secrets.token_urlsafe(48)
    api = acl.sdk(key, flavor, security_token=token)
    expect_error(api, "DescribeImages", "InvalidSecurityToken.Malformed", 400)
    img = acl.image(name="Sts-kept")
    expect_error(api, "DeleteImage", "InvalidSecurityToken.Malformed", 400, ImageId=img)
    assert owner_view(acl, img) is not None
    # The same key without a token works.
    check_describe_envelope(acl.sdk(key, flavor).op("DescribeImages"))


# ---------------------------------------------------------------------------------------
# 8. Audit
# ---------------------------------------------------------------------------------------


def test_audit_log_records_writes_and_refusals(acl):
    tenant = acl.account()
    acc = tenant.account_id
    ro_name = f"auditor-{secrets.token_hex(3)}"
    ro = acl.user(READ_ONLY, account=acc, name=ro_name)
    owner_v3 = acl.sdk(tenant, "tea_v3")
    acl.image()  # the root account has a record of its own
    started = _dt.datetime.now(_dt.timezone.utc)
    expected = []  # (RequestId, Action, Outcome, principal, Resource), oldest first

    def note(rid, action, outcome, who, resource="*"):
        assert_request_id(rid)
        expected.append((rid, action, outcome, who, resource))

    body = owner_v3.op("CreateImage", InstanceId=acl.admin.add_instance(acc),
                       ImageName="Audited")
    img = body["ImageId"]
    note(rid_of(body), "CreateImage", "Success", tenant)
    read_rids = [rid_of(owner_v3.op("DescribeImages", ImageId=img)),
                 rid_of(acl.sdk(ro, "core").op("DescribeSelfImages"))]
    err = expect_denied(acl.sdk(ro, "core"), "DeleteImage", arn(acl, img, acc), ImageId=img)
    note(err.request_id, "DeleteImage", "NoPermission", ro, arn(acl, img, acc))
    err = expect_denied(acl.sdk(ro, "tea_v2"), "ModifyImageAttribute", ImageId=img,
                        ImageName="Ro-try")
    note(err.request_id, "ModifyImageAttribute", "NoPermission", ro)
    err = owner_v3.op_error("DeleteImage", ImageId="m-" + "a" * 25)
    assert err.code not in (None, "NoPermission"), err
    note(err.request_id, "DeleteImage", err.code, tenant, arn(acl, "m-" + "a" * 25, acc))
    time.sleep(0.01)
    body = acl.sdk(tenant, "core").op("DeleteImage", ImageId=img)
    note(rid_of(body), "DeleteImage", "Success", tenant, arn(acl, img, acc))
    finished = _dt.datetime.now(_dt.timezone.utc)

    records = acl.admin.audit(account=acc)
    newest_first = [e[0] for e in reversed(expected)]
    assert [r["RequestId"] for r in records] == newest_first, \
        ("audit --account must list exactly the writes and refused calls, newest first "
         f"(successful reads {read_rids} excluded):\n"
         + json.dumps(records, indent=1))
    times = [parse_time(r["Time"]) for r in records]
    assert times == sorted(times, reverse=True), "audit must be newest first"
    by_rid = {r["RequestId"]: r for r in records}
    for rid, action, outcome, who, resource in expected:
        rec = by_rid[rid]
        assert set(rec) >= {"Time", "RequestId", "AccountId", "UserName", "AccessKeyId",
                            "Action", "Resource", "SourceIp", "Outcome"}, rec
        assert rec["Action"] == action, rec
        assert rec["Outcome"] == outcome, rec
        assert str(rec["AccountId"]) == acc, rec
        assert rec["AccessKeyId"] == who.ak, rec
        if who.user_name is None:
            assert rec["UserName"] in (None, ""), f"owner calls carry no UserName: {rec}"
        else:
            assert rec["UserName"] == who.user_name, rec
        assert rec["Resource"] == resource, rec
        assert rec["SourceIp"] == "127.0.0.1", rec
        t = parse_time(rec["Time"])
        assert started - _dt.timedelta(seconds=2) <= t <= finished + _dt.timedelta(seconds=2), rec

    # Filters.
    def rids(**filters):
        return [r["RequestId"] for r in acl.admin.audit(account=acc, **filters)]

    def exp(pred):
        return [e[0] for e in reversed(expected) if pred(e)]

    assert rids(action="DeleteImage") == exp(lambda e: e[1] == "DeleteImage")
    assert rids(outcome="NoPermission") == exp(lambda e: e[2] == "NoPermission")
    assert rids(outcome="Success") == exp(lambda e: e[2] == "Success")
    assert rids(action="DeleteImage", outcome="Success") == [expected[-1][0]]
    assert rids(limit=2) == newest_first[:2]
    since = by_rid[expected[2][0]]["Time"]  # the ModifyImageAttribute NoPermission record
    assert rids(since=since) == newest_first[:len(expected) - 2], "--since is inclusive"
    future = (finished + _dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rids(since=future) == []
    assert newest_first[0] == acl.admin.audit(limit=1)[0]["RequestId"], \
        "audit without --account lists the newest record of any account first"
    everyone = acl.admin.audit(limit=1000)
    assert {str(r["AccountId"]) for r in everyone} >= {acc, acl.root.account_id}, \
        "audit without --account covers every account"
    assert all(str(r["AccountId"]) == acl.root.account_id
               for r in acl.admin.audit(account=acl.root.account_id, limit=1000))


@pytest.mark.parametrize("shift, offset_hours, included", [
    (0, 0, True),    # 2026-01-02T03:04:05Z for a record at 03:04:05.xxx
    (0, 8, True),    # the same instant written with a +08:00 offset
    (-1, 8, True),
    (-1, 0, True),
    (1, 0, False),
    (1, 8, False),
], ids=["same-second-Z", "same-second+08", "previous-second+08", "previous-second-Z",
        "next-second-Z", "next-second+08"])
def test_audit_since_compares_instants(acl, shift, offset_hours, included):
    """--since takes any RFC 3339 time and compares instants, whatever the precision or
    offset it is written with."""
    tenant = acl.account()
    body = acl.sdk(tenant).op("CreateImage", InstanceId=acl.admin.add_instance(tenant.account_id),
                              ImageName="Since-probe")
    recs = acl.admin.audit(account=tenant.account_id)
    assert [r["RequestId"] for r in recs] == [rid_of(body)], recs
    at = parse_time(recs[0]["Time"]).replace(microsecond=0) + _dt.timedelta(seconds=shift)
    if offset_hours == 0:
        since = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        since = at.astimezone(_dt.timezone(_dt.timedelta(hours=offset_hours))).isoformat()
    got = [r["RequestId"] for r in acl.admin.audit(account=tenant.account_id, since=since)]
    if included:
        assert got == [rid_of(body)], \
            f"--since {since} must include the record at {recs[0]['Time']}: got {got}"
    else:
        assert got == [], f"--since {since} must exclude the record at {recs[0]['Time']}: {got}"


def _refuse(acl, case):
    """One call refused before authorization; returns (ApiError, the key it named)."""
    key = acl.key()
    if case == "signature":
        err = expect_error(acl.sdk(Principal(key.account_id, key.ak, "bad" + key.secret),
                                   "tea_v3"), "DescribeImages", "SignatureDoesNotMatch", 400)
    elif case == "inactive":
        acl.admin.run("key", "disable", key.ak)
        err = expect_error(acl.sdk(key, "core"), "DescribeImages",
                           "InvalidAccessKeyId.Inactive", 400)
    elif case == "not-found":
        acl.admin.run("key", "delete", key.ak)
        err = expect_error(acl.sdk(key, "tea_v2"), "DescribeImages",
                           "InvalidAccessKeyId.NotFound", 404)
    elif case == "sts-v3":
        err = expect_error(acl.sdk(key, "tea_v3", security_token="CAIS" + "t" * 40),
                           "DescribeImages", "InvalidSecurityToken.Malformed", 400)
    elif case == "sts-v1":
        err = expect_error(acl.sdk(key, "core", security_token="CAIS" + "t" * 40),
                           "DescribeImages", "InvalidSecurityToken.Malformed", 400)
    else:
        raise AssertionError(case)
    return err, key


@pytest.mark.parametrize("case", ["signature", "inactive", "not-found", "sts-v3", "sts-v1"])
def test_audit_records_refused_authentication(acl, case):
    """Refusals before authorization are audited too, with the AccessKeyId the caller named
    (AccountId/UserName: the key's, or empty since the caller is not authenticated)."""
    err, key = _refuse(acl, case)
    recs = [r for r in acl.admin.audit(outcome=err.code, limit=100000)
            if r["RequestId"] == err.request_id]
    assert len(recs) == 1, f"refused call {err.code} ({err.request_id}) must be audited once; " \
                           f"found {recs!r}"
    rec = recs[0]
    assert rec["Action"] == "DescribeImages" and rec["Resource"] == "*", rec
    assert rec["AccessKeyId"] == key.ak, rec
    assert rec["SourceIp"] == "127.0.0.1", rec
    assert rec["AccountId"] in (None, "", key.account_id), rec
    assert rec["UserName"] in (None, ""), rec


def test_audit_keeps_only_the_size_of_a_malformed_access_key_id(acl):
    """A 50 000-byte AccessKeyId is refused as an unknown key; the audit records its size,
    not the bytes, so refusals cannot fill the store with what they send."""
    huge = "K" * 50_000
    resp = raw_v1_from(acl.host, huge, "any-secret")
    body = check_json_error(resp, "InvalidAccessKeyId.NotFound", 404)
    recs = [r for r in acl.admin.audit(outcome="InvalidAccessKeyId.NotFound", limit=100000)
            if r["RequestId"] == body["RequestId"]]
    assert len(recs) == 1, recs
    assert recs[0]["AccessKeyId"] == "<malformed: 50000 bytes>", recs[0]["AccessKeyId"][:80]


# ---------------------------------------------------------------------------------------
# 9. Secrets and policy validation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("statements, fragments", [
    ([statement("Allow", "ens:*", "*", {"Bogus": {"acs:SourceIp": "1.2.3.4"}})],
     ["Statement[0].Condition", "Bogus"]),
    ([statement("Allow", "ens:Describe*"),
      statement("Allow", "ens:*", "*", {"IpAddress": {"acs:SourceIp": "not-a-cidr"}})],
     ["Statement[1]", "acs:SourceIp", "not-a-cidr"]),
    ([statement("Maybe", "ens:*")], ["Statement[0]", "Effect"]),
    ([statement("Allow", "ens:*", "*", {"IpAddress": {"acs:NoSuchKey": "10.0.0.0/8"}})],
     ["acs:NoSuchKey"]),
    ([statement("Allow", "ens:*", "*", {"Bool": {"acs:SecureTransport": "perhaps"}})],
     ["acs:SecureTransport", "perhaps"]),
    ([statement("Allow", "ens:*", "*", {"DateLessThan": {"acs:CurrentTime": "tomorrow"}})],
     ["acs:CurrentTime", "tomorrow"]),
    ([], ["Statement"]),
], ids=["operator", "cidr", "effect", "condition-key", "bool", "date", "empty"])
def test_invalid_policy_document_is_refused(acl, statements, fragments):
    name = f"bad-{secrets.token_hex(3)}"
    message = acl.admin.refuse_policy(acl.root.account_id, name, policy_doc(*statements))
    for fragment in fragments:
        assert fragment in message, f"refusal should name {fragment!r}: {message!r}"
    assert name not in {p["PolicyName"] for p in acl.admin.policies(acl.root.account_id)}


def test_invalid_policy_envelope_is_refused(acl):
    account = acl.root.account_id
    msg = acl.admin.refuse_policy(account, "bad-version", {"Version": "2", "Statement": [
        statement("Allow", "ens:*")]})
    assert "Version" in msg, msg
    msg = acl.admin.refuse_policy(account, "bad-json", '{"Version": "1", "Statement": [')
    assert "JSON" in msg, msg
    missing = {"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*"}]}
    msg = acl.admin.refuse_policy(account, "no-action", missing)
    assert "Action" in msg, msg


def test_master_key_is_generated_private(acl):
    key_file = acl.data_dir / "master.key"
    assert key_file.is_file(), "serve must generate DIR/master.key on first start"
    assert stat.S_IMODE(key_file.stat().st_mode) & 0o077 == 0, "master.key must be private"


def test_master_key_from_environment(tmp_path):
    master = secrets.token_hex(32)
    ak, secret = new_access_key()
    srv = start_acl_server(tmp_path / "data", ak=ak, secret=secret, log_name="mk",
                           env_extra={"ENS_IMAGES_MASTER_KEY": master})
    try:
        admin = AdminCli(tmp_path / "data", env_extra={"ENS_IMAGES_MASTER_KEY": master})
        account = admin.account_of_key(ak)
        key = admin.create_key(account)
        for p in (Principal(account, ak, secret), key):
            check_describe_envelope(make_sdk("tea_v3", srv.host, p).op("DescribeImages"))
    finally:
        srv.stop()
    assert not (tmp_path / "data" / "master.key").exists(), \
        "with ENS_IMAGES_MASTER_KEY set, no master.key may be written to the data dir"
    assert files_containing(tmp_path / "data", [master, key.secret],
                            exclude=("root-credentials.json",)) == []


def test_secrets_never_leak(acl):
    """Runs late in the module: every secret handed out so far (root, accounts, users) went
    through the server; none may show in its output, the admin listings, the audit, or the
    store files (the root key's own credentials file excepted)."""
    key = acl.user(FULL)
    api = acl.sdk(key, "tea_v2")
    check_describe_envelope(api.op("DescribeImages"))
    img = acl.image()
    check_code_zero(api.op("ModifyImageAttribute", ImageId=img, ImageName="Secret-test"))
    expect_error(acl.sdk(Principal(key.account_id, key.ak, key.secret + "x"), "core"),
                 "DescribeImages", "InvalidAccessKeySecret", 400)
    expect_error(acl.sdk(Principal(key.account_id, key.ak, key.secret + "x"), "tea_v3"),
                 "DescribeImages", "SignatureDoesNotMatch", 400)
    known = list(dict.fromkeys(acl.secrets))
    assert key.secret in known and acl.root.secret in known

    master = (acl.data_dir / "master.key").read_text("utf-8").strip()
    assert len(master) >= 32, "master.key holds a key"
    out = acl.server.output_bytes()
    assert master.encode() not in out, "the master key is in the server's output"
    leaked = [s for s in known if s.encode() in out]
    assert leaked == [], f"secrets in the server's stdout/stderr: {leaked}"

    listings = [acl.admin.raw(*args) for args in (
        ("key", "list"), ("audit", "--limit", "100000"), ("user", "list"),
        ("account", "list"), ("policy", "list"))]
    for result in listings:
        assert result.returncode == 0, result
        text = result.stdout + result.stderr
        leaked = [s for s in known if s.encode() in text]
        assert leaked == [], f"secrets in `admin {result.args[4:]}` output: {leaked}"

    if BACKEND == "postgres":
        # The store is a PostgreSQL database: dump it and look for the secrets in the dump.
        dump = acl.data_dir.parent / f"{acl.data_dir.name}.pg_dump.sql"
        subprocess.run(["pg_dump", "--data-only", "-f", str(dump), database_url_for(acl.data_dir)],
                       check=True, capture_output=True, timeout=120)
        assert b"access_keys" in dump.read_bytes()
        dumped = [s for s in known + [master] if s.encode() in dump.read_bytes()]
        assert dumped == [], f"secrets in plain text in the database: {dumped}"
    else:
        files = sorted(p.name for p in acl.data_dir.iterdir())
        assert any(name.endswith("-wal") for name in files) or any(
            name.endswith(".db") for name in files), files
    hits = files_containing(acl.data_dir, known, exclude=("root-credentials.json",))
    hits += files_containing(acl.data_dir, [master], exclude=("master.key",))
    assert hits == [], f"secrets in plain text in the store files: {hits}"
    # The check itself works: the root secret is in its credentials file, or the file is
    # absent because the root key came from the environment.
    creds = acl.data_dir / "root-credentials.json"
    if creds.exists():
        assert acl.root.secret in creds.read_text("utf-8")


def test_secrets_not_logged_at_trace_level(tmp_path):
    """Even with the most verbose log filter, no AccessKey secret reaches the log."""
    ak, secret = new_access_key()
    srv = start_acl_server(tmp_path / "data", ak=ak, secret=secret, log_name="trace",
                           env_extra={"ENS_IMAGES_LOG": "trace", "RUST_LOG": "trace"})
    try:
        admin = AdminCli(tmp_path / "data")
        account = admin.account_of_key(ak)
        admin.create_user(account, "tracer")
        admin.create_policy(account, "p", FULL)
        admin.attach(account, "p", "tracer")
        user = admin.create_key(account, "tracer")
        root = Principal(account, ak, secret)
        for flavor in ("tea_v3", "tea_v2", "core"):
            for who in (root, user):
                api = make_sdk(flavor, srv.host, who)
                check_describe_envelope(api.op("DescribeImages"))
                expect_error(make_sdk(flavor, srv.host, ak=who.ak, secret=who.secret + "z"),
                             "DescribeImages",
                             "InvalidAccessKeySecret" if flavor == "core"
                             else "SignatureDoesNotMatch", 400)
        out = srv.output_bytes()
        assert len(out) > 1000, "trace logging produced output"
        leaked = [name for name, s in (("root", secret), ("user", user.secret))
                  if s.encode() in out]
        assert leaked == [], f"secrets in the trace-level log: {leaked}"
    finally:
        srv.stop()


def test_sealed_keys_survive_a_restart(tmp_path):
    """Secrets sealed under DIR/master.key are unsealed again by the next process."""
    ak, secret = new_access_key()
    data = tmp_path / "data"
    srv = start_acl_server(data, ak=ak, secret=secret, log_name="seal-1")
    admin = AdminCli(data)
    try:
        account = admin.account_of_key(ak)
        admin.create_user(account, "keeper")
        admin.create_policy(account, "ro", READ_ONLY)
        admin.attach(account, "ro", "keeper")
        user = admin.create_key(account, "keeper")
        check_describe_envelope(make_sdk("tea_v3", srv.host, user).op("DescribeImages"))
    finally:
        srv.stop()
    srv = start_acl_server(data, log_name="seal-2")  # no root key in the environment now
    try:
        for flavor in ("tea_v3", "core"):
            check_describe_envelope(make_sdk(flavor, srv.host, user).op("DescribeImages"))
            check_describe_envelope(make_sdk(flavor, srv.host, ak=ak, secret=secret)
                                    .op("DescribeImages"))
            expect_denied(make_sdk(flavor, srv.host, user), "DeleteImage", ImageId="m-" + "b" * 25)
    finally:
        srv.stop()
    assert files_containing(data, [secret, user.secret], exclude=("root-credentials.json",)) == []
