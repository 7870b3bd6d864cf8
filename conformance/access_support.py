"""Helpers for the access-control and transport conformance tests (test_access_control.py,
test_transport.py).

* AclServer / start_acl_server: `ens-images serve` with the access-control options (TLS,
  rate limit, master key) on a random port; understands `listening on http(s)://ADDR`.
* AdminCli: the `ens-images admin` commands for RAM users, AccessKeys, policies and the
  audit log, able to run a command that is expected to fail.
* AclWorld: one server + admin + root principal; RAM users with policies in one call.
* sdk(): the three official SDK flavours of ens_support, optionally over HTTPS with a CA
  bundle and/or carrying an STS security token.
* self_signed_cert(): a throw-away certificate for 127.0.0.1 made with the openssl CLI.
"""
from __future__ import annotations

import datetime as _dt
import http.client
import importlib
import json
import queue
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from darabonba.core import DaraCore

from ens_support import (
    NODE_DALIAN,
    CoreFlavor,
    Flavor,
    RawResponse,
    RecordingTeaClient,
    ServerProcess,
    TeaConfig,
    TeaFlavor,
    _server_env,
    ApiError,
    check_code_zero,
    encode_query,
    expect_error,
    make_flavor,
    new_access_key,
    self_images as all_self_images,
    require_binary,
    v1_params,
)

LISTEN_RE = re.compile(r"listening on (https?)://(\S+)")
ALL_FLAVORS = ("tea_v3", "tea_v2", "core")

# Variables of `serve`/`admin` that only the test may decide.
_ACL_ENV = ("ENS_IMAGES_MASTER_KEY", "ENS_IMAGES_MASTER_KEY_FILE", "ENS_IMAGES_RATE_LIMIT",
            "ENS_IMAGES_RATE_BURST", "ENS_IMAGES_TLS_CERT", "ENS_IMAGES_TLS_KEY",
            "ALIBABA_CLOUD_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def acl_env(ak: Optional[str] = None, secret: Optional[str] = None,
            extra: Optional[Dict[str, str]] = None, data_dir: Optional[Path] = None) -> Dict[str, str]:
    env = _server_env(ak, secret, data_dir)
    for name in _ACL_ENV:
        env.pop(name, None)
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------


class AclServer(ServerProcess):
    """A ServerProcess that also accepts `listening on https://ADDR`."""

    scheme: Optional[str] = None

    def wait_listening(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise AssertionError(f"server did not print 'listening on ...' within {timeout}s\n"
                                     + self.describe_output())
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise AssertionError(f"server exited (rc={self.proc.returncode}) before it was "
                                     f"ready\n" + self.describe_output())
            match = LISTEN_RE.search(line)
            if match:
                self.scheme = match.group(1)
                self.host = match.group(2).rstrip("/")
                return self.host

    def output_bytes(self) -> bytes:
        """Everything the process wrote so far (stdout + stderr)."""
        return self.stdout_text().encode("utf-8") + self.stderr_path.read_bytes()


def start_acl_server(data_dir: Path, *, ak: Optional[str] = None, secret: Optional[str] = None,
                     tls: Optional[Tuple[Path, Path]] = None, rate_limit: Optional[float] = None,
                     rate_burst: Optional[int] = None, build_seconds: Optional[float] = 0,
                     env_extra: Optional[Dict[str, str]] = None,
                     log_name: str = "acl") -> AclServer:
    binary = require_binary()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}.{log_name}.{secrets.token_hex(3)}.stderr.log"
    cmd = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    if build_seconds is not None:
        cmd += ["--image-build-seconds", repr(float(build_seconds))]
    if tls is not None:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if rate_limit is not None:
        cmd += ["--rate-limit", str(rate_limit)]
    if rate_burst is not None:
        cmd += ["--rate-burst", str(rate_burst)]
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=acl_env(ak, secret, env_extra, data_dir))
    server = AclServer(proc, data_dir, stderr_path, ak, secret)
    server.wait_listening()
    return server


# ---------------------------------------------------------------------------------------
# Admin CLI
# ---------------------------------------------------------------------------------------


@dataclass
class Principal:
    """Who signs: an account's owner (user_name None) or a RAM user, with one AccessKey."""
    account_id: str
    ak: str
    secret: str
    user_name: Optional[str] = None


