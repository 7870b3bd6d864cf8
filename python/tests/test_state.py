"""State documents, scenes set up in any status, named snapshots and `--seed`, checked through
the official Tea SDK against the real binary."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from alibabacloud_ens20171110 import models
from alibabacloud_ens20171110.client import Client
from alibabacloud_tea_openapi import exceptions as tea_exceptions

from ens_images_testing import ControlError, EnsImagesServer

NODE = "cn-dalian-unicom"
TEAM = "1234567890123456"
PARTNER = "2234567890123456"


def self_images(client: Client) -> dict:
    """ImageId -> Status of every custom image the caller sees (own and shared in)."""
    body = client.describe_self_images(models.DescribeSelfImagesRequest(page_size="50")).body
    return {image.image_id: image.status for image in body.images.image}


def unshare_and_delete(client: Client, image_id: str, account_id: str) -> None:
    client.modify_image_share_permission(models.ModifyImageSharePermissionRequest(
        image_id=image_id, remove_accounts=account_id))
    client.delete_image(models.DeleteImageRequest(image_id=image_id))


def scene(control) -> dict:
    """Two accounts, an image shared from one to the other, and one still packing (the build
    clock frozen, so that it stays so; the fixture's reset lets it run again)."""
    control.freeze_builds()
    control.create_account(account_id=TEAM, access_key_id="team-key", access_key_secret="team-s3cret")
    control.create_account(account_id=PARTNER, access_key_id="partner-key", access_key_secret="partner-s3cret")
    shared = control.add_image(TEAM, "web-base", [NODE], ImageId="m-webbase0000000000000000001",
                               SharedWith=[{"AccountId": PARTNER}])
    packing = control.add_image(TEAM, "web-next", [NODE], ImageId="m-webnext0000000000000000001",
                                Status="Packing")
    control.add_instance(TEAM, NODE, InstanceId="i-web")
    return {"shared": shared["ImageId"], "packing": packing["ImageId"]}


def test_images_in_any_status_show_through_the_sdk(ens_images):
    ids = scene(ens_images.control)
    failed = ens_images.control.add_image(TEAM, "broken", [NODE], Status="Pack_failed")
    team = Client(ens_images.config("team-key", "team-s3cret"))
    assert self_images(team) == {ids["shared"]: "Available", ids["packing"]: "Packing",
                                 failed["ImageId"]: "Pack_failed"}
    partner = Client(ens_images.config("partner-key", "partner-s3cret"))
    assert self_images(partner) == {ids["shared"]: "Available"}
    with pytest.raises(ControlError) as refused:
        ens_images.control.add_image(TEAM, "nowhere", ["cn-nowhere-1"])
    assert refused.value.status == 404 and "cn-nowhere-1" in refused.value.message
    with pytest.raises(ControlError) as refused:
        ens_images.control.add_image(TEAM, "x", [NODE])
    assert refused.value.status == 400 and "ImageName" in refused.value.message
    with pytest.raises(ControlError) as refused:
        ens_images.control.add_image(TEAM, "shared-early", [NODE], Status="Creating",
                                     SharedWith=[{"AccountId": PARTNER}])
    assert refused.value.status == 400


def test_an_export_imports_back_to_the_same_state(ens_images):
    ids = scene(ens_images.control)
    ens_images.control.create_user(TEAM, "dev")
    ens_images.control.create_access_key(TEAM, user_name="dev", access_key_id="dev-key",
                                         access_key_secret="dev-s3cret")
    exported = ens_images.control.export_state()
    assert exported["Format"] == "ens-images/state/1"
    team = next(account for account in exported["Accounts"] if account["AccountId"] == TEAM)
    assert [key["AccessKeySecret"] for key in team["AccessKeys"]] == ["team-s3cret", "dev-s3cret"]
    assert [image["ImageId"] for image in team["Images"]] == [ids["shared"], ids["packing"]]
    assert team["Images"][0]["SharedWith"][0]["AccountId"] == PARTNER

    ens_images.control.reset()  # which lets the build clock run again
    ens_images.control.freeze_builds()
    assert [a["AccountId"] for a in ens_images.control.export_state()["Accounts"]] == [ens_images.account_id]
    answer = ens_images.control.import_state(exported)
    assert answer["Images"] == 2
    assert ens_images.control.export_state() == exported
    # Keys, shares and statuses work again through the official SDK.
    assert self_images(Client(ens_images.config("partner-key", "partner-s3cret"))) == {ids["shared"]: "Available"}
    assert self_images(Client(ens_images.config("team-key", "team-s3cret")))[ids["packing"]] == "Packing"


def test_a_refused_import_changes_nothing(ens_images):
    scene(ens_images.control)
    before = ens_images.control.export_state()
    broken = json.loads(json.dumps(before))
    broken["Accounts"][-1]["Images"] = [{"ImageName": "elsewhere", "EnsRegionIds": ["cn-nowhere-1"]}]
    with pytest.raises(ControlError) as refused:
        ens_images.control.import_state(broken)
    assert refused.value.status == 404
    with pytest.raises(ControlError) as refused:
        ens_images.control.import_state({**before, "Format": "ens-images/state/0"})
    assert refused.value.status == 400 and "Format" in refused.value.message
    with pytest.raises(ControlError) as refused:
        ens_images.control.import_state({**before, "Extra": 1})
    assert refused.value.status == 400 and "Extra" in refused.value.message
    assert ens_images.control.export_state() == before


def test_a_snapshot_rolls_back_what_a_test_did(ens_images):
    ids = scene(ens_images.control)
    taken = ens_images.control.take_snapshot("scene")
    assert taken["Images"] == 2 and taken["AccountId"] is None
    team = Client(ens_images.config("team-key", "team-s3cret"))
    unshare_and_delete(team, ids["shared"], PARTNER)
    ens_images.control.create_account(account_id="3234567890123456")
    assert ids["shared"] not in self_images(team)

    restored = ens_images.control.restore_snapshot("scene")
    assert restored["Name"] == "scene"
    assert self_images(team) == {ids["shared"]: "Available", ids["packing"]: "Packing"}
    partner = Client(ens_images.config("partner-key", "partner-s3cret"))
    assert self_images(partner) == {ids["shared"]: "Available"}
    assert "3234567890123456" not in [a["AccountId"] for a in ens_images.control.accounts()]
    # A snapshot outlives resets, so a suite takes it once and restores it before each test.
    ens_images.control.reset()
    ens_images.control.restore_snapshot("scene")
    assert self_images(team)[ids["shared"]] == "Available"
    assert [s["Name"] for s in ens_images.control.snapshots()] == ["scene"]
    ens_images.control.delete_snapshot("scene")
    with pytest.raises(ControlError) as missing:
        ens_images.control.restore_snapshot("scene")
    assert missing.value.status == 404


def test_an_account_snapshot_leaves_other_accounts_alone(ens_images):
    ids = scene(ens_images.control)
    ens_images.control.take_snapshot("team-only", account_id=TEAM)
    team = Client(ens_images.config("team-key", "team-s3cret"))
    partner = Client(ens_images.config("partner-key", "partner-s3cret"))
    unshare_and_delete(team, ids["shared"], PARTNER)
    partner_image = ens_images.control.add_image(PARTNER, "partner-own", [NODE])
    assert self_images(partner) == {partner_image["ImageId"]: "Available"}

    ens_images.control.restore_snapshot("team-only")
    assert set(self_images(team)) == {ids["shared"], ids["packing"]}
    # The partner keeps what it made since, and sees the team's share again.
    assert self_images(partner) == {ids["shared"]: "Available", partner_image["ImageId"]: "Available"}
    with pytest.raises(ControlError) as refused:
        ens_images.control.take_snapshot("bad name!")
    assert refused.value.status == 400


def test_seed_loads_a_state_document_at_start(ens_images):
    scene(ens_images.control)
    document = ens_images.control.export_state()
    with tempfile.NamedTemporaryFile("w", suffix=".json") as seed:
        json.dump(document, seed)
        seed.flush()
        with EnsImagesServer(extra_args=["--seed", seed.name]) as seeded:
            team = Client(seeded.config("team-key", "team-s3cret"))
            assert set(self_images(team)) == {"m-webbase0000000000000000001", "m-webnext0000000000000000001"}
            # Its own owner key was made at start and still works beside the seeded accounts.
            assert Client(seeded.config()).describe_images(
                models.DescribeImagesRequest(ens_region_id=NODE)).body.total_count > 0
    with tempfile.NamedTemporaryFile("w", suffix=".json") as seed:
        seed.write('{"Format": "ens-images/state/1", "Accounts": [{"AccountId": "not-an-account"}]}')
        seed.flush()
        with pytest.raises(Exception) as refused:
            EnsImagesServer(extra_args=["--seed", seed.name], startup_timeout=10).start()
        assert "AccountId" in str(refused.value)
    with pytest.raises(tea_exceptions.ClientException):
        # The seeded keys belong to that server only.
        Client(ens_images.config("nobody", "nothing")).describe_images(
            models.DescribeImagesRequest(ens_region_id=NODE))


def test_a_reset_goes_back_to_the_first_start_in_one_copy(ens_images):
    scene(ens_images.control)
    answer = ens_images.control.reset()
    assert answer["FromFirstStartCopy"] is True
    assert answer["ImagesRemoved"] == 2 and answer["AccountsRemoved"] == 2
    assert [a["AccountId"] for a in ens_images.control.accounts()] == [ens_images.account_id]
    # A second owner key is something a reset keeps, which the first start did not have:
    # from then on the reset deletes instead, and the key stays.
    extra = ens_images.control.create_access_key(ens_images.account_id)
    scene(ens_images.control)
    answer = ens_images.control.reset()
    assert answer["FromFirstStartCopy"] is False
    assert answer["ImagesRemoved"] == 2 and answer["AccountsRemoved"] == 2
    owner = Client(ens_images.config(extra["AccessKeyId"], extra["AccessKeySecret"]))
    assert owner.describe_images(models.DescribeImagesRequest(ens_region_id=NODE)).body.total_count > 0


def test_the_readme_state_document_loads_as_written(ens_images):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "README.md"), encoding="utf-8") as readme:
        text = readme.read()
    start = text.index('```json\n{\n  "Format": "ens-images/state/1"') + len("```json\n")
    document = json.loads(text[start:text.index("```", start)])
    assert ens_images.control.import_state(document)["Images"] == 1
    dev = ens_images.control.create_access_key(TEAM, user_name="dev")
    # The policy the document attaches lets the RAM user describe, and nothing else.
    client = Client(ens_images.config(dev["AccessKeyId"], dev["AccessKeySecret"]))
    assert self_images(client) == {"m-webbase0000000000000000001": "Available"}
    with pytest.raises(tea_exceptions.ClientException):
        client.delete_image(models.DeleteImageRequest(image_id="m-webbase0000000000000000001"))
    partner = Client(ens_images.config())  # the owner sees only public images
    assert "m-webbase0000000000000000001" not in [
        image.image_id for image in partner.describe_images(
            models.DescribeImagesRequest(ens_region_id=NODE, page_size="50")).body.images.image]


