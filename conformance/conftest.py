"""Fixtures: one real `ens-images` server per session (generated 137-image catalog, root
credentials from the environment), and the `sdk` fixture parametrised over the three
official SDK flavours."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ens_support import (  # noqa: E402
    BACKEND,
    FLAVORS,
    drop_test_databases,
    World,
    make_catalog,
    make_flavor,
    new_access_key,
    start_server,
    write_catalog,
)


@pytest.fixture(scope="session")
def catalog_entries():
    return make_catalog()


@pytest.fixture(scope="session")
def server(tmp_path_factory, catalog_entries):
    """The shared server: generated catalog, root key handed over through the environment."""
    base = tmp_path_factory.mktemp("ens-main")
    catalog = write_catalog(base / "catalog.json", catalog_entries)
    ak, secret = new_access_key()
    srv = start_server(base / "data", catalog=catalog, ak=ak, secret=secret, log_name="main")
    yield srv
    srv.stop()


@pytest.fixture(params=sorted(FLAVORS), ids=lambda n: n)
def flavor_name(request):
    return request.param


@pytest.fixture
def sdk(server, flavor_name):
    """One official SDK flavour pointed at the shared server with the root key."""
    return make_flavor(flavor_name, server.host, server.ak, server.secret)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A private server per test module for the image-family tests: small fully-specified
    catalog, image builds instantaneous (--image-build-seconds 0), admin CLI at hand."""
    w = World(tmp_path_factory.mktemp("ens-world"), build_seconds=0, log_name="world")
    yield w
    w.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of the logs of any server the test used."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name in ("server", "default_server", "world", "slow_world"):
        srv = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        srv = getattr(srv, "server", srv)  # a World carries its current ServerProcess
        if srv is not None and hasattr(srv, "stderr_text"):
            report.sections.append((f"{name} stderr (tail)", srv.stderr_text()[-4000:]))


def pytest_report_header(config):
    return f"ens-images store backend: {BACKEND}"


def pytest_sessionfinish(session, exitstatus):
    drop_test_databases()
