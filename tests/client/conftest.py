"""Client tier: the library against the real cluster (WORKERS=2, TCP + Unix socket).

Async tests run under both asyncio and trio through anyio's pytest plugin: each is marked
`@pytest.mark.anyio` and takes the `anyio_backend` fixture below (parametrised over both).
pytest-trio's `trio_mode` (on for the whole suite) marks every coroutine test as a trio test
and would run these under trio whatever the parameter says, so the hook below takes its mark
off the anyio tests again; `helpers.open_client` asserts the loop really is the one asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Cluster, temp_socket_path


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # trylast: pytest-trio has added its `trio` marks by now.
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def unix_path() -> Iterator[str]:
    with temp_socket_path() as path:
        yield path


@pytest.fixture(scope="session")
def cluster(unix_path: str) -> Iterator[Cluster]:
    """One cluster for the client tier (tests use queue names of their own), stopped by pid."""
    c = Cluster(workers=2, UNIX_SOCKET=unix_path).start()
    try:
        yield c
    finally:
        code = c.stop()
        assert code == 0, c.log()
