"""RAM policies through the control API, proven with the official Tea SDK: a RAM user's rights
follow what the control API attaches and detaches, from the very next call."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from alibabacloud_ens20171110 import models
from alibabacloud_ens20171110.client import Client
from alibabacloud_tea_openapi import exceptions as tea_exceptions

from ens_images_testing import ControlError

NODE = "cn-dalian-unicom"


def describe(client: Client):
    return client.describe_images(models.DescribeImagesRequest(ens_region_id=NODE)).body


def delete(client: Client, image_id: str):
    return client.delete_image(models.DeleteImageRequest(image_id=image_id)).body


def refused(call) -> str:
    """The cloud error code `call` raises; NoPermission is answered with HTTP 400."""
    with pytest.raises(tea_exceptions.ClientException) as raised:
        call()
    assert raised.value.status_code == 400, raised.value
    return raised.value.code


def post_raw(control, path: str, data: bytes):
    """POSTs bytes as they are (json.dumps could not send a key twice)."""
    request = urllib.request.Request(control.url + path, method="POST", data=data, headers={
        "Authorization": f"Bearer {control._token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def operator_policy(account_id: str) -> dict:
    return {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ens:Describe*", "Resource": "*"},
        {"Effect": "Allow", "Action": "ens:DeleteImage",
         "Resource": f"acs:ens:*:{account_id}:image/*"},
    ]}


@pytest.fixture
def ram_user(ens_images):
    """An account of its own with two custom images, and a RAM user in it holding a key,
    all made through the control API and the owner's SDK client."""
    control = ens_images.control
    job = control.create_account()
    account = job["AccountId"]
    control.add_instance(account, NODE, InstanceId="i-policy-test")
    owner = Client(ens_images.config(job["AccessKeyId"], job["AccessKeySecret"]))
    images = [owner.create_image(models.CreateImageRequest(
        image_name=f"img-{n}", instance_id="i-policy-test")).body.image_id for n in range(2)]
    control.create_user(account, "operator")
    key = control.create_access_key(account, user_name="operator")
    user = Client(ens_images.config(key["AccessKeyId"], key["AccessKeySecret"]))
    return account, user, images


def test_rights_follow_attach_and_detach_from_the_next_call(ens_images, ram_user):
    control = ens_images.control
    account, user, (first, second) = ram_user

    assert refused(lambda: describe(user)) == "NoPermission"
    assert refused(lambda: delete(user, first)) == "NoPermission"

    created = control.create_policy(account, "operator", operator_policy(account))
    assert created["PolicyName"] == "operator" and created["Statements"] == 2
    # Stored but attached to nobody: still refused.
    assert refused(lambda: describe(user)) == "NoPermission"

    attached = control.attach_policy(account, "operator", "operator")
    assert attached["Attached"] is True
    assert describe(user).total_count > 0
    delete(user, first)
    [policy] = control.policies(account)
    assert policy["AttachedTo"] == ["operator"]
    assert policy["PolicyDocument"] == operator_policy(account)

    detached = control.detach_policy(account, "operator", "operator")
    assert detached["Attached"] is False
    assert refused(lambda: describe(user)) == "NoPermission"
    assert refused(lambda: delete(user, second)) == "NoPermission"

    outcomes = [(e["Action"], e["Outcome"]) for e in control.journal(account_id=account)
                if e["UserName"] == "operator"]
    assert outcomes == [
        ("DescribeImages", "NoPermission"), ("DeleteImage", "NoPermission"),
        ("DescribeImages", "NoPermission"),
        ("DescribeImages", "Success"), ("DeleteImage", "Success"),
        ("DescribeImages", "NoPermission"), ("DeleteImage", "NoPermission"),
    ]


