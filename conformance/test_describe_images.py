"""DescribeImages through all three official SDK flavours: pagination, filters, defaults,
limits, JSON shape and typing (images-api.md section 1, protocol.md section 7)."""
from __future__ import annotations

import pytest

from ens_support import (
    CATALOG_SIZE,
    DUP_NAME,
    LONG_NAME,
    NODE_DALIAN,
    NODE_HANGZHOU,
    SPECIAL_NAME,
    assert_api_error,
    assert_image_matches,
    check_describe_envelope,
    entry_on_node,
    expected_image,
)


def ids_of(body):
    return [img["ImageId"] for img in body["Images"]["Image"]]


# --------------------------------------------------------------------------- pagination

@pytest.mark.parametrize("page_size", [10, 50, 7])
def test_walk_every_page(sdk, catalog_entries, page_size):
    """Every image exactly once, in catalog order, correct echo fields and TotalCount."""
    bodies = sdk.walk(page_size)
    expected_ids = [e["ImageId"] for e in catalog_entries]
    full_pages = -(-CATALOG_SIZE // page_size)
    assert len(bodies) == full_pages + 1, "expected the page after the last one to be empty"
    seen = []
    for number, body in enumerate(bodies, start=1):
        images = check_describe_envelope(body)
        assert body["PageNumber"] == number
        assert body["PageSize"] == page_size
        assert body["TotalCount"] == CATALOG_SIZE
        start = (number - 1) * page_size
        assert ids_of(body) == expected_ids[start:start + page_size], f"page {number}"
        assert len(images) == max(0, min(page_size, CATALOG_SIZE - start))
        seen.extend(ids_of(body))
    assert seen == expected_ids
    assert len(set(seen)) == CATALOG_SIZE
    request_ids = [b["RequestId"] for b in bodies]
    assert len(set(request_ids)) == len(request_ids), "every response needs a fresh RequestId"


def test_every_field_matches_catalog(sdk, catalog_entries):
    bodies = sdk.walk(50)
    images = [img for b in bodies for img in check_describe_envelope(b)]
    assert len(images) == len(catalog_entries)
    for img, entry in zip(images, catalog_entries):
        assert_image_matches(img, expected_image(entry))


def test_defaults_page_one_size_ten(sdk, catalog_entries):
    body = sdk.describe()
    check_describe_envelope(body)
    assert body["PageNumber"] == 1
    assert body["PageSize"] == 10
    assert body["TotalCount"] == CATALOG_SIZE
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[:10]]


def test_page_number_without_page_size(sdk, catalog_entries):
    body = sdk.describe(PageNumber="3")
    assert body["PageNumber"] == 3 and body["PageSize"] == 10
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[20:30]]


def test_page_size_without_page_number(sdk, catalog_entries):
    body = sdk.describe(PageSize="4")
    assert body["PageNumber"] == 1 and body["PageSize"] == 4
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[:4]]


@pytest.mark.parametrize("page_size", ["1", "50"])
def test_page_size_bounds_accepted(sdk, catalog_entries, page_size):
    body = sdk.describe(PageSize=page_size, PageNumber="2")
    n = int(page_size)
    assert body["PageSize"] == n and body["PageNumber"] == 2
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[n:2 * n]]


@pytest.mark.parametrize("page_number", ["15", "1000000"])
def test_page_past_the_end(sdk, page_number):
    body = sdk.describe(PageNumber=page_number, PageSize="10")
    images = check_describe_envelope(body)
    assert images == []
    assert body["TotalCount"] == CATALOG_SIZE
    assert body["PageNumber"] == int(page_number)
    assert body["PageSize"] == 10


def test_last_partial_page(sdk, catalog_entries):
    body = sdk.describe(PageNumber="3", PageSize="50")
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[100:]]
    assert len(body["Images"]["Image"]) == CATALOG_SIZE - 100


@pytest.mark.parametrize("value", ["0", "-1", "abc", "51", "1.5", "99999999999999999999999"])
def test_invalid_page_size(sdk, value):
    err = sdk.describe_error(PageSize=value)
    assert_api_error(err, "InvalidParameter.PageSize", 400, sdk)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "99999999999999999999999"])
def test_invalid_page_number(sdk, value):
    err = sdk.describe_error(PageNumber=value)
    assert_api_error(err, "InvalidParameter.PageNumber", 400, sdk)


# --------------------------------------------------------------------------- filters

