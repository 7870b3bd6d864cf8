#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/: real SDK requests from the spec's signature
vectors (the copy in crates/ens-protocol/tests/vectors, or the directory given as the first
argument), policy documents like those the tests and the conformance suite use, and the
built-in catalog cut into pieces.

Seeds are named `seed-*`; `regression-*` files (inputs that once failed) and the inputs that
`scripts/fuzz.sh merge` kept (named by their SHA-1) are left alone. Run it again after a vector
file changes:

    python3 fuzz/make-seeds.py [VECTORS_DIR]
"""

import json
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
VECTORS = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "crates" / "ens-protocol" / "tests" / "vectors"
CORPUS = FUZZ / "corpus"


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data.encode() if isinstance(data, str) else data)


def http(method, target, headers, body=""):
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head + "\r\n" + body


def wire_requests(file_name):
    for vector in json.loads((VECTORS / file_name).read_text())["vectors"]:
        wire = vector.get("wire")
        if wire:
            yield vector["name"], http(wire["method"], wire["path"], wire["headers"], wire.get("body") or "")


V1 = dict(wire_requests("rpc_v1.json"))
V3 = dict(wire_requests("acs3.json"))

# Actions of the vectors this server does not implement, and one it does with a similar shape.
# The signature targets sign their input themselves, so renamed requests are valid there.
IMPLEMENTED = {"ReinitInstance": "ModifyImageAttribute", "ImportImage": "CreateImage",
               "UpgradeAICInstanceImage": "DescribeImages"}


def implemented(requests):
    renamed = {}
    for name, request in requests.items():
        for theirs, ours in IMPLEMENTED.items():
            request = request.replace(theirs, ours)
        renamed[name] = request
    return renamed


def header_index(request, name):
    """The position of header `name` among the request's headers, for edit lines."""
    lines = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    return next(i for i, line in enumerate(lines) if line.lower().startswith(name + ":"))


def requests():
    for name, request in {**V1, **V3}.items():
        write("request", name, request)
    base = V1["core_v1_empty_value"]
    v3 = V3["tea_v3_delete_image_sts"]
    broken = {
        "bad_percent": base.replace("ImageName=&", "ImageName=%E4%B8&", 1),
        "bad_hex": base.replace("ImageName=&", "ImageName=%zz&", 1),
        "duplicate_param": base.replace("ImageName=&", "ImageName=a&ImageName=b&", 1),
        "unknown_action": base.replace("Action=ModifyImageAttribute", "Action=RunInstances", 1),
        "wrong_version": base.replace("Version=2017-11-10", "Version=2014-05-26", 1),
        "format_xml": base.replace("Format=JSON", "Format=XML", 1),
        "format_yaml": base.replace("Format=JSON", "Format=yaml", 1),
        "bad_timestamp": base.replace("Timestamp=2025-01-02T03%3A04%3A05Z", "Timestamp=yesterday", 1),
        "put": base.replace("POST ", "PUT ", 1),
        "other_path": base.replace("POST /?", "POST /api?", 1),
        "no_signature": http("GET", "/?Action=DescribeImages&Version=2017-11-10", [("host", "h")]),
        "v3_rsa": v3.replace("ACS3-HMAC-SHA256", "ACS3-RSA-SHA256", 1),
        "v3_unknown_field": v3.replace("Credential=", "Scope=x,Credential=", 1),
        "v3_key_mismatch": v3.replace("x-acs-accesskey-id: testid", "x-acs-accesskey-id: other", 1),
        "v3_unsigned_date": v3.replace("x-acs-date;", "", 1),
        "v3_bad_payload_hash": v3.replace("x-acs-content-sha256: e3", "x-acs-content-sha256: f3", 1),
        "v3_control_in_value": v3.replace("x-acs-signature-nonce: 5eed", "x-acs-signature-nonce: \x7f5eed", 1),
        "form_body_not_form": http("POST", "/?Action=DescribeImages", [("content-type", "text/plain")],
                                   "Version=2017-11-10&Signature=x"),
        "xml_error_with_control": http("GET", "/?Format=XML&Action=%01%3C%26&Signature=x&Version=2017-11-10",
                                       [("host", "h")]),
    }
    for name, request in broken.items():
        write("request", name, request)


