"""Several accounts on one server: sharing and visibility in both directions, ImageOwnerAlias
relative to the caller, and nobody changing a system image or another account's image
(images-api.md 1, 3, 5-8). Parametrised over the three SDK flavours."""
from __future__ import annotations

import pytest

from ens_support import (
    ACCOUNT_ID_RE,
    all_images,
    check_code_zero,
    check_share_permission_body,
    expect_error,
    self_images,
)

PUBLIC_FIELDS = ("ImageId", "ImageName", "Architecture", "Platform", "ImageSize", "CreationTime",
                 "RegionId", "DiskDeviceMappings")
SELF_FIELDS = ("ImageId", "ImageName", "Status", "Architecture", "Platform", "OsVersion",
               "ComputeType", "ImageSize", "ImageStorageSize", "InstanceId", "RegionId",
               "CreationTime", "DiskDeviceMappings")


class Party:
    """An account and its SDK client of the flavour under test."""

    def __init__(self, world, flavor):
        self.tenant = world.new_tenant()
        self.id = self.tenant.account_id
        self.api = world.sdk(self.tenant, flavor)

    def self_view(self):
        return {i["ImageId"]: i for i in self_images(self.api)}

    def describe_view(self):
        return all_images(self.api, page_size=3)


@pytest.fixture
def parties(world, flavor_name):
    return [Party(world, flavor_name) for _ in range(3)]


def share(owner, image_id, add=None, remove=None):
    params = {"ImageId": image_id}
    if add is not None:
        params["AddAccounts"] = add
    if remove is not None:
        params["RemoveAccounts"] = remove
    body = owner.api.op("ModifyImageSharePermission", **params)
    assert set(body) == {"RequestId"}, body


def shares_of(owner, image_id):
    body = owner.api.op("DescribeImageSharePermission", ImageId=image_id, PageSize="100")
    return sorted(check_share_permission_body(body))


def custom_part(world, listing):
    """DescribeImages: the system images come first, in catalog order; returns the rest."""
    n = len(world.public_ids)
    assert [i["ImageId"] for i in listing[:n]] == world.public_ids, "system images first"
    assert all(i["ImageOwnerAlias"] == "system" for i in listing[:n])
    return listing[n:]


def test_share_visibility_both_ways(world, parties):
    a, b, c = parties
    a1 = world.create_image(a.api, a.tenant, name="Alpha-one")
    b1 = world.create_image(b.api, b.tenant, name="Bravo-one")
    a2 = world.create_image(a.api, a.tenant, name="Alpha-two")

    # Before any share: everyone sees only the system images and their own.
    assert [i["ImageId"] for i in custom_part(world, a.describe_view())] == [a1, a2]
    assert [i["ImageId"] for i in custom_part(world, b.describe_view())] == [b1]
    assert custom_part(world, c.describe_view()) == []
    assert list(c.self_view()) == []

    share(a, a1, add=b.id)
    share(b, b1, add=a.id)

    # DescribeSelfImages: own (self) and shared-in (others), in creation order.
    a_self = self_images(a.api)
    assert [(i["ImageId"], i["ImageOwnerAlias"]) for i in a_self] == \
        [(a1, "self"), (b1, "others"), (a2, "self")]
    b_self = self_images(b.api)
    assert [(i["ImageId"], i["ImageOwnerAlias"]) for i in b_self] == \
        [(a1, "others"), (b1, "self")]
    assert list(c.self_view()) == [], "a third account sees nothing of either"

    # The shared image looks the same from both sides, apart from ImageOwnerAlias.
    for key in SELF_FIELDS:
        assert a.self_view()[a1][key] == b.self_view()[a1][key], key
        assert b.self_view()[b1][key] == a.self_view()[b1][key], key

    # DescribeImages: system first, then own (self) and shared-in (others).
    a_custom = {i["ImageId"]: i for i in custom_part(world, a.describe_view())}
    b_custom = {i["ImageId"]: i for i in custom_part(world, b.describe_view())}
    assert {k: v["ImageOwnerAlias"] for k, v in a_custom.items()} == \
        {a1: "self", a2: "self", b1: "others"}
    assert {k: v["ImageOwnerAlias"] for k, v in b_custom.items()} == {a1: "others", b1: "self"}
    for key in PUBLIC_FIELDS:
        assert a_custom[a1][key] == b_custom[a1][key], key
    assert custom_part(world, c.describe_view()) == []

    # Filters see shared-in images too.
    assert [i["ImageId"] for i in self_images(b.api, ImageName="alpha")] == [a1]
    body = b.api.op("DescribeImages", ImageId=a1)
    assert [(i["ImageId"], i["ImageOwnerAlias"]) for i in body["Images"]["Image"]] == \
        [(a1, "others")]
    assert c.api.op("DescribeImages", ImageId=a1)["Images"]["Image"] == []
    assert self_images(c.api, ImageId=a1) == []

    # Revoking takes it away at once, on that side only.
    share(a, a1, remove=b.id)
    assert a1 not in b.self_view()
    assert a1 not in [i["ImageId"] for i in b.describe_view()]
    assert a.self_view()[a1]["ImageOwnerAlias"] == "self"
    assert b1 in a.self_view(), "B's share to A is independent of A's share to B"
    assert shares_of(a, a1) == [] and shares_of(b, b1) == [a.id]


