"""The one bridge between trio and asyncio: an asyncio loop on its own thread.

asyncpg only runs on asyncio. Each worker starts one daemon thread running an asyncio loop and
sends it coroutine functions with `await bridge.run(fn, *args)`:
  - the coroutine is scheduled with `run_coroutine_threadsafe`;
  - its completion is signalled back through the trio token (`run_sync_soon`), because a
    `trio.Event` may only be touched from the trio thread;
  - cancelling the trio side cancels the asyncio task (and with it the query).
asyncpg objects (connections) are created and used only on that thread: callers pass coroutine
functions that live on the asyncio side (shard.persistence.store), never connections.
Measured on this machine: 130-200 us of CPU per call that does nothing (two thread wake-ups
and both event loops), which is why it serves only start-up work (migrations and recovery) and
commits go over shard.persistence.pgwire instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioThread:
    def __init__(self, name: str = "asyncpg") -> None:
        self._name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = self.loop
        assert loop is not None, "bridge not started"
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        fut: Future[T] = asyncio.run_coroutine_threadsafe(_call(fn, args), loop)

        def wake(_: object) -> None:
            # The trio run may have ended meanwhile (worker exiting): nobody is waiting then.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        fut.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            fut.cancel()
            raise
        return fut.result()

    def stop(self) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self.loop = None
        self._thread = None


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)
