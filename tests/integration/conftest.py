"""Integration tier: the real cluster as a subprocess, WORKERS=2, real sockets on free ports."""

from __future__ import annotations

import itertools
import re
import uuid
import zlib
from collections.abc import Callable, Iterator

import pytest

from tests.harness import Client, Cluster, temp_socket_path


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


# ---------------------------------------------------------------- added fixtures
#
# Queue names are unique per test (a prefix from the test's own name plus a counter), so tests
# sharing the module's cluster never see each other's jobs. `Names.queue(worker=w)` searches for
# a name whose shard (`crc32(utf8(name)) % 32`, computed here independently of the server's
# code, as a client would) is owned by worker `w` (`shard % 2`).


def shard_of(name: str) -> int:
    return zlib.crc32(name.encode()) % 32


def owner_of_queue(name: str, workers: int = 2) -> int:
    return shard_of(name) % workers


class Names:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._n = itertools.count()

    def queue(self, tag: str = "q", worker: int | None = None) -> str:
        while True:
            name = f"{self.prefix}-{tag}-{next(self._n)}"
            if worker is None or owner_of_queue(name) == worker:
                return name


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[-40:]
    return Names(f"{base}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(params=["tcp", "unix"])
def transport(request: pytest.FixtureRequest) -> str:
    """Run a test once over TCP and once over the Unix socket."""
    return str(request.param)


@pytest.fixture
def connect(cluster: Cluster, transport: str) -> Iterator[Callable[..., Client]]:
    """Open clients over the test's transport; every one is closed after the test."""
    opened: list[Client] = []

    def make(timeout: float = 10.0) -> Client:
        c = cluster.client(timeout) if transport == "tcp" else cluster.unix_client(timeout)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()
