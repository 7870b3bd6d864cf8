"""The lifecycle clock: builds frozen, stepped on demand, and made to fail per image, checked
through the official Tea SDK against the real binary (started with `--image-build-seconds 0`,
so a running clock makes images `Available` at once)."""

from __future__ import annotations

import time

import pytest
from alibabacloud_ens20171110 import models
from alibabacloud_ens20171110.client import Client

from ens_images_testing import ControlError

NODE = "cn-dalian-unicom"
JOB = "1234567890123456"
OTHER = "2234567890123456"


def self_images(client: Client) -> dict:
    """ImageId -> Status of the caller's custom images, any status (DescribeSelfImages)."""
    body = client.describe_self_images(models.DescribeSelfImagesRequest(page_size="50")).body
    return {image.image_id: image.status for image in body.images.image}


def listed(client: Client, image_id: str) -> bool:
    """Whether DescribeImages lists the image (it lists `Available` images only)."""
    body = client.describe_images(models.DescribeImagesRequest(image_id=image_id)).body
    return [image.image_id for image in body.images.image] == [image_id]


def job(ens_images, account_id: str, **instance) -> Client:
    """A new account with one registered instance, `i-<account>`; a client signed with its key."""
    created = ens_images.control.create_account(account_id=account_id)
    ens_images.control.add_instance(account_id, NODE, InstanceId=f"i-{account_id}", **instance)
    return Client(ens_images.config(created["AccessKeyId"], created["AccessKeySecret"]))


def create_image(client: Client, account_id: str, name: str = "web-1") -> str:
    request = models.CreateImageRequest(image_name=name, instance_id=f"i-{account_id}")
    return client.create_image(request).body.image_id


def test_a_frozen_clock_holds_a_build_until_it_is_stepped(ens_images):
    control = ens_images.control
    assert control.clock() == {"Frozen": False, "BuildStepMs": 0}
    assert control.freeze_builds() == {"Frozen": True, "BuildStepMs": 0}
    client = job(ens_images, JOB)
    image = create_image(client, JOB)

    # Steps take no time here, yet the image waits at Creating: nothing moves by itself.
    time.sleep(0.3)
    assert self_images(client) == {image: "Creating"}
    assert not listed(client, image)

    assert control.step_builds() == [{"ImageId": image, "Status": "Packing"}]
    assert self_images(client) == {image: "Packing"}
    assert control.step_builds(2) == [{"ImageId": image, "Status": "Available"}]
    assert self_images(client) == {image: "Available"}
    assert listed(client, image)
    # Nothing is left to move.
    assert control.step_builds(5) == []

    assert control.unfreeze_builds() == {"Frozen": False, "BuildStepMs": 0}
    # Running again, a new image is Available at once, as before the freeze.
    second = create_image(client, JOB, "web-2")
    assert self_images(client)[second] == "Available"


def test_an_outcome_chosen_per_image_makes_its_build_fail_or_succeed(ens_images):
    control = ens_images.control
    control.freeze_builds()
    client = job(ens_images, JOB, FailBuild="upload")
    doomed = create_image(client, JOB, "doomed")
    rescued = create_image(client, JOB, "rescued")

    # The source says upload; this image fails to pack instead, the other not at all.
    assert control.set_build_outcome(doomed, "pack") == \
        {"ImageId": doomed, "Status": "Creating", "FailAt": "pack"}
    assert control.set_build_outcome(rescued, None)["FailAt"] is None
    assert control.step_builds(3, image_id=doomed) == [{"ImageId": doomed, "Status": "Pack_failed"}]
    assert control.step_builds(3, image_id=rescued) == [{"ImageId": rescued, "Status": "Available"}]
    assert self_images(client) == {doomed: "Pack_failed", rescued: "Available"}

    # Only a build still going has an outcome to choose; an unknown image is NotFound.
    with pytest.raises(ControlError) as refused:
        control.set_build_outcome(doomed, None)
    assert (refused.value.status, refused.value.code) == (400, "InvalidInput")
    with pytest.raises(ControlError) as refused:
        control.set_build_outcome("m-nosuchimage000000000000000", "pack")
    assert (refused.value.status, refused.value.code) == (404, "NotFound")
    with pytest.raises(ControlError) as refused:
        control.set_build_outcome(doomed, "explode")
    assert refused.value.status == 400 and "FailAt" in refused.value.message
    # FailAt must be written out: an empty body clears nothing by accident.
    with pytest.raises(ControlError) as refused:
        control.request("PUT", f"/images/{doomed}/build", {})
    assert refused.value.status == 400 and "FailAt" in refused.value.message


def test_steps_scoped_to_one_account_leave_the_others_builds_alone(ens_images):
    control = ens_images.control
    control.freeze_builds()
    mine, theirs = job(ens_images, JOB), job(ens_images, OTHER)
    my_image, their_image = create_image(mine, JOB), create_image(theirs, OTHER)

    assert control.step_builds(3, account_id=JOB) == [{"ImageId": my_image, "Status": "Available"}]
    assert self_images(theirs) == {their_image: "Creating"}
    # An image of another account than the one named is out of scope.
    assert control.step_builds(account_id=JOB, image_id=their_image) == []
    assert control.step_builds(image_id=their_image) == [{"ImageId": their_image, "Status": "Packing"}]

    # Running again, the held build finishes by itself.
    control.unfreeze_builds()
    deadline = time.monotonic() + 5
    while self_images(theirs)[their_image] != "Available":
        assert time.monotonic() < deadline, "the build did not finish after the clock ran again"
        time.sleep(0.05)


def test_steps_refuse_bad_input_and_a_reset_unfreezes_the_clock(ens_images):
    control = ens_images.control
    for body in ({"Steps": 0}, {"Steps": 101}, {"Step": 1}, {"AccountId": "not an account"}):
        with pytest.raises(ControlError) as refused:
            control.request("POST", "/clock/steps", body)
        assert (refused.value.status, refused.value.code) == (400, "InvalidInput"), body
    with pytest.raises(ControlError) as refused:
        control.step_builds(image_id="m-nosuchimage000000000000000")
    assert refused.value.status == 404
    with pytest.raises(ControlError) as refused:
        control.request("PUT", "/clock", {"Frozen": True, "Speed": 2})
    assert refused.value.status == 400

    control.freeze_builds()
    control.reset()
    assert control.clock()["Frozen"] is False
