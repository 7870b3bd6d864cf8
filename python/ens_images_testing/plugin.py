"""pytest plugin: one ephemeral ens-images server per session, reset before each test.

Fixtures:
- `ens_images_server`: the session's `EnsImagesServer`, as it is;
- `ens_images`: the same server, reset first (every account but the owner gone, no custom
  image, the journal and fault rules cleared), so each test starts from a first start.

With `ENS_IMAGES_SHARED_ENDPOINT`, `ENS_IMAGES_SHARED_CONTROL_URL` and
`ENS_IMAGES_SHARED_CONTROL_TOKEN` set, the session uses that server instead, through an
account of its own (`SharedServer`): each test starts with that account emptied, and faults,
journal queries and snapshots are scoped to it, so parallel jobs never see each other.
"""

from __future__ import annotations

from typing import Iterator, Union

import pytest

from .server import EnsImagesServer
from .shared import SharedServer


@pytest.fixture(scope="session")
def ens_images_server() -> Iterator[Union[EnsImagesServer, SharedServer]]:
    """The session's server: started on first use and stopped at the end of the session, or
    the shared one the environment names."""
    shared = SharedServer.from_environment()
    if shared is not None:
        yield shared
        return
    with EnsImagesServer() as server:
        yield server


@pytest.fixture
def ens_images(ens_images_server: Union[EnsImagesServer, SharedServer]) -> Union[EnsImagesServer, SharedServer]:
    """The session's server, reset to a first start (a shared one: this job's account
    emptied) before the test."""
    assert ens_images_server.control is not None
    ens_images_server.control.reset()
    return ens_images_server