@pytest.mark.parametrize("node", [NODE_DALIAN, NODE_HANGZHOU])
def test_filter_ens_region_walk(sdk, catalog_entries, node):
    """Node filter, walked with page size 7: each matching image once, RegionId = the filter."""
    expected = [e for e in catalog_entries if entry_on_node(e, node)]
    assert 0 < len(expected) < CATALOG_SIZE  # the catalog really exercises the filter
    bodies = sdk.walk(7, EnsRegionId=node)
    images = []
    for body in bodies:
        images.extend(check_describe_envelope(body))
        assert body["TotalCount"] == len(expected)
    assert [i["ImageId"] for i in images] == [e["ImageId"] for e in expected]
    for img, entry in zip(images, expected):
        assert_image_matches(img, expected_image(entry, region_filter=node))


def test_filter_image_id_exact(sdk, catalog_entries):
    entry = catalog_entries[42]  # ImageId contains '.'
    body = sdk.describe(ImageId=entry["ImageId"])
    images = check_describe_envelope(body)
    assert body["TotalCount"] == 1
    assert len(images) == 1
    assert_image_matches(images[0], expected_image(entry))


@pytest.mark.parametrize("image_id", ["m-doesnotexist0000000000000", "centos_000_x64_20G"])
def test_filter_image_id_unknown_or_prefix(sdk, image_id):
    """Unknown ImageId (and a mere prefix of an existing one): empty list, TotalCount 0."""
    body = sdk.describe(ImageId=image_id)
    assert check_describe_envelope(body) == []
    assert body["TotalCount"] == 0


def test_filter_image_name_duplicates(sdk, catalog_entries):
    expected = [e["ImageId"] for e in catalog_entries if e["ImageName"] == DUP_NAME]
    assert len(expected) >= 5
    body = sdk.describe(ImageName=DUP_NAME, PageSize="50")
    check_describe_envelope(body)
    assert ids_of(body) == expected
    assert body["TotalCount"] == len(expected)
    assert all(i["ImageName"] == DUP_NAME for i in body["Images"]["Image"])


def test_filter_image_name_is_exact_not_prefix(sdk, catalog_entries):
    body = sdk.describe(ImageName="Alpha-1")
    assert ids_of(body) == [catalog_entries[1]["ImageId"]]
    assert body["TotalCount"] == 1


def test_filter_image_name_with_colon_and_dot(sdk, catalog_entries):
    """':' and '.' in a filter value go through each SDK's encoder and the server's signer."""
    expected = [e["ImageId"] for e in catalog_entries if e["ImageName"] == SPECIAL_NAME]
    assert len(expected) == 2
    body = sdk.describe(ImageName=SPECIAL_NAME)
    assert ids_of(body) == expected
    assert body["TotalCount"] == 2
    assert [i["ImageName"] for i in body["Images"]["Image"]] == [SPECIAL_NAME] * 2


def test_filter_image_name_max_length(sdk, catalog_entries):
    body = sdk.describe(ImageName=LONG_NAME)
    assert ids_of(body) == [catalog_entries[91]["ImageId"]]


def test_filter_image_name_valid_but_unknown(sdk):
    body = sdk.describe(ImageName="No_such-image.name:1")
    assert check_describe_envelope(body) == []
    assert body["TotalCount"] == 0


@pytest.mark.parametrize("name", [
    "1starts-with-digit",
    "a",
    "aliyun_image",
    "acs:image",
    "has space",
    "bad/slash",
    "http://example",
    "L" + "x" * 128,  # 129 characters
])
def test_filter_image_name_breaking_rules(sdk, name):
    err = sdk.describe_error(ImageName=name)
    assert_api_error(err, "InvalidParameter.ImageName", 400, sdk)


def test_filter_snapshot_id(sdk, catalog_entries):
    snapshot = catalog_entries[0]["SnapshotId"]
    expected = [e["ImageId"] for e in catalog_entries if e.get("SnapshotId") == snapshot]
    assert len(expected) > 10
    bodies = sdk.walk(10, SnapshotId=snapshot)
    got = [i for b in bodies for i in ids_of(b)]
    assert got == expected
    assert bodies[0]["TotalCount"] == len(expected)
    assert all(img["SnapshotId"] == snapshot for b in bodies for img in b["Images"]["Image"])


def test_filter_snapshot_id_unknown(sdk):
    body = sdk.describe(SnapshotId="sp-nothing-here")
    assert body["Images"]["Image"] == [] and body["TotalCount"] == 0