def verifiers():
    v1_requests = implemented(V1)
    v3_requests = implemented(V3)
    for name, request in v1_requests.items():
        write("verify_v1", name, request)
    v1 = v1_requests["tea_v1_describe_images_special_chars"]
    form = v1_requests["tea_v1_form_body"]
    core = v1_requests["core_v1_empty_value"]
    edits_v1 = {
        "value": ("~q 6 other name\n", v1),
        "rename": ("~qn 6 ImageNames\n", v1),
        "remove": ("~qd 6\n", v1),
        "append": ("~qa Extra=1\n", v1),
        "method": ("~method GET\n", v1),
        "signature": ("~q 13 AAAAjoJPUeYchJ6X124zV6t9ozQ=\n", v1),
        "secret": ("~secret othersecret\n", v1),
        "reverse_query": ("~qr\n", v1),
        "move_to_body": ("~mv 6\n", form),
        "body_value": ("~b 0 other\n", form),
        "drop_content_type": (f"~hd {header_index(form, 'content-type')}\n", form),
        "raw_query": ("~raw-query Action=DescribeImages&Version=2017-11-10\n", core),
        "empty_value_filled": ("~q 1 x\n", core),
        "header_noise": ("~ha x-acs-security-token: token\n~hr\n", core),
    }
    for name, (edits, request) in edits_v1.items():
        write("verify_v1", f"edit_{name}", edits + request)

    for name, request in v3_requests.items():
        write("verify_v3", name, request)
    v3 = v3_requests["tea_v3_describe_images_special_chars"]
    sts = v3_requests["tea_v3_delete_image_sts"]
    form = v3_requests["tea_v3_form_body"]
    nonce = header_index(v3, "x-acs-signature-nonce")
    edits_v3 = {
        "query_value": ("~q 0 cn-beijing-telecom\n", v3),
        "query_respelled": ("~raw-query EnsRegionId=cn-hangzhou-telecom&ImageId=m-5wx1abcdefgh&ImageName=a%20b"
                            "%2Ac~d%2Fe%2Bf%3Dg%26h%25i%3A%E4%B8%AD%E6%96%87-%E2%9C%93%F0%9F%98%80&PageNumber=1"
                            "&PageSize=50\n", v3),
        "nonce": (f"~h {nonce} 5eed0000000000000000000000000099\n", v3),
        "nonce_split": (f"~h {nonce} 5eed\n~ha x-acs-signature-nonce: 0001\n", v3),
        "extra_nonce": ("~ha x-acs-signature-nonce: again\n", v3),
        "drop_nonce": (f"~hd {nonce}\n", v3),
        "unsigned_header": ("~ha x-forwarded-for: 10.0.0.1\n", v3),
        "header_order": ("~hr\n", v3),
        "method": ("~method GET\n", v3),
        "secret": ("~secret othersecret\n", v3),
        "token_dropped": (f"~hd {header_index(sts, 'x-acs-security-token')}\n", sts),
        "credential": (f"~h {header_index(sts, 'x-acs-accesskey-id')} otherid\n", sts),
        "body": ("~raw-body ImageId=m-other\n", form),
        "body_value": ("~b 0 other\n", form),
    }
    for name, (edits, request) in edits_v3.items():
        write("verify_v3", f"edit_{name}", edits + request)


def doc(*statements):
    return {"Version": "1", "Statement": list(statements)}


