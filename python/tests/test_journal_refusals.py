"""The journal records calls that did not parse too: raw HTTP requests, each wrong in one way,
all show up in `control.journal()` with the code they were answered, and never a secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional, Tuple

import pytest

# A made-up signature and secret: neither may ever appear in the journal.
SIGNATURE = "c2lnbmVkLWJ5LW5vYm9keQ=="
SECRET = "do-not-journal-me-123"


def send(ens_images, query: Dict[str, str], method: str = "GET", path: str = "/",
         body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
         raw_query: Optional[str] = None) -> Tuple[int, str, dict]:
    """One raw request to the API; returns (HTTP status, RequestId header, JSON answer)."""
    url = ens_images.url + path + "?" + (raw_query if raw_query is not None else urllib.parse.urlencode(query))
    request = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["x-acs-request-id"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["x-acs-request-id"], json.loads(error.read())


def v1(ens_images, **fields: str) -> Dict[str, str]:
    """The protocol fields of a V1 call (with a signature that is never checked: every case
    below is refused before that), then the call's own fields."""
    query = {"Format": "JSON", "Version": "2017-11-10", "AccessKeyId": ens_images.access_key_id,
             "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
             "SignatureNonce": "nonce-1", "Timestamp": "2024-01-01T00:00:00Z",
             "Signature": SIGNATURE}
    query.update(fields)
    return {name: value for name, value in query.items() if value is not None}


def journaled(ens_images, request_id: str) -> dict:
    [entry] = ens_images.control.journal(request_id=request_id)
    text = json.dumps(entry)
    assert SIGNATURE not in text and SECRET not in text and ens_images.access_key_secret not in text
    assert entry["AccountId"] is None and entry["UserName"] is None and entry["FaultId"] is None
    assert entry["LatencyUs"] >= 0 and entry["Seq"] > 0 and entry["Time"]
    return entry


CASES = {
    # name: (query fields, expected Action, Outcome, HTTP status, Parameters)
    "no action": (dict(Action=None, EnsRegionId="cn-dalian-unicom"),
                  "", "MissingAction", 400, {"EnsRegionId": "cn-dalian-unicom"}),
    "unknown action": (dict(Action="UpgradeAICInstanceImage", ImageName="web"),
                       "UpgradeAICInstanceImage", "InvalidAction.NotFound", 404, {"ImageName": "web"}),
    "bad signature version": (dict(Action="DescribeImages", SignatureVersion="2.0", PageSize="5"),
                              "DescribeImages", "InvalidSignatureVersion", 400, {"PageSize": "5"}),
    "bad version": (dict(Action="DescribeImages", Version="2020-01-01"),
                    "DescribeImages", "InvalidVersion", 400, {}),
    "unsigned": (dict(Action="DeleteImage", Signature=None, ImageId="m-1"),
                 "DeleteImage", "MissingSignature", 400, {"ImageId": "m-1"}),
    "bad timestamp": (dict(Action="DescribeImages", Timestamp="yesterday"),
                      "DescribeImages", "InvalidTimeStamp.Format", 400, {}),
    "secret sent as a parameter": (dict(Action="NoSuchCall", AccessKeySecret=SECRET),
                                   "NoSuchCall", "InvalidAction.NotFound", 404,
                                   {"AccessKeySecret": "<redacted>"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_call_that_did_not_parse_is_journaled(ens_images, name):
    fields, action, outcome, status, parameters = CASES[name]
    answered, request_id, answer = send(ens_images, v1(ens_images, **fields))
    assert (answered, answer["Code"]) == (status, outcome), answer
    entry = journaled(ens_images, request_id)
    assert (entry["Action"], entry["Outcome"], entry["HttpStatus"]) == (action, outcome, status)
    assert entry["Parameters"] == parameters
    assert entry["AccessKeyId"] == ens_images.access_key_id


def test_malformed_and_oversized_locations_keep_what_could_be_read(ens_images):
    # A query string that is not form encoding: nothing of it can be read.
    status, request_id, answer = send(ens_images, {}, raw_query="Action=DescribeImages&Bad=%zz")
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    entry = journaled(ens_images, request_id)
    assert (entry["Action"], entry["Parameters"], entry["AccessKeyId"]) == ("", {}, "")

    # More parameters than the protocol reads: refused whole, before any is decoded.
    crowded = v1(ens_images, Action="DescribeImages", **{f"P{n}": "x" for n in range(130)})
    status, request_id, answer = send(ens_images, crowded)
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    entry = journaled(ens_images, request_id)
    assert (entry["Action"], entry["Parameters"]) == ("", {})

    # An oversized form body: the query's fields are still read, the body's are not.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for size in (70 * 1024, 2 * 1024 * 1024):  # over the form limit; over the body limit
        body = b"Filler=" + b"a" * size
        status, request_id, answer = send(
            ens_images, v1(ens_images, Action="DescribeImages", PageSize="7"),
            method="POST", body=body, headers=form)
        assert (status, answer["Code"]) == (400, "InvalidParameter"), size
        entry = journaled(ens_images, request_id)
        assert entry["Action"] == "DescribeImages" and entry["Parameters"] == {"PageSize": "7"}, size


def test_wrong_method_path_and_v3_header_refusals(ens_images):
    status, request_id, answer = send(ens_images, v1(ens_images, Action="DescribeImages"), method="PUT")
    assert (status, answer["Code"]) == (400, "UnsupportedHTTPMethod")
    assert journaled(ens_images, request_id)["Action"] == "DescribeImages"

    status, request_id, answer = send(ens_images, v1(ens_images, Action="DescribeImages"), path="/v2/images")
    assert (status, answer["Code"]) == (404, "InvalidApi.NotFound")
    assert journaled(ens_images, request_id)["Outcome"] == "InvalidApi.NotFound"

    # An ACS3 call without x-acs-version: the action and key come from its headers.
    headers = {"Authorization": f"ACS3-HMAC-SHA256 Credential={ens_images.access_key_id},"
                                f"SignedHeaders=host;x-acs-action,Signature=abcdef0123{SIGNATURE.encode().hex()}",
               "x-acs-action": "DescribeImages"}
    status, request_id, answer = send(ens_images, {"EnsRegionId": "cn-dalian-unicom"}, headers=headers)
    assert (status, answer["Code"]) == (400, "MissingVersion")
    entry = journaled(ens_images, request_id)
    assert (entry["Action"], entry["AccessKeyId"]) == ("DescribeImages", ens_images.access_key_id)
    assert entry["Parameters"] == {"EnsRegionId": "cn-dalian-unicom"}
    assert SIGNATURE.encode().hex() not in json.dumps(entry)


def test_refusals_are_found_by_outcome_and_by_empty_action(ens_images):
    send(ens_images, v1(ens_images, Action=None))
    send(ens_images, v1(ens_images, Action="Bogus"))
    control = ens_images.control
    assert [e["Outcome"] for e in control.journal(action="")] == ["MissingAction"]
    assert [e["Action"] for e in control.journal(outcome="InvalidAction.NotFound")] == ["Bogus"]
    assert control.clear_journal() == 2