@pytest.mark.parametrize("status", ["Available", "Creating", "whatever it says *~+/"])
def test_status_is_ignored(sdk, catalog_entries, status):
    body = sdk.describe(Status=status, PageSize="20", PageNumber="2")
    assert body["TotalCount"] == CATALOG_SIZE
    assert ids_of(body) == [e["ImageId"] for e in catalog_entries[20:40]]


def test_filter_region_and_name(sdk, catalog_entries):
    expected = [e for e in catalog_entries
                if e["ImageName"] == DUP_NAME and entry_on_node(e, NODE_HANGZHOU)]
    everywhere = [e for e in catalog_entries if e["ImageName"] == DUP_NAME]
    assert 0 < len(expected) < len(everywhere)
    body = sdk.describe(EnsRegionId=NODE_HANGZHOU, ImageName=DUP_NAME, PageSize="50")
    assert ids_of(body) == [e["ImageId"] for e in expected]
    assert body["TotalCount"] == len(expected)
    assert all(i["RegionId"] == NODE_HANGZHOU for i in body["Images"]["Image"])


def test_filter_image_id_and_region_mismatch(sdk, catalog_entries):
    entry = next(e for e in catalog_entries if e.get("EnsRegionIds") == [NODE_HANGZHOU])
    body = sdk.describe(ImageId=entry["ImageId"], EnsRegionId=NODE_DALIAN)
    assert check_describe_envelope(body) == []
    assert body["TotalCount"] == 0


def test_filter_image_id_and_region_match(sdk, catalog_entries):
    entry = next(e for e in catalog_entries
                 if e.get("EnsRegionIds") == [NODE_HANGZHOU, NODE_DALIAN])
    body = sdk.describe(ImageId=entry["ImageId"], EnsRegionId=NODE_DALIAN)
    images = check_describe_envelope(body)
    assert len(images) == 1 and body["TotalCount"] == 1
    assert images[0]["RegionId"] == NODE_DALIAN  # the filter, not the first listed node
    body = sdk.describe(ImageId=entry["ImageId"])
    assert body["Images"]["Image"][0]["RegionId"] == NODE_HANGZHOU  # first listed node


def test_image_without_node_list_is_everywhere(sdk, catalog_entries):
    entry = next(e for e in catalog_entries if "EnsRegionIds" not in e)
    for node in (NODE_DALIAN, NODE_HANGZHOU):
        body = sdk.describe(ImageId=entry["ImageId"], EnsRegionId=node)
        assert ids_of(body) == [entry["ImageId"]]
        assert body["Images"]["Image"][0]["RegionId"] == node


def test_all_filters_combined(sdk, catalog_entries):
    entry = next(e for e in catalog_entries
                 if e["ImageName"] == DUP_NAME and "SnapshotId" in e and entry_on_node(e, NODE_DALIAN))
    body = sdk.describe(EnsRegionId=NODE_DALIAN, ImageId=entry["ImageId"], ImageName=DUP_NAME,
                        SnapshotId=entry["SnapshotId"], Status="Available",
                        PageNumber="1", PageSize="5")
    assert ids_of(body) == [entry["ImageId"]]
    # Same but with a SnapshotId that does not belong to the image: nothing.
    other = next(e["SnapshotId"] for e in catalog_entries
                 if e.get("SnapshotId") not in (None, entry["SnapshotId"]))
    body = sdk.describe(EnsRegionId=NODE_DALIAN, ImageId=entry["ImageId"], SnapshotId=other)
    assert body["Images"]["Image"] == [] and body["TotalCount"] == 0


def test_unknown_ens_region(sdk):
    err = sdk.describe_error(EnsRegionId="cn-nowhere-telecom")
    assert_api_error(err, "InvalidParameter.EnsRegionId", 400, sdk)


def test_snapshot_id_omitted_when_absent(sdk, catalog_entries):
    entry = next(e for e in catalog_entries if "SnapshotId" not in e)
    body = sdk.describe(ImageId=entry["ImageId"])
    img = check_describe_envelope(body)[0]
    assert "SnapshotId" not in img
    assert_image_matches(img, expected_image(entry))


def test_numeric_image_size_is_returned_as_string(sdk, catalog_entries):
    entry = next(e for e in catalog_entries if isinstance(e["ImageSize"], int))
    img = sdk.describe(ImageId=entry["ImageId"])["Images"]["Image"][0]
    assert img["ImageSize"] == str(entry["ImageSize"])
    assert isinstance(img["ImageSize"], str)
