"""Integration tier: the real cluster as a subprocess, WORKERS=2, real sockets on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Cluster, temp_socket_path


@pytest.fixture(scope="module")
def unix_path() -> Iterator[str]:
    with temp_socket_path() as path:
        yield path


@pytest.fixture(scope="module")
def cluster(unix_path: str) -> Iterator[Cluster]:
    """One cluster per test module (TCP + Unix socket), stopped by pid afterwards."""
    c = Cluster(workers=2, UNIX_SOCKET=unix_path).start()
    try:
        yield c
    finally:
        code = c.stop()
        assert code == 0, c.log()