def test_shared_in_image_is_read_only(world, parties):
    a, b, c = parties
    a1 = world.create_image(a.api, a.tenant, name="Owned-by-A")
    share(a, a1, add=b.id)
    expect_error(b.api, "ModifyImageAttribute", "NoPermission", ImageId=a1, ImageName="Mine-now")
    expect_error(b.api, "DeleteImage", "NoPermission", ImageId=a1)
    expect_error(b.api, "ModifyImageSharePermission", "NoPermission", ImageId=a1,
                 AddAccounts=c.id)
    expect_error(b.api, "ModifyImageSharePermission", "NoPermission", ImageId=a1,
                 RemoveAccounts=b.id)
    expect_error(b.api, "DescribeImageSharePermission", "NoPermission", ImageId=a1)
    # Nothing changed.
    assert a.self_view()[a1]["ImageName"] == "Owned-by-A"
    assert b.self_view()[a1]["ImageName"] == "Owned-by-A"
    assert shares_of(a, a1) == [b.id]
    assert a1 not in c.self_view()


def test_invisible_image_behaves_as_unknown(world, parties):
    a, _, c = parties
    a1 = world.create_image(a.api, a.tenant, name="Private-A")
    expect_error(c.api, "ModifyImageAttribute", "InvalidParameter.ImageId", ImageId=a1,
                 ImageName="Taken")
    expect_error(c.api, "DeleteImage", "Error.DeleteImage", message_contains="The image is not exist.",
                 ImageId=a1)
    expect_error(c.api, "ModifyImageSharePermission", "InvalidParameter.ImageId", ImageId=a1,
                 AddAccounts=c.id)
    expect_error(c.api, "DescribeImageSharePermission", "InvalidParameter.ImageId", ImageId=a1)
    assert a.self_view()[a1]["ImageName"] == "Private-A"
    assert shares_of(a, a1) == []


def test_system_images_are_untouchable(world, parties):
    public = world.public_ids[2]
    entry = world.catalog["Images"][2]
    for party in parties[:2]:
        expect_error(party.api, "ModifyImageAttribute", "InvalidParameter.ImageId", ImageId=public,
                     ImageName="Hijacked")
        expect_error(party.api, "DeleteImage", "InvalidParameter.ImageId", ImageId=public)
        expect_error(party.api, "ModifyImageSharePermission", "InvalidImageType.NotSupported",
                     ImageId=public, AddAccounts=parties[2].id)
    for party in parties:
        listing = party.describe_view()
        img = [i for i in listing if i["ImageId"] == public]
        assert len(img) == 1 and img[0]["ImageName"] == entry["ImageName"]
        assert img[0]["ImageOwnerAlias"] == "system"
        assert public not in party.self_view(), "system images are not in DescribeSelfImages"
    infos = parties[0].api.op("DescribeImageInfos")["Images"]["Image"]
    assert public in [i["ImageId"] for i in infos]


