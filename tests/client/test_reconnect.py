"""kill -9 of the server worker that owns a client's connection, under a running client.

With connection handoff, a connection ends up on the worker that owns the queue of its first
routable request: worker = crc32(queue) % 32 % WORKERS. Each test starts its own cluster (with a
token, so every reconnect must authenticate again), kills that worker by pid, waits for the
supervisor's restart line, and checks that calls in flight at the kill raised ConnectionLost
and that the client (and a Worker on its own connection) carried on.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from magicqueue_client import (
    AsyncClient,
    Client,
    ConnectionLost,
    ConnectionSettings,
    Job,
    ServerUnavailable,
    Worker,
)
from tests.client.helpers import current_backend, qname
from tests.harness import Cluster

TOKEN = "reconnect-token"
WORKERS = 2


def owner(queue: str) -> int:
    return zlib.crc32(queue.encode()) % 32 % WORKERS


def queue_on(worker: int, prefix: str) -> str:
    while True:
        q = qname(prefix)
        if owner(q) == worker:
            return q


@pytest.fixture
def fresh_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=WORKERS, AUTH_TOKENS=TOKEN).start()
    try:
        yield c
    finally:
        c.stop()


async def _until_ok(fn: Any, timeout: float = 20.0) -> Any:
    """Retry a call while the server says the restarted worker is not reachable yet."""
    with anyio.fail_after(timeout):
        while True:
            try:
                return await fn()
            except (ServerUnavailable, ConnectionLost):
                await anyio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_async_client_and_worker_survive_kill_9(
    fresh_cluster: Cluster, anyio_backend: str
) -> None:
    assert current_backend() == anyio_backend
    cluster = fresh_cluster
    victim = 0
    q = queue_on(victim, "kill")
    idle = queue_on(victim, "idle")
    work = queue_on(victim, "work")
    settings = ConnectionSettings(port=cluster.port, token=TOKEN, backoff_initial=0.02)
    done: list[int] = []

    async def handler(job: Job) -> Any:
        done.append(job.id)
        return {"seen": job.data}

    async with AsyncClient(settings=settings) as c, anyio.create_task_group() as tg:
        # First request on `q`: this connection is handed to the victim worker.
        first = await c.push(q, "before")
        worker = Worker(settings, work, handler, concurrency=4, poll_timeout=0.2)
        worker.handle_signals = False
        tg.start_soon(worker.run)
        before = [await c.push(work, i) for i in range(20)]
        for jid in before:
            assert await c.wait_for(jid, 20) == {"seen": before.index(jid)}

        # A call in flight at the kill: a blocking pull on an empty queue.
        in_flight: list[BaseException] = []
        entered = anyio.Event()

        async def blocked_pull() -> None:
            entered.set()  # the pull's line is queued synchronously right after this
            try:
                await c.pull(idle)
            except BaseException as e:
                in_flight.append(e)

        tg.start_soon(blocked_pull)
        await entered.wait()
        await c.get_state(first)  # answered after the pull was sent (same connection, in order)

        pid = cluster.worker_pids[victim]
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            while not in_flight:
                await anyio.sleep(0.01)
        assert isinstance(in_flight[0], ConnectionLost), in_flight

        await anyio.to_thread.run_sync(
            cluster.wait_for, re.compile(rf"worker {victim} ready \(pid (\d+)"), 30.0
        )
        assert cluster.worker_pids[victim] != pid

        # Subsequent calls reconnect (with AUTH) and succeed.
        jid = await _until_ok(lambda: c.push(q, "after"))
        assert await c.get_state(jid) == "waiting"
        job = await c.pull(q, timeout=5)
        assert job is not None and job.data in ("after",)
        await c.ack(job.id, "ok")
        assert await c.get_result(job.id) == "ok"
        assert c.drops >= 1 and c.connections >= 2

        # The worker reconnected by itself and processes new jobs.
        after = [await _until_ok(lambda i=i: c.push(work, 100 + i)) for i in range(20)]
        for i, jid in enumerate(after):
            assert await c.wait_for(jid, 30) == {"seen": 100 + i}
        assert worker.client.connections >= 2
        worker.stop()


@pytest.mark.timeout(90)
def test_sync_client_survives_kill_9(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    victim = 1
    q = queue_on(victim, "kill")
    idle = queue_on(victim, "idle")
    with Client(port=cluster.port, token=TOKEN, backoff_initial=0.02) as c:
        first = c.push(q, "before")
        errors: list[BaseException] = []
        started = threading.Event()

        def blocked_pull() -> None:
            started.set()
            try:
                c.pull(idle)
            except BaseException as e:
                errors.append(e)

        # The pull runs on `c`'s socket: even if it only reaches sendall after the kill, that
        # socket is dead by then and the call fails with ConnectionLost (it never reconnects
        # mid-call).
        t = threading.Thread(target=blocked_pull)
        t.start()
        started.wait(5)
        with Client(port=cluster.port, token=TOKEN) as other:
            assert other.get_state(first) == "waiting"
        pid = cluster.worker_pids[victim]
        os.kill(pid, signal.SIGKILL)
        t.join(10)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ConnectionLost), errors
        cluster.wait_for(re.compile(rf"worker {victim} ready \(pid (\d+)"), 30.0)

        # The next calls reconnect (with AUTH) and succeed once the worker is back.
        end = time.monotonic() + 20
        while True:
            try:
                jid = c.push(q, "after")
                break
            except (ServerUnavailable, ConnectionLost):
                assert time.monotonic() < end
                time.sleep(0.02)
        assert c.get_state(jid) == "waiting"
        assert c.drops >= 1 and c.connections >= 2
        job = c.pull(q, timeout=5)
        assert job is not None and job.id == jid
        c.ack(jid, "ok")
        assert c.get_result(jid) == "ok"
