"""Shared helpers for the ENS DescribeImages conformance suite.

* ServerProcess / start_server: run the real `ens-images serve` binary on a random port.
* make_catalog: the generated >100-image catalog used by most tests.
* SDK flavours: thin adapters over the three official SDK variants (Tea V3, Tea V1 "v2",
  aliyun-python-sdk-core V1) that return the raw JSON body and normalise SDK exceptions.
* raw_*: signed raw requests built with the SDKs' own signing helpers, for what no SDK sends.
"""
from __future__ import annotations

import datetime as _dt
import http.client
import importlib
import inspect
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest

# SDKs under test -------------------------------------------------------------------------
from alibabacloud_ens20171110 import models as ens_models
from alibabacloud_ens20171110.client import Client as TeaEnsClient
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from alibabacloud_tea_openapi.utils import Utils as TeaUtils
from alibabacloud_tea_openapi.utils_models import Config as TeaConfig
from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params
from darabonba.runtime import RuntimeOptions

import aliyunsdkcore.utils.parameter_helper as core_parameter_helper
from aliyunsdkcore.acs_exception.exceptions import ClientException as CoreClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkens.request.v20171110.DescribeImagesRequest import (
    DescribeImagesRequest as CoreDescribeImagesRequest,
)

# Never let the SDKs (or urllib) route loopback traffic through a proxy from the environment.
for _var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

CONFORMANCE_DIR = Path(__file__).resolve().parent
REPO_DIR = CONFORMANCE_DIR.parent
API_VERSION = "2017-11-10"

UUID_UPPER_RE = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
LISTENING_RE = re.compile(r"listening on http://(\S+)")

NODE_DALIAN = "cn-dalian-unicom"
NODE_HANGZHOU = "cn-hangzhou-telecom"
KNOWN_NODES = (NODE_DALIAN, NODE_HANGZHOU)


def server_binary() -> Path:
    return Path(os.environ.get("ENS_IMAGES_BIN", str(REPO_DIR / "target" / "debug" / "ens-images")))


def require_binary() -> Path:
    binary = server_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"ens-images server binary not found or not executable at {binary}; "
            "build it (cargo build) or set ENS_IMAGES_BIN",
            pytrace=False,
        )
    return binary


def new_access_key() -> tuple:
    """Random root credentials handed to the server through the environment."""
    return "LTAI" + secrets.token_hex(10), secrets.token_hex(16)


# ---------------------------------------------------------------------------------------
# Server process
# ---------------------------------------------------------------------------------------