def test_owner_changes_reach_the_recipients(world, parties):
    a, b, c = parties
    a1 = world.create_image(a.api, a.tenant, name="Before")
    share(a, a1, add=f"{b.id},{c.id}")
    assert shares_of(a, a1) == sorted([b.id, c.id])
    check_code_zero(a.api.op("ModifyImageAttribute", ImageId=a1, ImageName="After"))
    for party in (b, c):
        assert party.self_view()[a1]["ImageName"] == "After"
        assert [i["ImageName"] for i in party.describe_view() if i["ImageId"] == a1] == ["After"]
    # B cannot pass it on; revoking B leaves C's share alone.
    expect_error(b.api, "ModifyImageSharePermission", "NoPermission", ImageId=a1,
                 AddAccounts=a.id)
    share(a, a1, remove=b.id)
    assert a1 not in b.self_view() and a1 in c.self_view()
    # Deleting needs the last share revoked; then it is gone for everyone.
    expect_error(a.api, "DeleteImage", "Error.DeleteImage", message_contains="revoke", ImageId=a1)
    share(a, a1, remove=c.id)
    check_code_zero(a.api.op("DeleteImage", ImageId=a1))
    for party in parties:
        assert a1 not in party.self_view()
        assert a1 not in [i["ImageId"] for i in party.describe_view()]
    expect_error(a.api, "DescribeImageSharePermission", "InvalidParameter.ImageId", ImageId=a1)


def test_describe_images_counts_per_caller(world, parties):
    a, b, c = parties
    own_a = [world.create_image(a.api, a.tenant, name=f"A-{n}") for n in range(3)]
    own_b = [world.create_image(b.api, b.tenant, name=f"B-{n}") for n in range(2)]
    for image_id in own_a[:2]:
        share(a, image_id, add=f"{b.id},{c.id}")
    share(b, own_b[0], add=c.id)
    n_public = len(world.public_ids)
    expected = {a: n_public + 3, b: n_public + 2 + 2, c: n_public + 2 + 1}
    for party, total in expected.items():
        body = party.api.op("DescribeImages", PageSize="2")
        assert body["TotalCount"] == total, (party.id, body["TotalCount"], total)
        assert len(party.describe_view()) == total
        body = party.api.op("DescribeSelfImages", PageSize="1")
        assert body["TotalCount"] == str(total - n_public)


def test_second_access_key_acts_for_the_same_account(world, parties, flavor_name):
    a, b, _ = parties
    a1 = world.create_image(a.api, a.tenant, name="Two-keys")
    key = world.admin.run("key", "create", "--account", a.id)
    assert key["AccountId"] == a.id and key["AccessKeyId"] != a.tenant.ak, key
    listed = world.admin.run("key", "list", "--account", a.id)
    assert {a.tenant.ak, key["AccessKeyId"]} <= {k["AccessKeyId"] for k in listed}, listed
    assert all("AccessKeySecret" not in k for k in listed), "key list never shows secrets"
    other = a.api.with_credentials(key["AccessKeyId"], key["AccessKeySecret"])
    assert [(i["ImageId"], i["ImageOwnerAlias"]) for i in self_images(other)] == [(a1, "self")]
    check_code_zero(other.op("ModifyImageAttribute", ImageId=a1, ImageName="Renamed-by-key2"))
    other.op("ModifyImageSharePermission", ImageId=a1, AddAccounts=b.id)
    assert shares_of(a, a1) == [b.id]
    assert b.self_view()[a1]["ImageName"] == "Renamed-by-key2"


def test_admin_account_list(world):
    accounts = world.admin.accounts()
    assert isinstance(accounts, list) and len(accounts) >= 1
    assert str(accounts[0]["AccountId"]) == world.root.account_id, "the root account is first"
    assert world.ak in accounts[0]["AccessKeyIds"]
    fresh = world.new_tenant()
    accounts = world.admin.accounts()
    ids = [str(a["AccountId"]) for a in accounts]
    assert len(ids) == len(set(ids))
    mine = [a for a in accounts if str(a["AccountId"]) == fresh.account_id]
    assert len(mine) == 1 and mine[0]["AccessKeyIds"] == [fresh.ak]
    for acc in accounts:
        assert ACCOUNT_ID_RE.match(str(acc["AccountId"])), acc
        assert isinstance(acc["CreationTime"], str) and acc["CreationTime"], acc