def st(effect, action, resource="*", condition=None, key="Action"):
    statement = {"Effect": effect, key: action, "Resource": resource}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def policies():
    documents = {
        "allow_all": doc(st("Allow", "*")),
        "read_only": doc(st("Allow", "ens:Describe*")),
        "full": doc(st("Allow", "ens:*")),
        "keep_golden": doc(st("Allow", "ens:*"), st("Deny", "ens:DeleteImage", "acs:ens:*:*:image/m-golden*")),
        "not_action": doc(st("Allow", ["ens:DeleteImage", "ens:Modify*"], key="NotAction")),
        "one_image": doc(st("Allow", ["ens:DeleteImage", "ens:ModifyImageAttribute"],
                            ["acs:ens:*:5123456789012345:image/m-1", "acs:ens::5123456789012345:image/m-?"])),
        "question_marks": doc(st("Allow", "ens:Describe?mages", "acs:ens:cn-*-telecom:*:image/*")),
        "office": doc(st("Allow", ["ens:Describe*"], "*", {
            "IpAddress": {"acs:SourceIp": ["203.0.113.0/24", "2001:db8:1::/48"]},
            "Bool": {"acs:SecureTransport": "true"},
            "DateLessThan": {"acs:CurrentTime": "2031-01-01T00:00:00+08:00"}})),
        "not_ip": doc(st("Deny", "*", "*", {"NotIpAddress": {"acs:SourceIp": "10.0.0.0/8"}})),
        "ip_single": doc(st("Allow", "ens:*", "*", {"IpAddress": {"acs:SourceIp": "192.168.1.7"}})),
        "dates": doc(st("Allow", "ens:*", "*", {
            "DateGreaterThanEquals": {"acs:CurrentTime": "2019-08-12T17:00:00+08:00"},
            "DateLessThanEquals": {"acs:CurrentTime": "2030-08-12T17:00:00Z"}})),
        "date_greater": doc(st("Allow", "ens:*", "*", {"DateGreaterThan": {"acs:CurrentTime": "2019-08-12T17:00:00Z"}})),
        "secure_bool": doc(st("Deny", "*", "*", {"Bool": {"acs:SecureTransport": False}})),
        "case_keys": doc(st("Allow", "ENS:describeimages", "*", {"IpAddress": {"ACS:SourceIP": "127.0.0.1"}})),
        "mixed": doc(st("Allow", "ens:*"), st("Deny", "ens:Delete*", "acs:ens:*:*:image/*"),
                     st("Allow", "ecs:*", "acs:ecs:*:*:instance/*")),
    }
    for name, document in documents.items():
        write("policy", name, json.dumps(document, indent=2, ensure_ascii=False))
    refused = {
        "unknown_key": '{"Version": "1", "Id": "x", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        "duplicate_key": '{"Version": "1", "Statement": [{"Effect": "Deny", "Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        "not_resource": '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "*"}]}',
        "principal": '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": {"RAM": "*"}}]}',
        "bad_ip": '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/33"}}}]}',
        "string_like": '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringLike": {"acs:SourceIp": "*"}}}]}',
        "version_number": '{"Version": 1, "Statement": []}',
        "truncated": '{"Version": "1", "Statement": [',
        "escapes": '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ens:\\u0044escribe*", "Resource": "acs:ens:*:*:image/\\u00e9"}]}',
        "long_resource": json.dumps(doc(st("Allow", "*", "acs:ens:*:*:image/" + "é" * 3000))),
        "too_long": json.dumps(doc(st("Allow", "*", "acs:ens:*:*:image/" + "m" * 6200))),
    }
    for name, text in refused.items():
        write("policy", name, text)


def catalogs():
    built_in = json.loads((ROOT / "crates/ens-server/catalog/default.json").read_text())
    write("catalog", "built_in", json.dumps(built_in, indent=2, ensure_ascii=False))
    for index, image in enumerate(built_in["Images"]):
        write("catalog", f"image_{index}", json.dumps({"EnsRegionIds": built_in["EnsRegionIds"][:2], "Images": [image]}))
    small = {"ImageId": "img_1", "ImageName": "img_1", "Architecture": "x86_64", "Platform": "centos",
             "ImageSize": 20, "CreationTime": "2020-01-01T00:00:00Z"}
    variants = {
        "minimal": {"Images": [small]},
        "per_image_nodes": {"EnsRegionIds": ["cn-a-1"], "Images": [{**small, "EnsRegionIds": ["cn-b-1", "cn-c-1"]}]},
        "plain_disks": {"Images": [{**small, "DiskDeviceMappings": [
            {"Type": "system", "Size": 20, "Format": "raw", "imageId": "img_1"},
            {"Type": "data", "Size": "100", "Format": "qcow2", "imageId": "img_1-data"}]}]},
        "windows_default": {"Images": [{**small, "Platform": "windows", "ImageName": "win_2019"}]},
        "offset_time": {"Images": [{**small, "CreationTime": "2020-01-01T08:00:00.5+08:00"}]},
        "duplicate": {"Images": [small, small]},
        "size_zero": {"Images": [{**small, "ImageSize": 0}]},
        "size_text": {"Images": [{**small, "ImageSize": "+20"}]},
        "unknown_field": {"Images": [{**small, "Colour": "red"}]},
        "owner_alias": {"Images": [{**small, "ImageOwnerAlias": "self"}]},
        "empty_nodes": {"Images": [{**small, "EnsRegionIds": []}]},
        "node_twice": {"Images": [{**small, "EnsRegionIds": ["cn-a-1", "cn-a-1"]}]},
    }
    for name, catalog in variants.items():
        write("catalog", name, json.dumps(catalog, ensure_ascii=False))


if __name__ == "__main__":
    requests()
    verifiers()
    policies()
    catalogs()