class ServerProcess:
    """One running `ens-images serve`. stdout is drained by a thread; stderr goes to a file."""

    def __init__(self, proc: subprocess.Popen, data_dir: Path, stderr_path: Path,
                 ak: Optional[str], secret: Optional[str]):
        self.proc = proc
        self.data_dir = data_dir
        self.stderr_path = stderr_path
        self.ak = ak
        self.secret = secret
        self.host: Optional[str] = None  # "127.0.0.1:PORT"
        self._stdout_lines: List[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._drain_stdout, daemon=True)
        self._reader.start()

    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self._stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_listening(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise AssertionError(
                    f"server did not print 'listening on http://...' within {timeout}s\n"
                    + self.describe_output())
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:  # stdout closed: process exited
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"server exited (rc={self.proc.returncode}) before it was ready\n"
                    + self.describe_output())
            match = LISTENING_RE.search(line)
            if match:
                self.host = match.group(1).rstrip("/")
                return self.host

    @property
    def port(self) -> int:
        assert self.host is not None
        return int(self.host.rsplit(":", 1)[1])

    def stdout_text(self) -> str:
        return "".join(self._stdout_lines)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe_output(self) -> str:
        return ("--- server stdout ---\n" + self.stdout_text()[-8000:]
                + "\n--- server stderr ---\n" + self.stderr_text()[-8000:])

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def kill9(self) -> int:
        """SIGKILL our own child (no chance to flush or shut down), and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode


# Which store the servers under test use: "sqlite" (default) or "postgres". With postgres,
# every data directory gets its own fresh database on the server named by
# ENS_IMAGES_TEST_DATABASE_URL, so the same tests run unchanged on both backends.
BACKEND = os.environ.get("ENS_IMAGES_TEST_BACKEND", "sqlite")
_DATABASES: Dict[str, str] = {}


def database_url_for(data_dir: Path) -> str:
    """The PostgreSQL database of one data directory, created on first use. Names start with
    the CI database's name, so CI's clean-up (by prefix) removes them."""
    base = os.environ.get("ENS_IMAGES_TEST_DATABASE_URL")
    if not base:
        raise AssertionError("ENS_IMAGES_TEST_BACKEND=postgres needs ENS_IMAGES_TEST_DATABASE_URL")
    key = str(Path(data_dir).resolve())
    if key not in _DATABASES:
        parts = urllib.parse.urlsplit(base)
        name = f"{parts.path.lstrip('/') or 'ens'}_c{secrets.token_hex(6)}"
        maintenance = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
        subprocess.run(["psql", maintenance, "-v", "ON_ERROR_STOP=1", "-q", "-c", f'CREATE DATABASE "{name}"'],
                       check=True, capture_output=True, timeout=60)
        _DATABASES[key] = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    return _DATABASES[key]


def drop_test_databases() -> None:
    """Drops every database this session created (called once at the end)."""
    base = os.environ.get("ENS_IMAGES_TEST_DATABASE_URL")
    if not base:
        return
    maintenance = urllib.parse.urlunsplit(urllib.parse.urlsplit(base)._replace(path="/postgres"))
    for url in _DATABASES.values():
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        subprocess.run(["psql", maintenance, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                       capture_output=True, timeout=60)
    _DATABASES.clear()


def _server_env(ak: Optional[str], secret: Optional[str],
                data_dir: Optional[Path] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # Only the command line decides listen address, data dir and catalog; the root key comes
    # from the environment only when the caller passes one.
    for name in ("ENS_IMAGES_ROOT_ACCESS_KEY_ID", "ENS_IMAGES_ROOT_ACCESS_KEY_SECRET",
                 "ENS_IMAGES_CATALOG", "ENS_IMAGES_LISTEN", "ENS_IMAGES_DATA_DIR",
                 "ENS_IMAGES_IMAGE_BUILD_SECONDS", "ENS_IMAGES_DATABASE_URL"):
        env.pop(name, None)
    # The suite sends thousands of deliberately refused requests from one address and looks
    # each up in the audit; the per-address throttle of refusals and their counting in the
    # audit are tested with their own settings (test_refusals.py).
    env.setdefault("ENS_IMAGES_REFUSAL_BURST", "1000000")
    env.setdefault("ENS_IMAGES_AUDIT_REFUSALS_PER_PERIOD", "1000000")
    if ak is not None:
        env["ENS_IMAGES_ROOT_ACCESS_KEY_ID"] = ak
        env["ENS_IMAGES_ROOT_ACCESS_KEY_SECRET"] = secret
    if BACKEND == "postgres" and data_dir is not None:
        env["ENS_IMAGES_DATABASE_URL"] = database_url_for(data_dir)
    return env


def spawn_server(data_dir: Path, catalog: Optional[Path] = None, ak: Optional[str] = None,
                 secret: Optional[str] = None, log_name: str = "server",
                 build_seconds: Optional[float] = None,
                 extra_args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None) -> ServerProcess:
    """`env`: extra environment variables for the server process only."""
    binary = require_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}.{log_name}.{secrets.token_hex(3)}.stderr.log"
    cmd = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    if catalog is not None:
        cmd += ["--catalog", str(catalog)]
    if build_seconds is not None:
        cmd += ["--image-build-seconds", repr(float(build_seconds))]
    cmd += list(extra_args)
    process_env = _server_env(ak, secret, data_dir)
    process_env.update(env or {})
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=process_env)
    return ServerProcess(proc, data_dir, stderr_path, ak, secret)


def start_server(data_dir: Path, catalog: Optional[Path] = None, ak: Optional[str] = None,
                 secret: Optional[str] = None, log_name: str = "server",
                 build_seconds: Optional[float] = None,
                 extra_args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None) -> ServerProcess:
    server = spawn_server(data_dir, catalog, ak, secret, log_name, build_seconds, extra_args, env)
    server.wait_listening()
    return server


# ---------------------------------------------------------------------------------------
# Generated catalog
# ---------------------------------------------------------------------------------------

CATALOG_SIZE = 137
PLATFORMS = ["centos", "ubuntu", "debian", "alios", "rhel", "windows"]
NODE_PATTERNS: List[Optional[List[str]]] = [
    [NODE_DALIAN],
    [NODE_HANGZHOU],
    [NODE_HANGZHOU, NODE_DALIAN],
    None,  # absent: available on every node the server knows
    [NODE_DALIAN, NODE_HANGZHOU],
]
DUP_NAME = "shared_dup-name"                 # carried by several images
SPECIAL_NAME = "Ubuntu_22.04:lts.x64-v1.2"   # ':' and '.' in a filter value
LONG_NAME = "L" + "o" * 120 + "ng.Name"      # 128 characters, the maximum
assert len(LONG_NAME) == 128


def _catalog_entry(i: int) -> Dict[str, Any]:
    platform = PLATFORMS[i % len(PLATFORMS)]
    size = [20, 40, 100][i % 3]
    image_id = f"{platform}_{i:03d}_x64_{size}G_alibase_2024{(i % 12) + 1:02d}{(i % 28) + 1:02d}"
    if i == 42:
        image_id = "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"
    if i in (1, 10, 100):
        name = f"Alpha-{i}"                   # "Alpha-1" is a prefix of "Alpha-10"/"Alpha-100"
    elif i in (33, 77):
        name = SPECIAL_NAME
    elif i == 91:
        name = LONG_NAME
    elif i % 17 == 5:
        name = DUP_NAME
    else:
        name = f"{platform.capitalize()}_{i}.img-{i % 7}"
    # Non-monotonic creation times: ordering must follow the catalog, not the date.
    created = (_dt.datetime(2017, 12, 8, 12, 10, 3, tzinfo=_dt.timezone.utc)
               + _dt.timedelta(days=(i * 389) % 2000, seconds=i * 61))
    entry: Dict[str, Any] = {
        "ImageId": image_id,
        "ImageName": name,
        "Architecture": "x86_64",
        "Platform": platform,
        # ImageSize may be given as a string or as a number; the API always returns a string.
        "ImageSize": str(size) if i % 2 == 0 else size,
        "CreationTime": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if i % 4 != 3:
        entry["SnapshotId"] = f"sp-conf{(i % 9):02d}snap{(i % 9) * 7:04d}"
    if i % 5 != 4:
        entry["OSType"] = "windows" if platform == "windows" else "linux"
    if i % 3 != 2:
        mappings = [{"Type": "system", "Size": str(size),
                     "Format": "qcow2" if i % 2 == 0 else "raw", "imageId": image_id}]
        if i % 10 == 0:
            mappings.append({"Type": "data", "Size": "100", "Format": "raw", "imageId": image_id})
        entry["DiskDeviceMappings"] = {"DiskDeviceMapping": mappings}
    nodes = NODE_PATTERNS[i % len(NODE_PATTERNS)]
    if nodes is not None:
        entry["EnsRegionIds"] = list(nodes)
    return entry


def make_catalog(count: int = CATALOG_SIZE) -> List[Dict[str, Any]]:
    return [_catalog_entry(i) for i in range(count)]


def write_catalog(path: Path, entries: List[Dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"Images": entries}, indent=1), "utf-8")
    return path


def entry_on_node(entry: Dict[str, Any], node: str) -> bool:
    nodes = entry.get("EnsRegionIds")
    return nodes is None or node in nodes


ANY_NODE = object()


def expected_image(entry: Dict[str, Any], region_filter: Optional[str] = None) -> Dict[str, Any]:
    exp: Dict[str, Any] = {
        "ImageId": entry["ImageId"],
        "ImageName": entry["ImageName"],
        "ImageOwnerAlias": "system",
        "Architecture": entry["Architecture"],
        "Platform": entry["Platform"],
        "ImageSize": str(entry["ImageSize"]),
        "CreationTime": entry["CreationTime"],
    }
    if "SnapshotId" in entry:
        exp["SnapshotId"] = entry["SnapshotId"]
    if region_filter is not None:
        exp["RegionId"] = region_filter
    elif entry.get("EnsRegionIds"):
        exp["RegionId"] = entry["EnsRegionIds"][0]
    else:
        exp["RegionId"] = ANY_NODE
    if "DiskDeviceMappings" in entry:
        exp["DiskDeviceMappings"] = entry["DiskDeviceMappings"]
    return exp


# ---------------------------------------------------------------------------------------
# Strict response checks
# ---------------------------------------------------------------------------------------


def assert_no_nulls(value: Any, path: str = "$") -> None:
    """The protocol says: omit absent fields, never send null."""
    assert value is not None, f"null value at {path}"
    if isinstance(value, dict):
        for k, v in value.items():
            assert_no_nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for n, v in enumerate(value):
            assert_no_nulls(v, f"{path}[{n}]")


def assert_request_id(rid: Any) -> None:
    assert isinstance(rid, str), f"RequestId must be a string, got {rid!r}"
    assert UUID_UPPER_RE.match(rid), f"RequestId must be an upper-case UUID, got {rid!r}"


def is_int(v: Any) -> bool:
    return type(v) is int  # bool is not an int here


def check_describe_envelope(body: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Strict JSON typing of a DescribeImages success body; returns the image list."""
    assert isinstance(body, dict), body
    assert_no_nulls(body)
    assert_request_id(body.get("RequestId"))
    assert body.get("Code") == 0 and is_int(body.get("Code")), \
        f"Code must be the integer 0, got {body.get('Code')!r}"
    for key in ("PageNumber", "PageSize", "TotalCount"):
        assert is_int(body.get(key)), f"{key} must be a JSON integer, got {body.get(key)!r}"
    images = body.get("Images")
    assert isinstance(images, dict) and set(images) == {"Image"}, \
        f'Images must be {{"Image": [...]}}, got {images!r}'
    image_list = images["Image"]
    assert isinstance(image_list, list), image_list
    for img in image_list:
        check_image_types(img)
    return image_list


