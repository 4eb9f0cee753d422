"""Shared bits of the client tests: unique queue names, backend checks, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import trio

from magicqueue_client import AsyncClient
from tests.harness import Cluster

T = TypeVar("T")


def qname(prefix: str = "cq") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def current_backend() -> str:
    """The event loop this code runs in, found without asking anyio (which could be wrong)."""
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        trio.lowlevel.current_task()  # raises outside trio
        return "trio"


@asynccontextmanager
async def open_client(cluster: Cluster, backend: str, **kw: Any) -> AsyncIterator[AsyncClient]:
    assert current_backend() == backend
    async with AsyncClient("127.0.0.1", cluster.port, **kw) as c:
        yield c


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Probe until `ok(value)`; fail with the last value after `timeout` seconds."""
    value = await probe()
    with anyio.move_on_after(timeout):
        while not ok(value):
            await anyio.sleep(0.01)
            value = await probe()
    assert ok(value), f"condition never held; last value: {value!r}"
    return value