def test_snapshots_are_bounded_in_number(ens_images):
    for name in [s["Name"] for s in ens_images.control.snapshots()]:
        ens_images.control.delete_snapshot(name)
    for index in range(64):
        taken = ens_images.control.take_snapshot(f"bound-{index}")
        assert taken["Bytes"] > 0
    with pytest.raises(ControlError) as refused:
        ens_images.control.take_snapshot("one-too-many")
    assert refused.value.status == 409 and refused.value.code == "LimitExceeded"
    # Taking one again under a kept name replaces it.
    ens_images.control.take_snapshot("bound-0")
    listed = ens_images.control.snapshots()
    assert len(listed) == 64
    for name in [s["Name"] for s in listed]:
        ens_images.control.delete_snapshot(name)


def test_a_state_document_over_two_mib_imports(ens_images):
    description = "d" * 250
    images = [{"ImageName": f"big-{n}", "EnsRegionIds": [NODE], "Description": description}
              for n in range(8000)]
    document = {"Format": "ens-images/state/1",
                "Accounts": [{"AccountId": TEAM, "Images": images}]}
    assert len(json.dumps(document)) > 2 * 1024 * 1024
    assert ens_images.control.import_state(document)["Images"] == 8000
    exported = ens_images.control.export_state(account_id=TEAM)
    assert len(exported["Accounts"][0]["Images"]) == 8000