def check_image_types(img: Dict[str, Any]) -> None:
    assert isinstance(img, dict), img
    for key in ("ImageId", "ImageName", "ImageOwnerAlias", "Architecture", "Platform",
                "ImageSize", "CreationTime", "RegionId"):
        assert isinstance(img.get(key), str) and img[key] != "", \
            f"image field {key} must be a non-empty string, got {img.get(key)!r} in {img!r}"
    if "SnapshotId" in img:
        assert isinstance(img["SnapshotId"], str) and img["SnapshotId"], img
    if "DiskDeviceMappings" in img:
        ddm = img["DiskDeviceMappings"]
        assert isinstance(ddm, dict) and set(ddm) == {"DiskDeviceMapping"}, ddm
        assert isinstance(ddm["DiskDeviceMapping"], list), ddm
        for m in ddm["DiskDeviceMapping"]:
            for key in ("Type", "Size", "Format", "imageId"):
                assert isinstance(m.get(key), str), f"DiskDeviceMapping.{key} must be a string: {m!r}"


def assert_image_matches(actual: Dict[str, Any], expected: Dict[str, Any]) -> None:
    for key, exp in expected.items():
        assert key in actual, f"field {key} missing from {actual!r}"
        if exp is ANY_NODE:  # node-less entry: any node the server knows
            assert isinstance(actual[key], str) and actual[key], actual
            continue
        assert actual[key] == exp, \
            f"{expected['ImageId']}: field {key} = {actual[key]!r}, expected {exp!r}"
    if "SnapshotId" not in expected:
        assert "SnapshotId" not in actual, \
            f"{expected['ImageId']}: SnapshotId must be omitted when absent, got {actual!r}"


# ---------------------------------------------------------------------------------------
# SDK flavours
# ---------------------------------------------------------------------------------------

TEA_FIELD = {
    "EnsRegionId": "ens_region_id",
    "ImageId": "image_id",
    "ImageName": "image_name",
    "PageNumber": "page_number",
    "PageSize": "page_size",
    "SnapshotId": "snapshot_id",
    "Status": "status",
}


@dataclass
class ApiError:
    code: Any
    status: Optional[int]
    request_id: Optional[str]
    message: Any
    data: Optional[Dict[str, Any]] = None
    exc: Any = field(default=None, repr=False)


class RecordingTeaClient(TeaEnsClient):
    """The generated ENS client, recording the raw dict that call_api returned."""

    last_raw: Optional[Dict[str, Any]] = None

    def call_api(self, params, request, runtime):
        result = super().call_api(params, request, runtime)
        self.last_raw = result
        return result


