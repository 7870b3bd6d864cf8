"""Starts and stops one `ens-images serve --ephemeral` process with its control API."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, List, Optional, Sequence

from .control import ControlClient


class ServerStartError(RuntimeError):
    """The binary is missing, or it stopped or stayed silent before it was ready."""


def tea_config(endpoint: str, access_key_id: str, access_key_secret: str, **fields: Any):
    """A Tea SDK `Config` for the server at `endpoint` (host:port), signed with the key given."""
    from alibabacloud_tea_openapi.models import Config

    return Config(access_key_id=access_key_id, access_key_secret=access_key_secret,
                  endpoint=endpoint, protocol="http", region_id="cn-hangzhou", **fields)


def find_binary() -> str:
    """`ENS_IMAGES_BIN`, else `ens-images` on the PATH."""
    binary = os.environ.get("ENS_IMAGES_BIN") or shutil.which("ens-images")
    binary = os.path.abspath(binary) if binary else binary
    if not binary or not os.access(binary, os.X_OK):
        raise ServerStartError(
            "ens-images not found: put it on the PATH (cargo install --path crates/ens-images) "
            "or set ENS_IMAGES_BIN to the binary")
    return binary


class EnsImagesServer:
    """A running ephemeral server: its endpoint, owner AccessKey and control client.

    `extra_args` go to `serve` (e.g. `["--rate-limit", "5"]`). New images are `Available` at
    once (`--image-build-seconds 0`) unless `extra_args` says otherwise.
    """

    def __init__(self, binary: Optional[str] = None, extra_args: Sequence[str] = (),
                 startup_timeout: float = 15.0):
        self.binary = binary or find_binary()
        self.extra_args: List[str] = list(extra_args)
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen] = None
        self.log = tempfile.NamedTemporaryFile(prefix="ens-images-", suffix=".log", delete=False)
        self.endpoint = ""            # host:port, as Tea's Config(endpoint=...) takes it
        self.url = ""                 # http://host:port
        self.account_id = ""
        self.access_key_id = ""
        self.access_key_secret = ""
        self.control: Optional[ControlClient] = None
        self.ready_seconds = 0.0      # from spawning the process to its `listening on` line

    def start(self) -> "EnsImagesServer":
        """Starts the process and waits for its `listening on` line."""
        token = secrets.token_urlsafe(24)
        env = dict(os.environ, ENS_IMAGES_CONTROL_TOKEN=token)
        for name in ("ENS_IMAGES_ROOT_ACCESS_KEY_ID", "ENS_IMAGES_ROOT_ACCESS_KEY_SECRET"):
            env.pop(name, None)  # the owner key is generated and read back
        args = [self.binary, "serve", "--ephemeral", "--listen", "127.0.0.1:0",
                "--control-listen", "127.0.0.1:0"]
        if "--image-build-seconds" not in self.extra_args:
            args += ["--image-build-seconds", "0"]
        started = time.monotonic()
        self.process = subprocess.Popen(args + self.extra_args, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)
        lines = self._read_until_ready(started)
        self.ready_seconds = time.monotonic() - started
        control_url = ""
        for line in lines:
            if line.startswith("ens-images owner credentials "):
                owner = json.loads(line[len("ens-images owner credentials "):])
                self.account_id = owner["AccountId"]
                self.access_key_id = owner["AccessKeyId"]
                self.access_key_secret = owner["AccessKeySecret"]
            elif line.startswith("ens-images control on "):
                control_url = line.split()[-1]
            elif line.startswith("ens-images listening on "):
                self.url = line.split()[-1]
                self.endpoint = self.url.split("://", 1)[1]
        self.control = ControlClient(control_url, token)
        # Keep reading stdout so the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _read_until_ready(self, started: float) -> List[str]:
        assert self.process is not None and self.process.stdout is not None
        lines: List[str] = []
        result: List[Any] = []

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.append(line.strip())
                if line.startswith("ens-images listening on "):
                    result.append(True)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout - (time.monotonic() - started))
        if not result:
            self.stop()
            raise ServerStartError(f"ens-images was not ready within {self.startup_timeout} s; "
                                   f"stdout: {lines!r}; log: {self.log_text()[-2000:]}")
        return lines

    def _drain(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            for _ in self.process.stdout:
                pass

    def log_text(self) -> str:
        """What the server logged so far (stderr)."""
        with open(self.log.name, encoding="utf-8", errors="replace") as log:
            return log.read()

    def config(self, access_key_id: Optional[str] = None, access_key_secret: Optional[str] = None,
               **fields: Any):
        """A Tea SDK `Config` for this server, signed with the owner's key unless another is
        given; `fields` are further `Config` fields (e.g. `signature_algorithm="v2"`)."""
        return tea_config(self.endpoint, access_key_id or self.access_key_id,
                          access_key_secret or self.access_key_secret, **fields)

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 10 s); its store goes with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> "EnsImagesServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        os.unlink(self.log.name)
