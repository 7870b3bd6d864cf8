"""The fixture and the control API against the real binary, driven with the official Tea SDK."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest
from alibabacloud_ens20171110 import models
from alibabacloud_ens20171110.client import Client
from alibabacloud_tea_openapi import exceptions as tea_exceptions

from ens_images_testing import ControlError, EnsImagesServer
from ens_images_testing.server import find_binary

NODE = "cn-dalian-unicom"


def describe(client: Client, **fields):
    return client.describe_images(models.DescribeImagesRequest(ens_region_id=NODE, **fields)).body


def test_a_fault_raises_the_chosen_code_and_is_marked_in_the_journal(ens_images):
    rule = ens_images.control.add_fault("DescribeImages", error_code="OperationDenied.Maintenance",
                                        http_status=409, message="down for a test", count=1)
    client = Client(ens_images.config())
    with pytest.raises(tea_exceptions.ClientException) as raised:
        describe(client)
    assert raised.value.code == "OperationDenied.Maintenance"
    assert raised.value.status_code == 409
    assert "down for a test" in raised.value.message
    # The rule was for one call only: the next one goes through.
    assert describe(client).total_count > 0
    assert ens_images.control.faults() == []
    failed = ens_images.control.journal(outcome="OperationDenied.Maintenance")
    assert len(failed) == 1
    assert failed[0]["FaultId"] == rule["FaultId"]
    assert failed[0]["RequestId"] == raised.value.request_id
    assert failed[0]["HttpStatus"] == 409


def test_the_journal_keeps_the_call_but_never_the_signature(ens_images):
    body = describe(Client(ens_images.config()), page_size="3")
    [entry] = ens_images.control.journal(request_id=body.request_id)
    assert entry["Action"] == "DescribeImages"
    assert entry["Outcome"] == "Success" and entry["HttpStatus"] == 200
    assert entry["AccountId"] == ens_images.account_id
    assert entry["AccessKeyId"] == ens_images.access_key_id
    assert entry["Parameters"] == {"EnsRegionId": NODE, "PageSize": "3"}
    text = json.dumps(entry)
    assert ens_images.access_key_secret not in text
    assert "Signature" not in text
    assert ens_images.control.journal(action="DeleteImage") == []
    assert ens_images.control.clear_journal() >= 1
    assert ens_images.control.journal() == []


def test_throttle_and_latency_faults(ens_images):
    client = Client(ens_images.config())
    ens_images.control.add_fault("DescribeImages", throttle_ms=1500, count=1)
    with pytest.raises(tea_exceptions.ThrottlingException) as raised:
        describe(client)
    assert raised.value.code == "Throttling.User" and raised.value.retry_after == 1500
    ens_images.control.add_fault("DescribeImages", latency_ms=300, count=1)
    started = time.monotonic()
    assert describe(client).total_count > 0
    assert time.monotonic() - started >= 0.3
    slow = ens_images.control.journal(outcome="Success")[-1]
    assert slow["LatencyUs"] >= 300_000 and slow["FaultId"] is not None


def test_a_fault_scoped_to_one_account_spares_the_others(ens_images):
    other = ens_images.control.create_account(access_key_id="ci-job-2", access_key_secret="s3cret-2")
    ens_images.control.add_fault("*", error_code="InternalError", http_status=500,
                                 account_id=other["AccountId"])
    with pytest.raises(tea_exceptions.ServerException) as raised:
        describe(Client(ens_images.config("ci-job-2", "s3cret-2")))
    assert raised.value.code == "InternalError"
    assert describe(Client(ens_images.config())).total_count > 0
    assert ens_images.control.clear_faults(account_id=other["AccountId"]) == 1


def test_reset_of_an_account_removes_its_images_and_unlists_its_shares(ens_images):
    control = ens_images.control
    owner = Client(ens_images.config())
    public = describe(owner).total_count
    job = control.create_account(account_id="1234567890123456")
    assert job["AccountId"] == "1234567890123456"
    control.add_instance(job["AccountId"], NODE, InstanceId="i-ci-web")
    client = Client(ens_images.config(job["AccessKeyId"], job["AccessKeySecret"]))
    image = client.create_image(models.CreateImageRequest(image_name="web-1", instance_id="i-ci-web")).body.image_id
    client.modify_image_share_permission(models.ModifyImageSharePermissionRequest(
        image_id=image, add_accounts=ens_images.account_id))
    assert describe(owner).total_count == public + 1
    assert describe(client).total_count == public + 1

    answer = control.reset(job["AccountId"])
    assert answer["ImagesRemoved"] == 1
    assert describe(client).total_count == public  # the account's key still works
    assert describe(owner).total_count == public   # the share is gone from the owner's listing
    assert [i.image_id for i in describe(owner, page_number="2", page_size="10").images.image] == \
        [i.image_id for i in describe(owner, page_size="50").images.image][10:20]


def test_reset_everything_keeps_only_the_owner(ens_images):
    control = ens_images.control
    control.create_account(access_key_id="temp-key", access_key_secret="temp-secret")
    control.add_fault("DeleteImage", latency_ms=1)
    answer = control.reset()
    assert answer["AccountsRemoved"] == 1 and answer["FaultsRemoved"] == 1
    assert answer["OwnerAccountId"] == ens_images.account_id
    assert [a["AccountId"] for a in control.accounts()] == [ens_images.account_id]
    with pytest.raises(tea_exceptions.ClientException) as raised:
        describe(Client(ens_images.config("temp-key", "temp-secret")))
    assert raised.value.code == "InvalidAccessKeyId.NotFound"


def raw(url, method="GET", token=None, data=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_without_the_token_nothing(ens_images):
    url = ens_images.control.url
    for path, method in [("/accounts", "GET"), ("/reset", "POST"), ("/journal", "GET"),
                         ("/faults", "POST"), ("/no/such/route", "GET")]:
        for token in (None, "wrong-token"):
            status, answer = raw(url + path, method, token)
            assert (status, answer["Code"]) == (401, "Unauthorized"), (path, token)
    assert len(ens_images.control.accounts()) == 1  # nothing was reset


def test_bad_input_gets_a_clear_json_error(ens_images):
    control = ens_images.control
    cases = [
        lambda: control.request("POST", "/faults", {"Action": "DescribeImages"}),
        lambda: control.add_fault("DescribeImages", error_code="X", http_status=200),
        lambda: control.request("POST", "/accounts", {"AccountId": "not-an-id"}),
        lambda: control.request("POST", "/accounts", {"Bogus": 1}),
        lambda: control.journal(since="yesterday"),
        lambda: control.journal(limit=0),
        lambda: control.add_instance("1234567890123456", NODE, Platform="bad platform!"),
        lambda: control.remove_fault("x"),
    ]
    for case in cases:
        with pytest.raises(ControlError, match="InvalidInput") as raised:
            case()
        assert raised.value.status == 400 and raised.value.code == "InvalidInput", raised.value
        assert raised.value.message
    with pytest.raises(ControlError) as raised:
        control.create_access_key("9999999999999999")
    assert raised.value.status == 404
    status, answer = raw(control.url + "/faults", "POST", control._token, b"{not json")
    assert status == 400 and "request body" in answer["Message"]


def test_ephemeral_leaves_nothing_behind(tmp_path, monkeypatch):
    binary = find_binary()
    monkeypatch.chdir(tmp_path)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    before = set(os.listdir(shm)) if shm else set()
    with EnsImagesServer(binary) as server:
        created = set(os.listdir(shm)) - before if shm else set()
        assert describe(Client(server.config())).total_count > 0
        assert server.ready_seconds < 5
    assert os.listdir(tmp_path) == []  # no ens-data, no master.key, no credentials file
    if shm:
        assert created and not (set(os.listdir(shm)) & created), "the private store is removed at exit"


def test_the_readme_shows_the_example_test_verbatim():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "examples", "test_example.py"), encoding="utf-8") as example:
        text = example.read()
    with open(os.path.join(here, "..", "..", "README.md"), encoding="utf-8") as readme:
        assert "```python\n" + text + "```" in readme.read()