class Flavor:
    name = "?"

    def __init__(self, host: str, ak: str, secret: str):
        self.host, self.ak, self.secret = host, ak, secret

    def with_credentials(self, ak: str, secret: str) -> "Flavor":
        return type(self)(self.host, ak, secret)

    # subclasses: describe(**params) -> raw JSON dict; call(action, version, query) -> dict;
    # error_of(fn) -> ApiError; patch_timestamp / patch_nonce

    def describe_error(self, **params) -> ApiError:
        return self.error_of(lambda: self.describe(**params))

    def call_error(self, action: str, version: str = API_VERSION, **query) -> ApiError:
        return self.error_of(lambda: self.call(action, version, **query))

    def op(self, action: str, **params) -> Dict[str, Any]:
        """One image-family operation through the SDK's own typed request for `action`
        (Tea: <Action>Request model + <action>_with_options; core: aliyunsdkens
        <Action>Request setters). Params use the wire names. Returns the raw JSON body,
        already checked strictly against the Tea response model (check_response_model)."""
        body = self._op(action, params)
        check_response_model(action, body)
        return body

    def op_error(self, action: str, **params) -> ApiError:
        return self.error_of(lambda: self._op(action, params))

    def walk(self, page_size: Optional[int], **filters) -> List[Dict[str, Any]]:
        """All pages of a query; returns the list of response bodies."""
        bodies = []
        page = 1
        while True:
            params = dict(filters, PageNumber=str(page))
            if page_size is not None:
                params["PageSize"] = str(page_size)
            body = self.describe(**params)
            bodies.append(body)
            if not body["Images"]["Image"]:
                return bodies
            page += 1
            assert page < 1000, "runaway pagination"


class TeaFlavor(Flavor):
    algorithm: Optional[str] = None

    def __init__(self, host: str, ak: str, secret: str):
        super().__init__(host, ak, secret)
        config = TeaConfig(access_key_id=ak, access_key_secret=secret, endpoint=host,
                           protocol="http", region_id="cn-hangzhou")
        if self.algorithm:
            config.signature_algorithm = self.algorithm
        self.client = RecordingTeaClient(config)
        self.last_headers: Dict[str, str] = {}

    def describe(self, **params) -> Dict[str, Any]:
        request = ens_models.DescribeImagesRequest(**{TEA_FIELD[k]: v for k, v in params.items()})
        self.client.last_raw = None
        response = self.client.describe_images_with_options(request, RuntimeOptions())
        raw = self.client.last_raw
        assert raw is not None
        assert response.status_code == 200, response.status_code
        self.last_headers = dict(response.headers or {})
        body = raw["body"]
        # The generated model must have parsed the same data.
        model = response.body
        assert model.request_id == body.get("RequestId")
        assert model.total_count == body.get("TotalCount")
        assert model.page_number == body.get("PageNumber")
        assert model.page_size == body.get("PageSize")
        if isinstance(body.get("Images"), dict) and isinstance(body["Images"].get("Image"), list):
            assert [i.image_id for i in (model.images.image or [])] == \
                [i.get("ImageId") for i in body["Images"]["Image"]]
        return body

    def _op(self, action: str, params: Dict[str, Any]) -> Dict[str, Any]:
        request = getattr(ens_models, f"{action}Request")().from_map(dict(params))
        method = getattr(self.client, f"{snake_case(action)}_with_options")
        self.client.last_raw = None
        response = method(request, RuntimeOptions())
        raw = self.client.last_raw
        assert raw is not None
        assert response.status_code == 200, response.status_code
        body = raw["body"]
        assert isinstance(body, dict), body
        # The generated response model parsed exactly the same data.
        assert response.body.to_map() == body, \
            f"[{self.name}] {action}: SDK model view differs from the raw body"
        return body

    def call(self, action: str, version: str = API_VERSION, **query) -> Dict[str, Any]:
        params = Params(action=action, version=version, protocol="HTTPS", pathname="/",
                        method="POST", auth_type="AK", style="RPC", req_body_type="formData",
                        body_type="json")
        result = self.client.call_api(params, OpenApiRequest(query=TeaUtils.query(query)),
                                      RuntimeOptions())
        return result["body"]

    def error_of(self, fn: Callable[[], Any]) -> ApiError:
        try:
            result = fn()
        except tea_exceptions.AlibabaCloudException as e:
            return ApiError(code=e.code, status=e.status_code, request_id=e.request_id,
                            message=e.message, data=e.data, exc=e)
        raise AssertionError(f"[{self.name}] expected an API error, got success: {result!r}")

    def patch_timestamp(self, monkeypatch, value: str) -> None:
        monkeypatch.setattr(TeaUtils, "get_timestamp", staticmethod(lambda: value))

    def patch_nonce(self, monkeypatch, value: str) -> None:
        monkeypatch.setattr(TeaUtils, "get_nonce", staticmethod(lambda: value))


class TeaV3Flavor(TeaFlavor):
    name = "tea_v3"
    algorithm = None  # SDK default: ACS3-HMAC-SHA256


class TeaV2Flavor(TeaFlavor):
    name = "tea_v2"
    algorithm = "v2"  # classic RPC signature V1 (HMAC-SHA1)


class TeaSm3Flavor(TeaFlavor):
    """Not part of the main matrix: Tea with Config(signature_algorithm='ACS3-HMAC-SM3')."""
    name = "tea_sm3"
    algorithm = "ACS3-HMAC-SM3"