class AdminCli:
    """`ens-images admin --data-dir DIR ...`."""

    def __init__(self, data_dir: Path, env_extra: Optional[Dict[str, str]] = None):
        self.data_dir = Path(data_dir)
        self.env_extra = env_extra or {}
        self.outputs: List[bytes] = []  # everything every command printed (secret checks)

    def raw(self, *args: Any) -> subprocess.CompletedProcess:
        cmd = [str(require_binary()), "admin", "--data-dir", str(self.data_dir),
               *map(str, args)]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                env=acl_env(extra=self.env_extra, data_dir=self.data_dir), timeout=60)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def run(self, *args: Any) -> Any:
        result = self.raw(*args)
        assert result.returncode == 0, (f"admin {' '.join(map(str, args))} failed "
                                        f"(rc={result.returncode})\nstdout: {result.stdout!r}\n"
                                        f"stderr: {result.stderr!r}")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"admin {' '.join(map(str, args))} did not print JSON: "
                                 f"{result.stdout!r}")

    def fail(self, *args: Any) -> str:
        """Runs a command that must be refused; returns its stdout+stderr text."""
        result = self.raw(*args)
        assert result.returncode != 0, (f"admin {' '.join(map(str, args))} should have been "
                                        f"refused, but succeeded: {result.stdout!r}")
        return (result.stdout + result.stderr).decode("utf-8", "replace")

    # accounts ---------------------------------------------------------------------------
    def accounts(self) -> List[Dict[str, Any]]:
        return self.run("account", "list")

    def create_account(self) -> Principal:
        acc = self.run("account", "create")
        return Principal(str(acc["AccountId"]), acc["AccessKeyId"], acc["AccessKeySecret"])

    def account_of_key(self, ak: str) -> str:
        found = [a for a in self.accounts() if ak in a.get("AccessKeyIds", [])]
        assert len(found) == 1, f"key {ak} must belong to exactly one account: {found!r}"
        return str(found[0]["AccountId"])

    # users and keys ---------------------------------------------------------------------
    def create_user(self, account: str, name: str) -> Dict[str, Any]:
        return self.run("user", "create", "--account", account, "--name", name)

    def delete_user(self, account: str, name: str) -> Any:
        return self.run("user", "delete", "--account", account, "--name", name)

    def users(self, account: Optional[str] = None) -> List[Dict[str, Any]]:
        return self.run("user", "list", *(["--account", account] if account else []))

    def create_key(self, account: str, user: Optional[str] = None) -> Principal:
        key = self.run("key", "create", "--account", account, *(["--user", user] if user else []))
        for name in ("AccessKeyId", "AccessKeySecret"):
            assert isinstance(key.get(name), str) and key[name], key
        assert str(key.get("AccountId")) == str(account), key
        assert key.get("UserName") == user, key
        return Principal(str(account), key["AccessKeyId"], key["AccessKeySecret"], user)

    def keys(self, account: Optional[str] = None) -> List[Dict[str, Any]]:
        return self.run("key", "list", *(["--account", account] if account else []))

    def key_status(self, ak: str) -> Optional[str]:
        found = [k for k in self.keys() if k.get("AccessKeyId") == ak]
        assert len(found) <= 1, found
        return found[0].get("Status") if found else None

    # policies ---------------------------------------------------------------------------
    def create_policy(self, account: str, name: str, document: Any) -> Any:
        path = self.data_dir.parent / f"policy-{name}-{secrets.token_hex(3)}.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
        return self.run("policy", "create", "--account", account, "--name", name,
                        "--file", str(path))

    def refuse_policy(self, account: str, name: str, document: Any) -> str:
        path = self.data_dir.parent / f"policy-{name}-{secrets.token_hex(3)}.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
        return self.fail("policy", "create", "--account", account, "--name", name,
                         "--file", str(path))

    def attach(self, account: str, policy: str, user: str) -> Any:
        return self.run("policy", "attach", "--account", account, "--name", policy,
                        "--user", user)

    def detach(self, account: str, policy: str, user: str) -> Any:
        return self.run("policy", "detach", "--account", account, "--name", policy,
                        "--user", user)

    def policies(self, account: Optional[str] = None) -> List[Dict[str, Any]]:
        return self.run("policy", "list", *(["--account", account] if account else []))

    # audit ------------------------------------------------------------------------------
    def audit(self, **filters: Any) -> List[Dict[str, Any]]:
        args: List[str] = []
        for key, value in filters.items():
            if value is not None:
                args += ["--" + key.replace("_", "-"), str(value)]
        records = self.run("audit", *args)
        assert isinstance(records, list), records
        return records

    # instances --------------------------------------------------------------------------
    def add_instance(self, account: str, node: str = NODE_DALIAN) -> str:
        inst = self.run("instance", "add", "--account", account, "--node", node)
        assert str(inst.get("InstanceId", "")).startswith("i-"), inst
        return inst["InstanceId"]


