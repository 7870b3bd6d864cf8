"""The image family through the three official SDK flavours (Tea V3, Tea V1, core V1):
CreateImage, DescribeSelfImages, DescribeImages (own images), ModifyImageAttribute,
DeleteImage, ModifyImageSharePermission, DescribeImageSharePermission, DescribeImageInfos.

Every success body is checked strictly against the SDK's <Action>ResponseBody model (no
unknown field, declared JSON types, no nulls; ens_support.check_response_model); every error
through the SDK exception (code, HTTP status, request id, Tea: whole envelope).

Each test makes a fresh account on the module's private server (`world`, builds instant), so
what an account lists is exactly what the test made."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from ens_support import (
    CUSTOM_IMAGE_ID_RE,
    FAILED_STATUSES,
    NODE_DALIAN,
    NODE_HANGZHOU,
    all_images,
    check_code_zero,
    check_self_images_body,
    check_share_permission_body,
    expect_error,
    self_images,
    wait_status,
)

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def parse_time(value):
    assert TIME_RE.match(value), value
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def now():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def me(world):
    return world.new_tenant()


@pytest.fixture
def api(world, me, flavor_name):
    return world.sdk(me, flavor_name)


@pytest.fixture(scope="module")
def stranger(world):
    """Another account with its own instance, snapshot and Available image."""
    t = world.new_tenant()
    sdk = world.sdk(t)
    t.instance_id = world.instance(t)
    t.snapshot_id = world.snapshot(t)
    t.image_id = world.create_image(sdk, t, name="Stranger-img", InstanceId=t.instance_id)
    return t


def disks(image_id, *sizes):
    out = [{"Type": "system", "Size": str(sizes[0]), "Format": "qcow2", "imageId": image_id}]
    out += [{"Type": "data", "Size": str(s), "Format": "qcow2", "imageId": image_id}
            for s in sizes[1:]]
    return {"DiskDeviceMapping": out}


def only(images, image_id):
    found = [i for i in images if i["ImageId"] == image_id]
    assert len(found) == 1, f"{image_id} must be listed exactly once, got {found!r}"
    return found[0]


# ---------------------------------------------------------------------------- CreateImage

def test_create_image_from_instance(world, me, api):
    iid = world.instance(me, NODE_HANGZHOU, platform="ubuntu", os_version="22.04",
                         compute_type="arm_vm", system_disk=50, data_disk=[100, 200])
    before = now()
    body = api.op("CreateImage", ImageName="Web.Server:v1_2-a", InstanceId=iid)
    after = now()
    check_code_zero(body)
    assert set(body) == {"RequestId", "Code", "ImageId"}, body
    image_id = body["ImageId"]
    assert CUSTOM_IMAGE_ID_RE.match(image_id), image_id

    images = self_images(api)
    assert len(images) == 1, images
    img = dict(images[0])
    created = parse_time(img.pop("CreationTime"))
    assert before - dt.timedelta(seconds=2) <= created <= after + dt.timedelta(seconds=2), created
    assert img == {
        "ImageId": image_id, "ImageName": "Web.Server:v1_2-a", "ImageOwnerAlias": "self",
        "Status": "Available", "Architecture": "x86_64", "Platform": "ubuntu",
        "OsVersion": "22.04", "ComputeType": "arm_vm", "ImageSize": "50",
        "ImageStorageSize": "50", "InstanceId": iid, "RegionId": NODE_HANGZHOU,
        "DiskDeviceMappings": disks(image_id, 50),
    }, "WithDataDisks omitted: system disk only"


def test_created_image_in_describe_images(world, me, api):
    """Available own images follow the public ones in DescribeImages, ImageOwnerAlias self,
    with the same data as DescribeSelfImages."""
    iid = world.instance(me, NODE_HANGZHOU, system_disk=30)
    first = world.create_image(api, me, name="Own-first", InstanceId=iid)
    second = world.create_image(api, me, name="Own-second", InstanceId=iid)
    listed = all_images(api, page_size=4)
    assert [i["ImageId"] for i in listed] == world.public_ids + [first, second]
    assert all(i["ImageOwnerAlias"] == "system" for i in listed[:len(world.public_ids)])
    by_self = {i["ImageId"]: i for i in self_images(api)}
    for img in listed[-2:]:
        mine = by_self[img["ImageId"]]
        assert img["ImageOwnerAlias"] == "self", img
        for key in ("ImageName", "Architecture", "Platform", "ImageSize", "CreationTime",
                    "RegionId", "DiskDeviceMappings"):
            assert img[key] == mine[key], (key, img, mine)
        assert "SnapshotId" not in img, img
    # The ImageId filter of DescribeImages finds an own image.
    body = api.op("DescribeImages", ImageId=second)
    assert [i["ImageId"] for i in body["Images"]["Image"]] == [second]
    assert body["TotalCount"] == 1


def test_describe_images_node_filter_covers_own_images(world, me, api):
    iid = world.instance(me, NODE_HANGZHOU)
    image_id = world.create_image(api, me, InstanceId=iid)
    on_node = all_images(api, EnsRegionId=NODE_HANGZHOU)
    assert image_id in [i["ImageId"] for i in on_node]
    assert only(on_node, image_id)["RegionId"] == NODE_HANGZHOU
    elsewhere = all_images(api, EnsRegionId=NODE_DALIAN)
    assert image_id not in [i["ImageId"] for i in elsewhere]


@pytest.mark.parametrize("with_data", [True, False, "true", "false"], ids=str)
def test_create_image_with_data_disks(world, me, api, with_data):
    iid = world.instance(me, system_disk=40, data_disk=[100, 200])
    image_id = world.create_image(api, me, InstanceId=iid, WithDataDisks=with_data)
    img = only(self_images(api), image_id)
    if with_data in (True, "true"):
        assert img["DiskDeviceMappings"] == disks(image_id, 40, 100, 200)
        assert (img["ImageSize"], img["ImageStorageSize"]) == ("40", "340")
    else:
        assert img["DiskDeviceMappings"] == disks(image_id, 40)
        assert (img["ImageSize"], img["ImageStorageSize"]) == ("40", "40")


def test_create_image_from_snapshot(world, me, api):
    sid = world.snapshot(me, NODE_HANGZHOU, size=60, platform="debian", os_version="11",
                         compute_type=None)
    from_snap = [world.create_image(api, me, name=f"Snap-{n}", SnapshotId=sid) for n in range(2)]
    from_instance = world.create_image(api, me, name="Inst-0")
    images = self_images(api)
    assert [i["ImageId"] for i in images] == from_snap + [from_instance], "creation order"
    img = dict(only(images, from_snap[0]))
    img.pop("CreationTime")
    assert img == {
        "ImageId": from_snap[0], "ImageName": "Snap-0", "ImageOwnerAlias": "self",
        "Status": "Available", "Architecture": "x86_64", "Platform": "debian",
        "OsVersion": "11", "ComputeType": "ens_vm", "ImageSize": "60",
        "ImageStorageSize": "60", "SnapshotId": sid, "RegionId": NODE_HANGZHOU,
        "DiskDeviceMappings": disks(from_snap[0], 60),
    }
    # SnapshotId filters are exact.
    assert [i["ImageId"] for i in self_images(api, SnapshotId=sid)] == from_snap
    assert self_images(api, SnapshotId=sid[:-2]) == []
    listed = api.op("DescribeImages", SnapshotId=sid, PageSize="50")
    assert [i["ImageId"] for i in listed["Images"]["Image"]] == from_snap
    assert all(i["SnapshotId"] == sid for i in listed["Images"]["Image"])


def test_create_image_optional_params(world, me, api):
    """TargetOSSRegionId is accepted; DeleteAfterImageUpload=false keeps the instance."""
    iid = world.instance(me)
    image_id = world.create_image(api, me, InstanceId=iid, TargetOSSRegionId="cn-beijing",
                                  DeleteAfterImageUpload="false")
    assert only(self_images(api), image_id)["Status"] == "Available"
    assert iid in [i["InstanceId"] for i in world.admin.instances()]


def test_delete_after_image_upload_removes_instance(world, me, api):
    iid = world.instance(me)
    image_id = world.create_image(api, me, InstanceId=iid, DeleteAfterImageUpload="true")
    img = only(self_images(api), image_id)
    assert img["Status"] == "Available" and img["InstanceId"] == iid
    assert iid not in [i["InstanceId"] for i in world.admin.instances()], \
        "DeleteAfterImageUpload=true: the instance leaves the registry once the image is Available"
    # ...and the image is deletable (no instance runs it).
    check_code_zero(api.op("DeleteImage", ImageId=image_id))


@pytest.mark.parametrize("name", [
    "ab",
    "A" + "b" * 127,
    "Img.v1:base_2-x",
    "httpd-image",
    "acs-not-a-prefix",
    "aliyu_n",
], ids=["2-chars", "128-chars", "all-punctuation", "http-word", "acs-dash", "aliyu_n"])
def test_create_image_valid_names(world, me, api, name):
    image_id = world.create_image(api, me, name=name)
    assert only(self_images(api), image_id)["ImageName"] == name


BAD_NAMES = {
    "1-char": "a",
    "129-chars": "A" + "b" * 128,
    "starts-digit": "9lives",
    "starts-underscore": "_img",
    "starts-dash": "-img",
    "acs-prefix": "acs:img",
    "aliyun-prefix": "aliyun-img",
    "http-url": "http://img",
    "https-url": "https://img",
    "space": "bad name",
    "slash": "bad/name",
    "at-sign": "bad@name",
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_create_image_bad_name(world, me, api, case):
    expect_error(api, "CreateImage", "InvalidParameter.ImageName", ImageName=BAD_NAMES[case],
                 InstanceId=world.instance(me))
    assert self_images(api) == [], "a refused CreateImage must not create anything"


CREATE_ERRORS = {
    # case: (code, params builder(world, me, stranger) -> dict)
    "no-name": ("MissingParameter", lambda w, me, s: {"InstanceId": w.instance(me)}),
    "no-source": ("MissingParameter", lambda w, me, s: {"ImageName": "NoSource"}),
    "both-sources": ("InvalidParameter.SnapshotId",
                     lambda w, me, s: {"ImageName": "Both", "InstanceId": w.instance(me),
                                       "SnapshotId": w.snapshot(me)}),
    "unknown-instance": ("InvalidParameter.InstanceId",
                         lambda w, me, s: {"ImageName": "Ghost",
                                           "InstanceId": "i-0000000000000000000000ghost"}),
    "others-instance": ("InvalidParameter.InstanceId",
                        lambda w, me, s: {"ImageName": "Theft", "InstanceId": s.instance_id}),
    "unknown-snapshot": ("InvalidParameter.SnapshotId",
                         lambda w, me, s: {"ImageName": "Ghost",
                                           "SnapshotId": "sp-000000000000000000000ghost"}),
    "others-snapshot": ("InvalidParameter.SnapshotId",
                        lambda w, me, s: {"ImageName": "Theft", "SnapshotId": s.snapshot_id}),
    "with-data-disks-not-bool": ("InvalidParameter.WithDataDisks",
                                 lambda w, me, s: {"ImageName": "Disks",
                                                   "InstanceId": w.instance(me),
                                                   "WithDataDisks": "maybe"}),
}


@pytest.mark.parametrize("case", sorted(CREATE_ERRORS))
def test_create_image_errors(world, me, api, stranger, case):
    code, build = CREATE_ERRORS[case]
    expect_error(api, "CreateImage", code, **build(world, me, stranger))
    assert self_images(api) == [], "a refused CreateImage must not create anything"
    # The stranger's resources are untouched and its image still its own.
    assert only(self_images(world.sdk(stranger)), stranger.image_id)["ImageOwnerAlias"] == "self"


# ---------------------------------------------------------------------- DescribeSelfImages

def test_describe_self_images_defaults_and_pages(world, me, api):
    iid = world.instance(me)
    ids = [world.create_image(api, me, name=f"Page-{n:02d}", InstanceId=iid) for n in range(12)]
    body = api.op("DescribeSelfImages")
    images = check_self_images_body(body)
    assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == ("1", "10", "12")
    assert [i["ImageId"] for i in images] == ids[:10], "creation order"
    body = api.op("DescribeSelfImages", PageNumber="2")
    assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == ("2", "10", "12")
    assert [i["ImageId"] for i in check_self_images_body(body)] == ids[10:]
    walked = []
    for page in range(1, 6):
        body = api.op("DescribeSelfImages", PageNumber=str(page), PageSize="5")
        assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == \
            (str(page), "5", "12")
        walked += [i["ImageId"] for i in check_self_images_body(body)]
    assert walked == ids, "pages of 5 hold every image once, in order; page 4 and 5 are empty"
    body = api.op("DescribeSelfImages", PageSize="50")
    assert body["PageSize"] == "50" and len(check_self_images_body(body)) == 12


def test_describe_self_images_page_size_limit(world, api):
    expect_error(api, "DescribeSelfImages", "InvalidParameter.PageSize", PageSize="51")


def test_describe_self_images_filters(world, me, api):
    iid = world.instance(me)
    names = ["Web-Alpha-1", "ALPHA-db", "beta.cache", "Gamma:alphabet", "delta_x"]
    ids = [world.create_image(api, me, name=n, InstanceId=iid) for n in names]

    def listed(**filters):
        return [i["ImageId"] for i in self_images(api, **filters)]

    # ImageName: case-insensitive substring.
    assert listed(ImageName="alpha") == [ids[0], ids[1], ids[3]]
    assert listed(ImageName="ALPHA-") == [ids[0], ids[1]]
    assert listed(ImageName="beta.cache") == [ids[2]]
    assert listed(ImageName="zzz") == []
    # ImageId: substring.
    target = ids[2]
    assert listed(ImageId=target) == [target]
    assert listed(ImageId=target[6:18]) == [target]
    assert listed(ImageId="m-") == ids
    assert listed(ImageId=target.upper()) in ([], [target])  # case: either way, no crash
    # Filters combine.
    assert listed(ImageName="alpha", ImageId=ids[3][4:20]) == [ids[3]]
    body = api.op("DescribeSelfImages", ImageName="alpha", PageSize="2")
    assert body["TotalCount"] == "3" and len(check_self_images_body(body)) == 2


# -------------------------------------------------------------------- ModifyImageAttribute

def test_modify_image_attribute(world, me, api):
    image_id = world.create_image(api, me, name="Before-rename")
    body = api.op("ModifyImageAttribute", ImageId=image_id, ImageName="After:rename_2.0")
    check_code_zero(body)
    assert set(body) == {"RequestId", "Code"}, body
    assert only(self_images(api), image_id)["ImageName"] == "After:rename_2.0"
    assert only(all_images(api), image_id)["ImageName"] == "After:rename_2.0"
    assert [i["ImageId"] for i in self_images(api, ImageName="before")] == []
    # Same name again is fine.
    check_code_zero(api.op("ModifyImageAttribute", ImageId=image_id, ImageName="After:rename_2.0"))


MODIFY_ERRORS = {
    "no-image-id": ("MissingParameter", lambda w, own, s: {"ImageName": "NewName"}),
    "no-name": ("MissingParameter", lambda w, own, s: {"ImageId": own}),
    "bad-name": ("InvalidParameter.ImageName", lambda w, own, s: {"ImageId": own,
                                                                  "ImageName": "9-bad"}),
    "aliyun-name": ("InvalidParameter.ImageName", lambda w, own, s: {"ImageId": own,
                                                                     "ImageName": "aliyun_x"}),
    "unknown-image": ("InvalidParameter.ImageId",
                      lambda w, own, s: {"ImageId": "m-0000000000000000000000000",
                                         "ImageName": "NewName"}),
    "others-image": ("InvalidParameter.ImageId", lambda w, own, s: {"ImageId": s.image_id,
                                                                    "ImageName": "Stolen"}),
    "public-image": ("InvalidParameter.ImageId", lambda w, own, s: {"ImageId": w.public_ids[0],
                                                                    "ImageName": "Hijack"}),
}


@pytest.mark.parametrize("case", sorted(MODIFY_ERRORS))
def test_modify_image_attribute_errors(world, me, api, stranger, case):
    own = world.create_image(api, me, name="Keep-name")
    code, build = MODIFY_ERRORS[case]
    expect_error(api, "ModifyImageAttribute", code, **build(world, own, stranger))
    assert only(self_images(api), own)["ImageName"] == "Keep-name"
    assert only(self_images(world.sdk(stranger)), stranger.image_id)["ImageName"] == "Stranger-img"
    public = only(all_images(api), world.public_ids[0])
    assert public["ImageName"] == world.catalog["Images"][0]["ImageName"]


# ----------------------------------------------------------------------------- DeleteImage

def test_delete_image(world, me, api):
    keep = world.create_image(api, me, name="Keep")
    gone = world.create_image(api, me, name="Gone")
    body = api.op("DeleteImage", ImageId=gone)
    check_code_zero(body)
    assert set(body) == {"RequestId", "Code"}, body
    assert [i["ImageId"] for i in self_images(api)] == [keep]
    assert gone not in [i["ImageId"] for i in all_images(api)]
    assert api.op("DescribeImages", ImageId=gone)["Images"]["Image"] == []
    expect_error(api, "DeleteImage", "Error.DeleteImage", message_contains="The image is not exist.",
                 ImageId=gone)
    expect_error(api, "DescribeImageSharePermission", "InvalidParameter.ImageId", ImageId=gone)
    expect_error(api, "ModifyImageAttribute", "InvalidParameter.ImageId", ImageId=gone,
                 ImageName="Revived")


def test_delete_failed_image(world, me, api):
    for step, status in (("pack", "Pack_failed"), ("upload", "Upload_failed")):
        image_id = world.create_image(api, me, InstanceId=world.instance(me, fail_build=step))
        # A failing build still walks its steps (instantly here) before it fails.
        seen = wait_status(api, image_id, FAILED_STATUSES + ("Available",), timeout=10)
        assert seen[-1] == status, f"--fail-build {step} must end in {status}, saw {seen}"
        assert image_id not in [i["ImageId"] for i in all_images(api)], \
            "a failed image is not Available, so DescribeImages must not list it"
        expect_error(api, "ModifyImageSharePermission", "IncorrectStatus.Image", ImageId=image_id,
                     AddAccounts=world.root.account_id)
        check_code_zero(api.op("DeleteImage", ImageId=image_id))
        assert image_id not in [i["ImageId"] for i in self_images(api)]


def test_delete_image_in_use_by_instance(world, me, api):
    image_id = world.create_image(api, me, name="Running")
    world.instance(me, image=image_id)
    expect_error(api, "DeleteImage", "Forbidden.DelerrorteImage", ImageId=image_id)
    assert only(self_images(api), image_id)["Status"] == "Available"


def test_delete_shared_image_refused_until_revoked(world, me, api, stranger):
    image_id = world.create_image(api, me, name="Shared")
    api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=stranger.account_id)
    expect_error(api, "DeleteImage", "Error.DeleteImage", message_contains="revoke",
                 ImageId=image_id)
    assert image_id in [i["ImageId"] for i in self_images(world.sdk(stranger))]
    api.op("ModifyImageSharePermission", ImageId=image_id, RemoveAccounts=stranger.account_id)
    check_code_zero(api.op("DeleteImage", ImageId=image_id))
    assert image_id not in [i["ImageId"] for i in self_images(world.sdk(stranger))]


DELETE_ERRORS = {
    "no-image-id": ("MissingParameter", lambda w, s: {}),
    "unknown-image": ("Error.DeleteImage", lambda w, s: {"ImageId": "m-0000000000000000000000000"}),
    "others-image": ("Error.DeleteImage", lambda w, s: {"ImageId": s.image_id}),
    "public-image": ("InvalidParameter.ImageId", lambda w, s: {"ImageId": w.public_ids[1]}),
}


@pytest.mark.parametrize("case", sorted(DELETE_ERRORS))
def test_delete_image_errors(world, api, stranger, case):
    code, build = DELETE_ERRORS[case]
    message = "The image is not exist." if code == "Error.DeleteImage" else None
    expect_error(api, "DeleteImage", code, message_contains=message, **build(world, stranger))
    assert only(self_images(world.sdk(stranger)), stranger.image_id)["Status"] == "Available"
    assert world.public_ids[1] in [i["ImageId"] for i in all_images(api)]


# -------------------------------------------- ModifyImageSharePermission / DescribeImageSharePermission

@pytest.fixture(scope="module")
def friends(world):
    """Eleven more accounts to share with."""
    return [world.new_tenant() for _ in range(11)]


def share_list(api, image_id, **params):
    body = api.op("DescribeImageSharePermission", ImageId=image_id, **params)
    uids = check_share_permission_body(body)
    assert body["ImageId"] == image_id
    return body, uids


def test_modify_and_describe_share_permission(world, me, api, friends):
    a, b, c = (f.account_id for f in friends[:3])
    image_id = world.create_image(api, me, name="To-share")
    body = api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=f"{a},{b}")
    assert set(body) == {"RequestId"}, f"ModifyImageSharePermission returns RequestId only: {body!r}"
    listing, uids = share_list(api, image_id)
    assert (listing["PageNumber"], listing["PageSize"], listing["TotalCount"]) == (1, 10, 2)
    assert sorted(uids) == sorted([a, b])
    # Add one more and remove one in the same call.
    api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=c, RemoveAccounts=a)
    _, uids = share_list(api, image_id)
    assert sorted(uids) == sorted([b, c])
    # Removing an account without a share is a no-op.
    api.op("ModifyImageSharePermission", ImageId=image_id, RemoveAccounts=a)
    listing, uids = share_list(api, image_id)
    assert sorted(uids) == sorted([b, c]) and listing["TotalCount"] == 2
    # AliyunId filter (int64 in the Tea model).
    aliyun_id = int(b) if api.name != "core" else b
    listing, uids = share_list(api, image_id, AliyunId=aliyun_id)
    assert uids == [b] and listing["TotalCount"] == 1
    listing, uids = share_list(api, image_id, AliyunId=int(a) if api.name != "core" else a)
    assert uids == [] and listing["TotalCount"] == 0
    # Pagination.
    listing, first = share_list(api, image_id, PageNumber="1", PageSize="1")
    assert (listing["PageNumber"], listing["PageSize"], listing["TotalCount"]) == (1, 1, 2)
    _, second = share_list(api, image_id, PageNumber="2", PageSize="1")
    _, third = share_list(api, image_id, PageNumber="3", PageSize="1")
    assert len(first) == 1 and len(second) == 1 and third == []
    assert sorted(first + second) == sorted([b, c])
    # The share targets see it; the owner still sees it as self.
    for friend, visible in ((friends[0], False), (friends[1], True), (friends[2], True),
                            (friends[3], False)):
        theirs = [i for i in self_images(world.sdk(friend)) if i["ImageId"] == image_id]
        assert len(theirs) == (1 if visible else 0), (friend.account_id, theirs)
        if visible:
            assert theirs[0]["ImageOwnerAlias"] == "others"
    assert only(self_images(api), image_id)["ImageOwnerAlias"] == "self"


def test_share_limits(world, me, api, hundred):
    """Up to 10 accounts per call; at most 100 shares in total; PageSize up to 100."""
    image_id = world.create_image(api, me, name="Popular")
    ids = [t.account_id for t in hundred]
    for n in range(0, 100, 10):
        api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=",".join(ids[n:n + 10]))
    listing, uids = share_list(api, image_id, PageSize="100")
    assert listing["TotalCount"] == 100 and listing["PageSize"] == 100
    assert sorted(uids) == sorted(ids[:100])
    _, empty = share_list(api, image_id, PageSize="100", PageNumber="2")
    assert empty == []
    walked = []
    for page in range(1, 5):
        _, part = share_list(api, image_id, PageSize="30", PageNumber=str(page))
        walked += part
    assert sorted(walked) == sorted(ids[:100]), "pages of 30 hold every share once"
    expect_error(api, "ModifyImageSharePermission", "InvalidParameter.AddAccounts",
                 ImageId=image_id, AddAccounts=ids[100])
    expect_error(api, "DescribeImageSharePermission", "InvalidParameter.PageSize",
                 ImageId=image_id, PageSize="101")
    listing, _ = share_list(api, image_id, PageSize="1")
    assert listing["TotalCount"] == 100
    # Make room: removing one lets the 101st in.
    api.op("ModifyImageSharePermission", ImageId=image_id, RemoveAccounts=ids[0])
    api.op("ModifyImageSharePermission", ImageId=image_id, AddAccounts=ids[100])
    _, uids = share_list(api, image_id, PageSize="100")
    assert sorted(uids) == sorted(ids[1:101])


@pytest.fixture(scope="module")
def hundred(world):
    return [world.new_tenant() for _ in range(101)]


SHARE_ERRORS = {
    # case: (code, params builder(world, own_image, me, friends, stranger))
    "no-image-id": ("MissingParameter", lambda w, img, me, f, s: {"AddAccounts": f[0].account_id}),
    "no-accounts": ("MissingParameter", lambda w, img, me, f, s: {"ImageId": img}),
    "bad-add-id": ("InvalidParameter.AddAccounts",
                   lambda w, img, me, f, s: {"ImageId": img, "AddAccounts": "12ab34"}),
    "empty-item": ("InvalidParameter.AddAccounts",
                   lambda w, img, me, f, s: {"ImageId": img,
                                             "AddAccounts": f"{f[0].account_id},,{f[1].account_id}"}),
    "duplicate-add": ("InvalidParameter.AddAccounts",
                      lambda w, img, me, f, s: {"ImageId": img,
                                                "AddAccounts": f"{f[0].account_id},{f[0].account_id}"}),
    "eleven-adds": ("InvalidParameter.AddAccounts",
                    lambda w, img, me, f, s: {"ImageId": img, "AddAccounts": ",".join(
                        t.account_id for t in f[:11])}),
    "add-self": ("InvalidParameter.AddAccounts",
                 lambda w, img, me, f, s: {"ImageId": img, "AddAccounts": me.account_id}),
    "add-unknown": ("InvalidParameter.AddAccounts",
                    lambda w, img, me, f, s: {"ImageId": img, "AddAccounts": "1234567890123456"}),
    "unknown-among-known": ("InvalidParameter.AddAccounts",
                            lambda w, img, me, f, s: {"ImageId": img, "AddAccounts":
                                                      f"{f[0].account_id},1234567890123456"}),
    "bad-remove-id": ("InvalidParameter.RemoveAccounts",
                      lambda w, img, me, f, s: {"ImageId": img, "RemoveAccounts": "x1"}),
    "two-removes": ("InvalidParameter.RemoveAccounts",
                    lambda w, img, me, f, s: {"ImageId": img, "RemoveAccounts":
                                              f"{f[0].account_id},{f[1].account_id}"}),
    "add-and-remove-same": ("InvalidParameter.RemoveAccounts",
                            lambda w, img, me, f, s: {"ImageId": img,
                                                      "AddAccounts": f[0].account_id,
                                                      "RemoveAccounts": f[0].account_id}),
    "public-image": ("InvalidImageType.NotSupported",
                     lambda w, img, me, f, s: {"ImageId": w.public_ids[0],
                                               "AddAccounts": f[0].account_id}),
    "unknown-image": ("InvalidParameter.ImageId",
                      lambda w, img, me, f, s: {"ImageId": "m-0000000000000000000000000",
                                                "AddAccounts": f[0].account_id}),
    "others-image": ("InvalidParameter.ImageId",
                     lambda w, img, me, f, s: {"ImageId": s.image_id,
                                               "AddAccounts": f[0].account_id}),
}


@pytest.mark.parametrize("case", sorted(SHARE_ERRORS))
def test_modify_share_permission_errors(world, me, api, friends, stranger, case):
    image_id = world.create_image(api, me, name="Guarded")
    code, build = SHARE_ERRORS[case]
    expect_error(api, "ModifyImageSharePermission", code,
                 **build(world, image_id, me, friends, stranger))
    _, uids = share_list(api, image_id)
    assert uids == [], f"a refused ModifyImageSharePermission must change nothing: {uids}"
    for friend in friends[:3]:
        assert image_id not in [i["ImageId"] for i in self_images(world.sdk(friend))]
    assert share_list(world.sdk(stranger), stranger.image_id)[1] == []


DESCRIBE_SHARE_ERRORS = {
    "no-image-id": ("MissingParameter", lambda w, s: {}),
    "unknown-image": ("InvalidParameter.ImageId",
                      lambda w, s: {"ImageId": "m-0000000000000000000000000"}),
    "others-image": ("InvalidParameter.ImageId", lambda w, s: {"ImageId": s.image_id}),
}


@pytest.mark.parametrize("case", sorted(DESCRIBE_SHARE_ERRORS))
def test_describe_share_permission_errors(world, api, stranger, case):
    code, build = DESCRIBE_SHARE_ERRORS[case]
    expect_error(api, "DescribeImageSharePermission", code, **build(world, stranger))


# ---------------------------------------------------------------------- DescribeImageInfos

def expected_info(entry):
    return {
        "ImageId": entry["ImageId"],
        "Description": entry["Description"],
        "ImageVersion": entry["OSVersion"],
        "ImageSize": entry["ImageSize"],
        "OSName": entry["Platform"],
        "OSType": entry["OSType"],
        "ComputeType": entry["ComputeType"],
        "ImageOwnerAlias": "system",
        "DiskDeviceMappings": entry["DiskDeviceMappings"],
    }


@pytest.mark.parametrize("os_type", [None, "linux", "Linux", "LINUX", "windows", "Windows"],
                         ids=str)
def test_describe_image_infos(world, me, api, os_type):
    world.create_image(api, me, name="Not-public")  # own images never appear here
    params = {} if os_type is None else {"OsType": os_type}
    body = api.op("DescribeImageInfos", **params)
    check_code_zero(body)
    assert set(body) == {"RequestId", "Code", "Images"}, "no pagination fields"
    assert set(body["Images"]) == {"Image"}
    images = body["Images"]["Image"]
    entries = [e for e in world.catalog["Images"]
               if os_type is None or e["OSType"] == os_type.lower()]
    assert [i["ImageId"] for i in images] == [e["ImageId"] for e in entries]
    for img, entry in zip(images, entries):
        got = dict(img)
        region = got.pop("RegionId")
        assert isinstance(region, str) and region
        if entry.get("EnsRegionIds"):
            assert region in entry["EnsRegionIds"], (region, entry)
        assert got == expected_info(entry)


def test_describe_image_infos_bad_os_type(api):
    expect_error(api, "DescribeImageInfos", "InvalidParameter.OsType", OsType="macos")
