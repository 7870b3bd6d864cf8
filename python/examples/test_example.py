"""Code that lists ENS images, tested against a local stand-in of the cloud: the official
SDK, the `ens_images` fixture, a fault, and a journal assertion."""

from alibabacloud_ens20171110 import models
from alibabacloud_ens20171110.client import Client
from alibabacloud_tea_openapi.exceptions import ServerException


def list_image_ids(client: Client, node: str) -> list:
    """The code under test: the IDs of the images on an ENS node, [] while ENS is down."""
    request = models.DescribeImagesRequest(ens_region_id=node, page_size="50")
    try:
        page = client.describe_images(request).body
    except ServerException:
        return []
    return [image.image_id for image in page.images.image]


def test_lists_images_and_survives_an_outage(ens_images):
    client = Client(ens_images.config())
    assert "centos_7_9_x64_20G_alibase_20230815" in list_image_ids(client, "cn-dalian-unicom")

    # The next DescribeImages fails as the cloud would, with 503 ServiceUnavailable.
    ens_images.control.add_fault("DescribeImages", error_code="ServiceUnavailable",
                                 http_status=503, count=1)
    assert list_image_ids(client, "cn-dalian-unicom") == []

    calls = ens_images.control.journal(action="DescribeImages")
    assert [call["Outcome"] for call in calls] == ["Success", "ServiceUnavailable"]
    assert calls[1]["FaultId"] is not None
    assert calls[1]["Parameters"] == {"EnsRegionId": "cn-dalian-unicom", "PageSize": "50"}
