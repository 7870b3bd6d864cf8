"""Image builds that take time (--image-build-seconds 0.3): the status walk Creating ->
Packing -> Uploading -> Available (or Pack_failed / Upload_failed), what a building image
allows, and the whole life of an image from CreateImage to DeleteImage, shared on the way."""
from __future__ import annotations

import time

import pytest

from ens_support import (
    BUILDING_STATUSES,
    FAILED_STATUSES,
    World,
    assert_forward,
    all_images,
    check_code_zero,
    check_share_permission_body,
    expect_error,
    self_images,
    wait_status,
)

STEP = 0.25
WALK = ["Creating", "Packing", "Uploading", "Available"]


@pytest.fixture(scope="module")
def slow_world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("ens-slow"), build_seconds=STEP, log_name="slow")
    yield w
    w.stop()


def status_of(api, image_id):
    found = [i for i in self_images(api) if i["ImageId"] == image_id]
    assert len(found) == 1, found
    return found[0]["Status"]


def test_full_lifecycle(slow_world, flavor_name):
    w = slow_world
    owner, friend = w.new_tenant(), w.new_tenant()
    api, friend_api = w.sdk(owner, flavor_name), w.sdk(friend, flavor_name)
    instance = w.instance(owner)
    started = time.monotonic()
    image_id = w.create_image(api, owner, name="Life-cycle", InstanceId=instance)

    # Building: listed by DescribeSelfImages only, and neither deletable nor shareable.
    observed = [status_of(api, image_id)]
    assert observed[0] == "Creating", observed
    assert image_id not in [i["ImageId"] for i in all_images(api)]
    assert api.op("DescribeImages", ImageId=image_id)["Images"]["Image"] == []
    expect_error(api, "DeleteImage", "IncorrectStatus.Image", ImageId=image_id)
    expect_error(api, "ModifyImageSharePermission", "IncorrectStatus.Image", ImageId=image_id,
                 AddAccounts=friend.account_id)
    observed.append(status_of(api, image_id))
    assert observed[-1] in BUILDING_STATUSES, \
        f"the checks above must run while the image builds: {observed}"

    seen = wait_status(api, image_id, ("Available",) + FAILED_STATUSES, timeout=10)
    for status in seen:
        if observed[-1] != status:
            observed.append(status)
    observed = [s for n, s in enumerate(observed) if n == 0 or observed[n - 1] != s]
    assert observed == WALK, f"statuses must go Creating, Packing, Uploading, Available: {observed}"
    elapsed = time.monotonic() - started
    assert elapsed >= 3 * STEP * 0.9, f"three build steps of {STEP}s took only {elapsed:.2f}s"

    # Available: in DescribeImages now.
    assert image_id in [i["ImageId"] for i in all_images(api)]
    check_code_zero(api.op("ModifyImageAttribute", ImageId=image_id, ImageName="Life-renamed"))
    api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=friend.account_id)
    theirs = [i for i in all_images(friend_api) if i["ImageId"] == image_id]
    assert len(theirs) == 1 and theirs[0]["ImageOwnerAlias"] == "others"
    assert theirs[0]["ImageName"] == "Life-renamed"
    assert [i["ImageOwnerAlias"] for i in self_images(friend_api)] == ["others"]

    api.op("ModifyImageSharePermission", ImageId=image_id, RemoveAccounts=friend.account_id)
    assert self_images(friend_api) == []
    assert image_id not in [i["ImageId"] for i in all_images(friend_api)]

    check_code_zero(api.op("DeleteImage", ImageId=image_id))
    assert self_images(api) == []
    assert image_id not in [i["ImageId"] for i in all_images(api)]
    expect_error(api, "DeleteImage", "Error.DeleteImage", message_contains="The image is not exist.",
                 ImageId=image_id)
    expect_error(api, "DescribeImageSharePermission", "InvalidParameter.ImageId", ImageId=image_id)


def test_failed_builds(slow_world):
    w = slow_world
    owner, friend = w.new_tenant(), w.new_tenant()
    api = w.sdk(owner, "tea_v3")
    upload = w.create_image(api, owner, name="Fails-upload",
                            InstanceId=w.instance(owner, fail_build="upload"))
    pack = w.create_image(api, owner, name="Fails-pack",
                          SnapshotId=w.snapshot(owner, fail_build="pack"))
    assert wait_status(api, pack, ("Available",) + FAILED_STATUSES, timeout=10) == \
        ["Creating", "Packing", "Pack_failed"]
    seen = wait_status(api, upload, ("Available",) + FAILED_STATUSES, timeout=10)
    # Polling started late for this one: at least its tail must be observed, in order.
    assert seen[-1] == "Upload_failed", seen
    assert_forward(seen, WALK[:3] + ["Upload_failed"])
    # Failed for good: still failed a few steps later.
    time.sleep(2 * STEP)
    assert [i["Status"] for i in self_images(api)] == ["Upload_failed", "Pack_failed"]
    for image_id in (upload, pack):
        assert image_id not in [i["ImageId"] for i in all_images(api)]
        expect_error(api, "ModifyImageSharePermission", "IncorrectStatus.Image", ImageId=image_id,
                     AddAccounts=friend.account_id)
        check_code_zero(api.op("DeleteImage", ImageId=image_id))
    assert self_images(api) == []


def test_delete_after_image_upload(slow_world):
    w = slow_world
    owner = w.new_tenant()
    api = w.sdk(owner, "core")
    released, kept = w.instance(owner), w.instance(owner)
    first = w.create_image(api, owner, InstanceId=released, DeleteAfterImageUpload="true")
    second = w.create_image(api, owner, InstanceId=kept, DeleteAfterImageUpload="false")
    assert status_of(api, first) in BUILDING_STATUSES
    assert released in [i["InstanceId"] for i in w.admin.instances()], \
        "the instance stays registered while its image is building"
    for image_id in (first, second):
        assert wait_status(api, image_id, ("Available",) + FAILED_STATUSES, timeout=10)[-1] == \
            "Available"
    registered = [i["InstanceId"] for i in w.admin.instances()]
    assert released not in registered, "DeleteAfterImageUpload=true releases the instance"
    assert kept in registered, "DeleteAfterImageUpload=false keeps the instance"
    # The image still names its source instance.
    assert [i.get("InstanceId") for i in self_images(api)] == [released, kept]


def test_share_permission_of_building_image(slow_world):
    """Owner can still read the (empty) share list of a building image."""
    w = slow_world
    owner = w.new_tenant()
    api = w.sdk(owner, "tea_v2")
    image_id = w.create_image(api, owner)
    body = api.op("DescribeImageSharePermission", ImageId=image_id)
    assert check_share_permission_body(body) == [] and body["TotalCount"] == 0