def test_a_document_as_text_and_deletion_only_once_detached(ens_images, ram_user):
    control = ens_images.control
    account, user, _ = ram_user
    text = '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ens:Describe*", "Resource": "*"}]}'
    control.create_policy(account, "reader", text)
    control.attach_policy(account, "operator", "reader")
    assert describe(user).total_count > 0

    with pytest.raises(ControlError) as raised:
        control.delete_policy(account, "reader")
    assert (raised.value.status, raised.value.code) == (409, "Conflict")
    assert "detach it first" in raised.value.message
    with pytest.raises(ControlError) as raised:
        control.create_policy(account, "reader", text)
    assert (raised.value.status, raised.value.code) == (409, "Conflict")

    control.detach_policy(account, "operator", "reader")
    control.delete_policy(account, "reader")
    assert control.policies(account) == []
    assert refused(lambda: describe(user)) == "NoPermission"


def test_a_bad_document_gets_the_parsers_message(ens_images):
    control = ens_images.control
    account = ens_images.account_id
    cases = {
        "unsupported operator": ({"Version": "1", "Statement": [{
            "Effect": "Allow", "Action": "ens:*", "Resource": "*",
            "Condition": {"StringLike": {"acs:SourceIp": "10.*"}}}]},
            'Statement[0].Condition: unsupported operator "StringLike"'),
        "bad effect": ({"Version": "1", "Statement": [
            {"Effect": "Maybe", "Action": "ens:*", "Resource": "*"}]}, "Effect"),
        "not JSON": ("{not json", "not valid JSON"),
        "duplicate key": ('{"Version": "1", "Version": "1", "Statement": []}', "Version"),
    }
    for name, (document, expected) in cases.items():
        with pytest.raises(ControlError) as raised:
            control.create_policy(account, "bad", document)
        assert (raised.value.status, raised.value.code) == (400, "InvalidInput"), name
        assert raised.value.message.startswith("PolicyDocument: "), raised.value.message
        assert expected in raised.value.message, (name, raised.value.message)

    # A key sent twice inside an object reaches the parser too, not a map that kept one of them.
    status, answer = post_raw(control, f"/accounts/{account}/policies", (
        b'{"PolicyName": "p", "PolicyDocument": {"Version": "1", "Statement": ['
        b'{"Effect": "Deny", "Effect": "Allow", "Action": "*", "Resource": "*"}]}}'))
    assert (status, answer["Code"]) == (400, "InvalidInput"), answer
    assert "Effect" in answer["Message"], answer
    with pytest.raises(ControlError) as raised:
        control.request("POST", f"/accounts/{account}/policies", None)
    assert raised.value.status == 400
    for body in ({"PolicyName": "p"}, {"PolicyName": "bad name!", "PolicyDocument": {
            "Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}},
            {"PolicyName": "p", "PolicyDocument": [], "Bogus": 1}):
        with pytest.raises(ControlError) as raised:
            control.request("POST", f"/accounts/{account}/policies", body)
        assert (raised.value.status, raised.value.code) == (400, "InvalidInput"), body
    with pytest.raises(ControlError) as raised:
        control.request("GET", f"/accounts/{account}/policies", query={"Limit": "5"})
    assert (raised.value.status, raised.value.code) == (400, "InvalidInput")
    assert control.policies(account) == []


def test_unknown_account_user_or_policy_is_404(ens_images):
    control = ens_images.control
    missing = "9999999999999999"
    document = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    calls = [
        lambda: control.policies(missing),
        lambda: control.policies("not-an-account"),
        lambda: control.create_policy(missing, "p", document),
        lambda: control.delete_policy(ens_images.account_id, "no-such-policy"),
        lambda: control.attach_policy(missing, "someone", "p"),
        lambda: control.attach_policy(ens_images.account_id, "nobody", "p"),
        lambda: control.detach_policy(ens_images.account_id, "nobody", "p"),
    ]
    for call in calls:
        with pytest.raises(ControlError) as raised:
            call()
        assert (raised.value.status, raised.value.code) == (404, "NotFound"), raised.value
    control.create_user(ens_images.account_id, "someone")
    with pytest.raises(ControlError) as raised:
        control.attach_policy(ens_images.account_id, "someone", "no-such-policy")
    assert raised.value.status == 404 and "no-such-policy" in raised.value.message
    assert control.policies(ens_images.account_id) == []