class CoreFlavor(Flavor):
    name = "core"

    def __init__(self, host: str, ak: str, secret: str):
        super().__init__(host, ak, secret)
        self.client = AcsClient(ak, secret, "cn-hangzhou")

    def new_request(self, **params) -> CoreDescribeImagesRequest:
        request = CoreDescribeImagesRequest()
        request.set_endpoint(self.host)
        request.set_protocol_type("http")
        for key, value in params.items():
            getattr(request, f"set_{key}")(value)
        return request

    def describe(self, **params) -> Dict[str, Any]:
        body = self.client.do_action_with_exception(self.new_request(**params))
        return json.loads(body)

    def _op(self, action: str, params: Dict[str, Any]) -> Dict[str, Any]:
        module = importlib.import_module(f"aliyunsdkens.request.v20171110.{action}Request")
        request = getattr(module, f"{action}Request")()
        request.set_endpoint(self.host)
        request.set_protocol_type("http")
        for key, value in params.items():
            getattr(request, f"set_{key}")(value)
        return json.loads(self.client.do_action_with_exception(request))

    def call(self, action: str, version: str = API_VERSION, **query) -> Dict[str, Any]:
        request = CommonRequest(domain=self.host, version=version, action_name=action,
                                product="Ens")
        request.set_protocol_type("http")
        request.set_method("POST")
        for key, value in query.items():
            request.add_query_param(key, value)
        return json.loads(self.client.do_action_with_exception(request))

    def error_of(self, fn: Callable[[], Any]) -> ApiError:
        try:
            result = fn()
        except CoreServerException as e:
            return ApiError(code=e.get_error_code(), status=e.get_http_status(),
                            request_id=e.get_request_id(), message=e.get_error_msg(), exc=e)
        except CoreClientException as e:
            raise AssertionError(f"[core] SDK-side ClientException instead of a server error: {e}")
        raise AssertionError(f"[core] expected an API error, got success: {result!r}")

    def patch_timestamp(self, monkeypatch, value: str) -> None:
        monkeypatch.setattr(core_parameter_helper, "get_iso_8061_date", lambda: value)

    def patch_nonce(self, monkeypatch, value: str) -> None:
        monkeypatch.setattr(core_parameter_helper, "get_uuid", lambda: value)


FLAVORS = {cls.name: cls for cls in (TeaV3Flavor, TeaV2Flavor, CoreFlavor)}


def make_flavor(name: str, host: str, ak: str, secret: str) -> Flavor:
    return FLAVORS[name](host, ak, secret)


def assert_api_error(err: ApiError, code: str, status: int, flavor: Optional[Flavor] = None) -> None:
    who = f"[{flavor.name}] " if flavor else ""
    assert err.code == code, f"{who}expected error code {code}, got {err!r}"
    assert err.status == status, f"{who}expected HTTP {status} for {code}, got {err!r}"
    assert_request_id(err.request_id)


# ---------------------------------------------------------------------------------------
# Raw signed requests (what no SDK sends)
# ---------------------------------------------------------------------------------------


def utc_timestamp(offset_seconds: float = 0) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pe(value: str) -> str:
    """RFC 3986 percent-encoding (protocol.md section 4.2)."""
    return urllib.parse.quote(value, safe="-_.~", encoding="utf-8")


def encode_query(params: Dict[str, str]) -> str:
    return "&".join(f"{pe(k)}={pe(v)}" for k, v in params.items())


def v1_params(ak: str, secret: str, method: str = "POST", action: str = "DescribeImages",
              version: str = API_VERSION, extra: Optional[Dict[str, str]] = None,
              omit: tuple = (), body: Optional[Dict[str, str]] = None,
              fmt: Optional[str] = None, timestamp: Optional[str] = None) -> Dict[str, str]:
    """Common + business params for a V1 request, signed with the Tea SDK's own V1 helper
    (Utils.get_rpcsignature). `body` params are signed too but not returned."""
    params: Dict[str, str] = {
        "Action": action,
        "Version": version,
        "AccessKeyId": ak,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": timestamp or utc_timestamp(),
    }
    if fmt is not None:
        params["Format"] = fmt
    params.update(extra or {})
    for name in omit:
        params.pop(name, None)
    signed = dict(params)
    signed.update(body or {})
    params["Signature"] = TeaUtils.get_rpcsignature(signed, method, secret)
    return params


@dataclass
class RawResponse:
    status: int
    headers: Dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Dict[str, Any]:
        return json.loads(self.body.decode("utf-8"))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def raw_request(host: str, method: str, target: str, headers: Optional[Dict[str, str]] = None,
                body: Optional[bytes] = None, timeout: float = 15.0) -> RawResponse:
    hostname, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def raw_v1(host: str, ak: str, secret: str, method: str = "POST",
           body: Optional[Dict[str, str]] = None, path: str = "/",
           headers: Optional[Dict[str, str]] = None, **kwargs) -> RawResponse:
    params = v1_params(ak, secret, method=method, body=body, **kwargs)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = encode_query(body).encode("ascii")
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    return raw_request(host, method, f"{path}?{encode_query(params)}", hdrs, data)


def v3_headers(host: str, ak: str, secret: str, query: Dict[str, str],
               action: str = "DescribeImages", version: str = API_VERSION,
               unsigned: tuple = (), algorithm: str = "ACS3-HMAC-SHA256",
               method: str = "POST") -> Dict[str, str]:
    """Headers of a V3 request signed with the Tea SDK's own helper (Utils.get_authorization).
    Headers named in `unsigned` are sent but left out of SignedHeaders."""
    payload_hash = TeaUtils.hash(b"", algorithm).hex()
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": utc_timestamp(),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": payload_hash,
    }
    to_sign = {k: v for k, v in headers.items() if k not in unsigned}
    request = SimpleNamespace(method=method, pathname="/", query=dict(query), headers=to_sign)
    headers["Authorization"] = TeaUtils.get_authorization(request, algorithm, payload_hash, ak, secret)
    return headers


def raw_v3(host: str, ak: str, secret: str, query: Dict[str, str], method: str = "POST",
           **kwargs) -> RawResponse:
    headers = v3_headers(host, ak, secret, query, method=method, **kwargs)
    target = "/" + (("?" + encode_query(query)) if query else "")
    return raw_request(host, method, target, headers, b"" if method == "POST" else None)


def check_json_error(resp: RawResponse, code: str, status: int) -> Dict[str, Any]:
    assert resp.status == status, \
        f"expected HTTP {status} {code}, got {resp.status}: {resp.body[:500]!r}"
    assert resp.content_type.replace(" ", "").lower().startswith("application/json"), \
        f"error body must be JSON, got content-type {resp.content_type!r}"
    body = resp.json()
    check_error_envelope(body)
    assert body["Code"] == code, f"expected code {code}, got {body!r}"
    return body


