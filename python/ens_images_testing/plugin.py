"""pytest plugin: one ephemeral ens-images server per session, reset before each test.

Fixtures:
- `ens_images_server`: the session's `EnsImagesServer`, as it is;
- `ens_images`: the same server, reset first (every account but the owner gone, no custom
  image, the journal and fault rules cleared), so each test starts from a first start.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import EnsImagesServer


@pytest.fixture(scope="session")
def ens_images_server() -> Iterator[EnsImagesServer]:
    """The session's server; started on first use, stopped at the end of the session."""
    with EnsImagesServer() as server:
        yield server


@pytest.fixture
def ens_images(ens_images_server: EnsImagesServer) -> EnsImagesServer:
    """The session's server, reset to a first start before the test."""
    assert ens_images_server.control is not None
    ens_images_server.control.reset()
    return ens_images_server