# ---------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------


def statement(effect: str, action: Any, resource: Any = "*",
              condition: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    st: Dict[str, Any] = {"Effect": effect, "Action": action, "Resource": resource}
    if condition is not None:
        st["Condition"] = condition
    return st


def policy_doc(*statements: Dict[str, Any]) -> Dict[str, Any]:
    return {"Version": "1", "Statement": list(statements)}


READ_ONLY = policy_doc(statement("Allow", "ens:Describe*"))
FULL = policy_doc(statement("Allow", "ens:*"))


def image_arn(account: str, image_id: str, node: str = "*") -> str:
    """RAM resource of an image: `acs:ens:<node>:<account>:image/<id>` (the server builds
    it with an empty node part; a policy uses `*`)."""
    return f"acs:ens:{node}:{account}:image/{image_id}"


# ---------------------------------------------------------------------------------------
# SDK flavours with transport options
# ---------------------------------------------------------------------------------------


class CoreFlavorEx(CoreFlavor):
    """The core flavour of ens_support, with a protocol, a CA bundle (AcsClient(verify=...))
    and an optional STS token (StsTokenCredential)."""

    def __init__(self, host: str, ak: str, secret: str, protocol: str = "http",
                 ca: Optional[str] = None, security_token: Optional[str] = None):
        Flavor.__init__(self, host, ak, secret)
        self.protocol = protocol
        if security_token is not None:
            self.client = AcsClient(region_id="cn-hangzhou", verify=ca,
                                    credential=StsTokenCredential(ak, secret, security_token))
        else:
            self.client = AcsClient(ak, secret, "cn-hangzhou", verify=ca)

    def new_request(self, **params):
        request = super().new_request(**params)
        request.set_protocol_type(self.protocol)
        return request

    def _op(self, action: str, params: Dict[str, Any]) -> Dict[str, Any]:
        module = importlib.import_module(f"aliyunsdkens.request.v20171110.{action}Request")
        request = getattr(module, f"{action}Request")()
        request.set_endpoint(self.host)
        request.set_protocol_type(self.protocol)
        for key, value in params.items():
            getattr(request, f"set_{key}")(value)
        return json.loads(self.client.do_action_with_exception(request))


def make_sdk(name: str, host: str, principal: Optional[Principal] = None, *,
             ak: Optional[str] = None, secret: Optional[str] = None, protocol: str = "http",
             ca: Optional[str] = None, security_token: Optional[str] = None) -> Flavor:
    """An SDK flavour (tea_v3, tea_v2, core) signing as `principal` (or ak/secret)."""
    if principal is not None:
        ak, secret = principal.ak, principal.secret
    assert ak is not None and secret is not None
    if name == "core":
        return CoreFlavorEx(host, ak, secret, protocol=protocol, ca=ca,
                            security_token=security_token)
    flavor = make_flavor(name, host, ak, secret)
    assert isinstance(flavor, TeaFlavor)
    if protocol != "http" or ca is not None or security_token is not None:
        config = TeaConfig(access_key_id=ak, access_key_secret=secret, endpoint=host,
                           protocol=protocol, region_id="cn-hangzhou", ca=ca,
                           security_token=security_token)
        if flavor.algorithm:
            config.signature_algorithm = flavor.algorithm
        flavor.client = RecordingTeaClient(config)
    return flavor


def forget_tea_connections(host: str) -> None:
    """The Tea runtime (darabonba) keeps one requests Session per scheme://host:port for the
    whole process, and with it open TLS connections and an SSL context that a `ca` option
    has already extended. To observe what a *fresh* client does, drop those sessions."""
    for key in [k for k in DaraCore._sessions if f"://{host}:" in k]:
        DaraCore._sessions.pop(key).close()


def expect_denied(api: Flavor, action: str, resource: Optional[str] = None,
                  **params: Any) -> ApiError:
    """`action` must be refused with HTTP 400 NoPermission whose message names the RAM action
    (ens:<Action>) and, when given, the resource."""
    err = expect_error(api, action, "NoPermission", 400, **params)
    message = str(err.message)
    assert f"ens:{action}" in message, \
        f"[{api.name}] NoPermission message should name ens:{action}: {message!r}"
    if resource is not None:
        assert resource in message, \
            f"[{api.name}] NoPermission message should name the resource {resource}: {message!r}"
    return err


def rid_of(body_or_err: Any) -> str:
    if isinstance(body_or_err, dict):
        return body_or_err["RequestId"]
    return body_or_err.request_id


# ---------------------------------------------------------------------------------------
# Raw requests
# ---------------------------------------------------------------------------------------


def raw_v1_from(host: str, ak: str, secret: str, source_ip: Optional[str] = None,
                headers: Optional[Dict[str, str]] = None, action: str = "DescribeImages",
                extra: Optional[Dict[str, str]] = None, timeout: float = 15.0) -> RawResponse:
    """A signed V1 GET, optionally sent from another loopback source address."""
    params = v1_params(ak, secret, method="GET", action=action, extra=extra)
    hostname, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)
    try:
        conn.request("GET", "/?" + encode_query(params), headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# World
# ---------------------------------------------------------------------------------------


class AclWorld:
    """A private server with its admin CLI and root principal."""

    def __init__(self, base: Path, log_name: str = "acl", **server_options: Any):
        self.base = Path(base)
        self.data_dir = self.base / "data"
        ak, secret = new_access_key()
        self.server = start_acl_server(self.data_dir, ak=ak, secret=secret, log_name=log_name,
                                       **server_options)
        self.admin = AdminCli(self.data_dir)
        self.root = Principal(self.admin.account_of_key(ak), ak, secret)
        self.secrets: List[str] = [secret]  # every secret handed out, for the leak checks

    @property
    def host(self) -> str:
        return self.server.host

    def stop(self) -> None:
        self.server.stop()

    def sdk(self, principal: Principal, flavor: str = "tea_v3", **options: Any) -> Flavor:
        return make_sdk(flavor, self.host, principal, **options)

    def key(self, account: Optional[str] = None, user: Optional[str] = None) -> Principal:
        p = self.admin.create_key(account or self.root.account_id, user)
        self.secrets.append(p.secret)
        return p

    def account(self) -> Principal:
        p = self.admin.create_account()
        self.secrets.append(p.secret)
        return p

    def policy(self, document: Any, account: Optional[str] = None,
               name: Optional[str] = None) -> str:
        name = name or f"p-{secrets.token_hex(4)}"
        self.admin.create_policy(account or self.root.account_id, name, document)
        return name

    def user(self, *documents: Any, account: Optional[str] = None,
             name: Optional[str] = None) -> Principal:
        """A RAM user with one AccessKey and one new attached policy per document."""
        account = account or self.root.account_id
        name = name or f"u-{secrets.token_hex(4)}"
        self.admin.create_user(account, name)
        for doc in documents:
            self.admin.attach(account, self.policy(doc, account), name)
        return self.key(account, name)

    def image(self, owner: Optional[Principal] = None, name: Optional[str] = None) -> str:
        """A new Available custom image of `owner` (default root), made by the owner key."""
        owner = owner or self.root
        instance = self.admin.add_instance(owner.account_id)
        body = self.sdk(owner).op("CreateImage", InstanceId=instance,
                                  ImageName=name or f"acl-{secrets.token_hex(4)}")
        check_code_zero(body)
        return body["ImageId"]

    def self_images(self, owner: Optional[Principal] = None) -> Dict[str, Dict[str, Any]]:
        """The owner's own images (DescribeSelfImages with the owner key), by ImageId."""
        owner = owner or self.root
        return {i["ImageId"]: i for i in all_self_images(self.sdk(owner))}


# ---------------------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> Tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command-line tool is needed to make a test certificate"
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 0, f"openssl failed: {result.stderr!r}"
    return cert, key


def parse_time(value: str) -> _dt.datetime:
    """RFC 3339 with any number of fraction digits (Python < 3.11 needs at most 6)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    assert m, f"not an RFC 3339 time: {value!r}"
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return _dt.datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


def files_containing(directory: Path, needles: Iterable[str],
                     exclude: Sequence[str] = ()) -> List[Tuple[str, str]]:
    """(file, needle) for every needle found in the bytes of any file under `directory`."""
    hits = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file() or path.name in exclude:
            continue
        data = path.read_bytes()
        for needle in needles:
            if needle.encode("utf-8") in data:
                hits.append((str(path), needle))
    return hits