def check_error_envelope(body: Dict[str, Any]) -> None:
    for key in ("RequestId", "HostId", "Code", "Message", "Recommend"):
        assert isinstance(body.get(key), str), f"error field {key} must be a string: {body!r}"
    assert_request_id(body["RequestId"])
    assert body["Message"], body


# ---------------------------------------------------------------------------------------
# Image family (CreateImage, DeleteImage, ModifyImageAttribute, DescribeSelfImages,
# DescribeImageInfos, Describe/ModifyImageSharePermission): strict model checks and the
# `ens-images admin` CLI (accounts, keys, instances, snapshots)
# ---------------------------------------------------------------------------------------

CUSTOM_IMAGE_ID_RE = re.compile(r"^m-[0-9a-z]{25}$")
ACCOUNT_ID_RE = re.compile(r"^[0-9]+$")
BUILDING_STATUSES = ("Creating", "Packing", "Uploading")
FAILED_STATUSES = ("Pack_failed", "Upload_failed")


def snake_case(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


_SCALAR_TYPES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


def _check_model_attrs(obj: Any, path: str) -> None:
    """Every attribute the generated model declares must hold the declared JSON type."""
    params = inspect.signature(type(obj).__init__).parameters
    for name, param in params.items():
        if name == "self":
            continue
        value = getattr(obj, name, None)
        if value is None:
            continue
        _check_annotated(value, str(param.annotation), f"{path}.{name}")


def _check_annotated(value: Any, annotation: str, path: str) -> None:
    if annotation in _SCALAR_TYPES:
        allowed = _SCALAR_TYPES[annotation]
        ok = isinstance(value, allowed) and not (annotation in ("int", "float")
                                                  and isinstance(value, bool))
        assert ok, f"{path}: the SDK model declares {annotation}, got {type(value).__name__} " \
                   f"{value!r}"
    elif annotation.startswith("List[") and annotation.endswith("]"):
        assert isinstance(value, list), f"{path}: the SDK model declares a list, got {value!r}"
        for n, item in enumerate(value):
            _check_annotated(item, annotation[5:-1], f"{path}[{n}]")
    elif annotation.startswith("main_models."):
        _check_model_attrs(value, path)
    elif annotation.startswith("Dict["):
        assert isinstance(value, dict), f"{path}: the SDK model declares a dict, got {value!r}"
    else:  # pragma: no cover - an annotation this checker does not know
        raise AssertionError(f"{path}: unknown SDK annotation {annotation!r}")


def check_response_model(action: str, body: Dict[str, Any]) -> Any:
    """Strict check of a success body against <Action>ResponseBody of alibabacloud_ens20171110:
    no nulls, an upper-case UUID RequestId, no field the model does not know (a from_map /
    to_map round trip must give the body back), and every field of the JSON type the model
    declares. Returns the parsed model."""
    assert isinstance(body, dict), body
    assert_no_nulls(body)
    assert_request_id(body.get("RequestId"))
    model_cls = getattr(ens_models, f"{action}ResponseBody")
    try:
        model = model_cls().from_map(body)
    except (AttributeError, TypeError) as e:
        raise AssertionError(f"{action}: body does not fit the SDK model ({e}): {body!r}")
    round_trip = model.to_map()
    assert round_trip == body, (f"{action}: body holds fields or shapes the SDK model "
                                f"{model_cls.__name__} does not know:\n body={body!r}\n"
                                f" model={round_trip!r}")
    _check_model_attrs(model, action)
    return model


def check_code_zero(body: Dict[str, Any]) -> None:
    assert body.get("Code") == 0 and is_int(body.get("Code")), \
        f"Code must be the integer 0, got {body.get('Code')!r} in {body!r}"


def check_self_images_body(body: Dict[str, Any]) -> List[Dict[str, Any]]:
    """DescribeSelfImages: the pagination echo is made of strings (images-api.md 3)."""
    check_response_model("DescribeSelfImages", body)
    check_code_zero(body)
    for key in ("PageNumber", "PageSize", "TotalCount"):
        value = body.get(key)
        assert isinstance(value, str) and re.fullmatch(r"[0-9]+", value), \
            f"DescribeSelfImages {key} must be a decimal string, got {value!r}"
    assert isinstance(body.get("Images"), dict) and set(body["Images"]) == {"Image"}, body
    images = body["Images"]["Image"]
    for img in images:
        for key in ("ImageId", "ImageName", "ImageOwnerAlias", "Status", "Architecture",
                    "Platform", "OsVersion", "ComputeType", "ImageSize", "ImageStorageSize",
                    "RegionId", "CreationTime"):
            assert isinstance(img.get(key), str) and img[key] != "", \
                f"DescribeSelfImages image field {key} must be a non-empty string: {img!r}"
        assert img["ImageOwnerAlias"] in ("self", "others"), img
        assert re.fullmatch(r"[0-9]+", img["ImageSize"]), img
        assert re.fullmatch(r"[0-9]+", img["ImageStorageSize"]), img
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", img["CreationTime"]), img
    return images


def check_share_permission_body(body: Dict[str, Any]) -> List[str]:
    check_response_model("DescribeImageSharePermission", body)
    assert "Code" not in body, f"DescribeImageSharePermission has no Code field: {body!r}"
    for key in ("PageNumber", "PageSize", "TotalCount"):
        assert is_int(body.get(key)), f"{key} must be a JSON integer, got {body.get(key)!r}"
    assert isinstance(body.get("ImageId"), str), body
    accounts = body.get("Accounts")
    assert isinstance(accounts, dict) and set(accounts) == {"Account"}, body
    uids = []
    for acc in accounts["Account"]:
        assert set(acc) == {"AliyunUid"}, acc
        assert isinstance(acc["AliyunUid"], str) and ACCOUNT_ID_RE.match(acc["AliyunUid"]), acc
        uids.append(acc["AliyunUid"])
    return uids


class Admin:
    """`ens-images admin --data-dir DIR ...`: works on the store while the server runs."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)

    def run(self, *args: str) -> Any:
        cmd = [str(require_binary()), "admin", "--data-dir", str(self.data_dir), *map(str, args)]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                env=_server_env(None, None, self.data_dir), timeout=60)
        assert result.returncode == 0, (f"{' '.join(cmd[1:])} failed (rc={result.returncode})\n"
                                        f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"{' '.join(cmd[1:])} did not print JSON: {result.stdout!r}")

    @staticmethod
    def _flags(options: Dict[str, Any]) -> List[str]:
        out: List[str] = []
        for key, value in options.items():
            if value is None:
                continue
            flag = "--" + key.replace("_", "-")
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                out += [flag, str(item)]
        return out

    def create_account(self) -> Dict[str, Any]:
        acc = self.run("account", "create")
        for key in ("AccountId", "AccessKeyId", "AccessKeySecret"):
            assert isinstance(acc.get(key), str) and acc[key], acc
        return acc

    def accounts(self) -> List[Dict[str, Any]]:
        return self.run("account", "list")

    def root_account_id(self) -> str:
        return str(self.accounts()[0]["AccountId"])

    def add_instance(self, account: str, node: str = NODE_DALIAN, **options) -> Dict[str, Any]:
        return self.run("instance", "add", "--account", account, "--node", node,
                        *self._flags(options))

    def add_snapshot(self, account: str, node: str = NODE_DALIAN, **options) -> Dict[str, Any]:
        return self.run("snapshot", "add", "--account", account, "--node", node,
                        *self._flags(options))

    def instances(self) -> List[Dict[str, Any]]:
        return self.run("instance", "list")

    def snapshots(self) -> List[Dict[str, Any]]:
        return self.run("snapshot", "list")


@dataclass
class Tenant:
    """One account of a test server, with its key."""
    account_id: str
    ak: str
    secret: str

    def sdk(self, host: str, flavor: str = "tea_v3") -> Flavor:
        return make_flavor(flavor, host, self.ak, self.secret)


def wait_status(sdk: Flavor, image_id: str, wanted, timeout: float = 20.0,
                interval: float = 0.02) -> List[str]:
    """Polls DescribeSelfImages(ImageId) until Status is in `wanted`; returns the distinct
    statuses observed in order (consecutive repeats folded)."""
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while True:
        images = [i for i in check_self_images_body(sdk.op("DescribeSelfImages", ImageId=image_id,
                                                              PageSize="50"))
                  if i["ImageId"] == image_id]
        assert len(images) == 1, f"{image_id} must be listed once, got {images!r}"
        status = images[0]["Status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in wanted:
            return seen
        assert time.monotonic() < deadline, \
            f"{image_id} did not reach {wanted} within {timeout}s; statuses seen: {seen}"
        time.sleep(interval)


def make_family_catalog() -> Dict[str, Any]:
    """A small public catalog with every optional field set, for the image-family servers."""
    def entry(image_id, name, platform, os_type, os_version, size, nodes=None, compute="ens_vm",
              snapshot=None, data_disk=None):
        disks = [{"Type": "system", "Size": str(size), "Format": "qcow2", "imageId": image_id}]
        if data_disk:
            disks.append({"Type": "data", "Size": str(data_disk), "Format": "raw",
                          "imageId": image_id})
        e = {"ImageId": image_id, "ImageName": name, "Architecture": "x86_64",
             "Platform": platform, "OSType": os_type, "OSVersion": os_version,
             "ComputeType": compute, "Description": f"Public {name} image (conformance)",
             "ImageSize": str(size), "CreationTime": "2021-03-04T05:06:07Z",
             "DiskDeviceMappings": {"DiskDeviceMapping": disks}}
        if snapshot:
            e["SnapshotId"] = snapshot
        if nodes:
            e["EnsRegionIds"] = list(nodes)
        return e

    images = [
        entry("centos_7_9_x64_40G_conf_20230815", "CentOS_7.9", "centos", "linux", "7.9", 40,
              [NODE_DALIAN], snapshot="sp-confcentos79snap0001"),
        entry("ubuntu_22_04_x64_20G_conf_20240130", "Ubuntu_22.04", "ubuntu", "linux", "22.04",
              20, [NODE_HANGZHOU, NODE_DALIAN]),
        entry("win2019_1809_x64_40G_conf_20230811", "Windows_2019", "windows", "windows", "2019",
              40, None, data_disk=100),
        entry("debian_11_x64_20G_conf_20240308", "Debian_11", "debian", "linux", "11", 20,
              [NODE_HANGZHOU], compute="arm_vm"),
        entry("win2022_x64_50G_conf_20240601", "Windows_2022", "windows", "windows", "2022", 50,
              [NODE_DALIAN]),
        entry("alinux_3_x64_20G_conf_20240528", "Alinux_3", "alios", "linux", "3", 20, None),
    ]
    return {"EnsRegionIds": [NODE_DALIAN, NODE_HANGZHOU], "Images": images}


class World:
    """A private server for image-family tests: own data dir, family catalog, root key, the
    admin CLI, and fresh accounts on demand (a fresh account sees only what the test made)."""

    def __init__(self, base: Path, build_seconds: float = 0, log_name: str = "world",
                 catalog: Optional[Dict[str, Any]] = None, extra_args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None):
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.catalog = catalog if catalog is not None else make_family_catalog()
        self.catalog_path = self.base / "catalog.json"
        self.catalog_path.write_text(json.dumps(self.catalog, indent=1), "utf-8")
        self.build_seconds = build_seconds
        self.ak, self.secret = new_access_key()
        self.log_name = log_name
        # Further `serve` options and server environment, kept for every restart.
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.server = start_server(self.data_dir, catalog=self.catalog_path, ak=self.ak,
                                   secret=self.secret, log_name=log_name,
                                   build_seconds=build_seconds, extra_args=self.extra_args,
                                   env=self.env)
        self.admin = Admin(self.data_dir)
        root = [a for a in self.admin.accounts() if self.ak in a.get("AccessKeyIds", [])]
        assert len(root) == 1, f"root key {self.ak} must belong to exactly one account"
        self.root = Tenant(str(root[0]["AccountId"]), self.ak, self.secret)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def public_ids(self) -> List[str]:
        return [e["ImageId"] for e in self.catalog["Images"]]

    def restart(self, kill: bool = False, build_seconds: Optional[float] = None,
                log_name: Optional[str] = None) -> ServerProcess:
        """Stops (SIGTERM, or SIGKILL when kill=True) and starts again on the same data dir
        (no catalog option and no root key in the environment the second time)."""
        if kill:
            self.server.kill9()
        else:
            self.server.stop()
        if build_seconds is not None:
            self.build_seconds = build_seconds
        self.server = start_server(self.data_dir, catalog=None, ak=None, secret=None,
                                   log_name=log_name or f"{self.log_name}-again",
                                   build_seconds=self.build_seconds,
                                   extra_args=self.extra_args, env=self.env)
        return self.server

    def stop(self) -> None:
        self.server.stop()

    def new_tenant(self) -> Tenant:
        acc = self.admin.create_account()
        return Tenant(str(acc["AccountId"]), acc["AccessKeyId"], acc["AccessKeySecret"])

    def sdk(self, tenant: Tenant, flavor: str = "tea_v3") -> Flavor:
        return make_flavor(flavor, self.host, tenant.ak, tenant.secret)

    def instance(self, tenant: Tenant, node: str = NODE_DALIAN, **options) -> str:
        inst = self.admin.add_instance(tenant.account_id, node, **options)
        assert isinstance(inst.get("InstanceId"), str) and inst["InstanceId"].startswith("i-"), inst
        return inst["InstanceId"]

    def snapshot(self, tenant: Tenant, node: str = NODE_DALIAN, **options) -> str:
        snap = self.admin.add_snapshot(tenant.account_id, node, **options)
        assert isinstance(snap.get("SnapshotId"), str) and snap["SnapshotId"].startswith("sp-"), snap
        return snap["SnapshotId"]

    def create_image(self, sdk: Flavor, tenant: Tenant, name: Optional[str] = None,
                     **params) -> str:
        """CreateImage (from a fresh instance of `tenant` unless a source is given)."""
        if "InstanceId" not in params and "SnapshotId" not in params:
            params["InstanceId"] = self.instance(tenant)
        params["ImageName"] = name or f"img-{secrets.token_hex(4)}"
        body = sdk.op("CreateImage", **params)
        check_code_zero(body)
        image_id = body.get("ImageId")
        assert isinstance(image_id, str) and CUSTOM_IMAGE_ID_RE.match(image_id), \
            f"ImageId must be m- + 25 lower-case alphanumerics, got {image_id!r}"
        return image_id


def self_images(sdk: Flavor, page_size: int = 50, **filters) -> List[Dict[str, Any]]:
    """Every DescribeSelfImages page (strictly checked); the images of all pages in order."""
    out: List[Dict[str, Any]] = []
    page = 1
    while True:
        body = sdk.op("DescribeSelfImages", PageNumber=str(page), PageSize=str(page_size), **filters)
        images = check_self_images_body(body)
        total = int(body["TotalCount"])
        out.extend(images)
        if not images or len(out) >= total:
            assert len(out) == total, f"pages hold {len(out)} images, TotalCount says {total}"
            return out
        page += 1
        assert page < 1000, "runaway pagination"


def all_images(sdk: Flavor, page_size: int = 50, **filters) -> List[Dict[str, Any]]:
    """Every DescribeImages page (strictly checked); checks TotalCount against the pages."""
    out: List[Dict[str, Any]] = []
    page = 1
    totals = set()
    while True:
        body = sdk.op("DescribeImages", PageNumber=str(page), PageSize=str(page_size), **filters)
        images = check_describe_envelope(body)
        totals.add(body["TotalCount"])
        out.extend(images)
        if not images:
            break
        page += 1
        assert page < 1000, "runaway pagination"
    assert totals == {len(out)}, f"TotalCount {sorted(totals)} but the pages hold {len(out)} images"
    return out


def expect_error(sdk: Flavor, action: str, code: str, status: int = 400,
                 message_contains: Optional[str] = None, **params) -> ApiError:
    """Runs `action` through the SDK's typed request and checks the SDK exception."""
    err = sdk.op_error(action, **params)
    assert_api_error(err, code, status, sdk)
    if isinstance(err.data, dict):  # Tea keeps the whole error body
        check_error_envelope(err.data)
        assert err.data["Code"] == code and err.data["RequestId"] == err.request_id, err.data
    if message_contains is not None:
        assert message_contains.lower() in str(err.message).lower(), \
            f"[{sdk.name}] {action} {code}: message should mention {message_contains!r}: " \
            f"{err.message!r}"
    return err


def assert_forward(seen: List[str], walk: List[str]) -> None:
    """`seen` (consecutive repeats folded) only moves forward along `walk`: every status is
    on the walk, none repeats and none goes back (skipping is allowed)."""
    positions = []
    for status in seen:
        assert status in walk, f"status {status!r} is not on the walk {walk}: saw {seen}"
        positions.append(walk.index(status))
    assert positions == sorted(set(positions)), \
        f"statuses must only move forward along {walk} without repeating: saw {seen}"
