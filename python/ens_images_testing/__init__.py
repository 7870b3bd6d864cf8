"""Test against ens-images, a local stand-in for the Alibaba Cloud ENS image API.

`EnsImagesServer` starts the real binary with `--ephemeral` (nothing written to disk) and
its control API; `ControlClient` speaks that API. The pytest plugin (`plugin`) wraps both in
the `ens_images` fixture.
"""

from .control import ControlClient, ControlError
from .server import EnsImagesServer, ServerStartError
from .shared import AccountControl, SharedServer

__all__ = ["AccountControl", "ControlClient", "ControlError", "EnsImagesServer", "ServerStartError",
           "SharedServer"]
