"""Worker against the real cluster: outcomes exactly as the handlers decide, under both loops."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from magicqueue_client import (
    AsyncClient,
    Client,
    ConnectionSettings,
    Job,
    JobContext,
    JobSpec,
    SyncJobContext,
    Worker,
)
from magicqueue_client.worker import SHUTDOWN_ERROR
from tests.client.helpers import current_backend, eventually, open_client, qname
from tests.harness import Cluster


def _mode(i: int) -> str:
    r = i % 10
    if r in (3, 7):
        return "raise"
    if r in (1, 5):
        return "progress"
    if r == 9:
        return "none"
    return "ok"


def _expected(i: int, jid: int) -> Any:
    mode = _mode(i)
    if mode == "progress":
        return {"i": i, "progress": 50, "message": f"half {i}"}
    if mode == "none":
        return None
    return {"i": i}


async def _check_outcomes(c: AsyncClient, q: str, ids: list[int], handler_name: str) -> None:
    """Every id ends completed with its result, or in the DLQ with its handler's error."""
    states: dict[int, str] = {}
    results: dict[int, Any] = {}
    limiter = anyio.Semaphore(64)

    async def look(jid: int) -> None:
        async with limiter:
            states[jid] = await c.get_state(jid)
            if states[jid] == "completed":
                results[jid] = await c.get_result(jid)

    async with anyio.create_task_group() as tg:
        for jid in ids:
            tg.start_soon(look, jid)
    dead = {j.id: j for j in await c.dlq(q, count=len(ids))}
    for i, jid in enumerate(ids):
        if _mode(i) == "raise":
            assert states[jid] == "failed", (i, jid, states[jid])
            msg = dead[jid].progress_msg
            assert msg is not None
            assert msg.startswith(f"ValueError: boom {i}\n\nTraceback (most recent call last):")
            assert f"in {handler_name}" in msg
        else:
            assert states[jid] == "completed", (i, jid, states[jid])
            assert results[jid] == _expected(i, jid), (i, results[jid])
    assert set(dead) == {jid for i, jid in enumerate(ids) if _mode(i) == "raise"}


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_2000_jobs_concurrency_8(cluster: Cluster, anyio_backend: str) -> None:
    q = qname("work")
    n = 2000
    async with open_client(cluster, anyio_backend) as c:
        ids = await c.push_batch(
            q, [JobSpec({"i": i, "mode": _mode(i)}, max_attempts=1) for i in range(n)]
        )
        active = 0
        peak = 0
        finished = 0

        async def handler(job: Job, ctx: JobContext) -> Any:
            nonlocal active, peak, finished
            active += 1
            peak = max(peak, active)
            try:
                await anyio.sleep(0)  # let the other handlers in
                i = job.data["i"]
                mode = job.data["mode"]
                if mode == "raise":
                    raise ValueError(f"boom {i}")
                if mode == "progress":
                    await ctx.progress(50, f"half {i}")
                    # Read it back from the server: the result proves the progress arrived.
                    p = await worker.client.get_progress(job.id)
                    return {"i": i, "progress": p.progress, "message": p.message}
                return None if mode == "none" else {"i": i}
            finally:
                active -= 1
                finished += 1
                if finished == n:
                    worker.stop()

        worker = Worker(
            ConnectionSettings(port=cluster.port), q, handler, concurrency=8, handle_signals=False
        )
        with anyio.fail_after(100):
            await worker.run()
        raised = sum(1 for i in range(n) if _mode(i) == "raise")
        assert worker.stats.pulled == n
        assert worker.stats.completed == n - raised and worker.stats.failed == raised
        assert worker.stats.settle_errors == 0 and worker.stats.given_back == 0
        assert 1 < peak <= 8
        await _check_outcomes(c, q, ids, "handler")


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_sync_handler_runs_in_threads(cluster: Cluster, anyio_backend: str) -> None:
    q = qname("work")
    n = 300
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    lock = threading.Lock()
    count = [0]
    running = [0, 0]  # now, peak
    async with open_client(cluster, anyio_backend) as c:
        ids = await c.push_batch(
            q, [JobSpec({"i": i, "mode": _mode(i)}, max_attempts=1) for i in range(n)]
        )

        def sync_handler(job: Job, ctx: SyncJobContext) -> Any:
            with lock:
                threads.add(threading.get_ident())
                running[0] += 1
                running[1] = max(running[1], running[0])
            try:
                i = job.data["i"]
                mode = job.data["mode"]
                if mode == "raise":
                    raise ValueError(f"boom {i}")
                if mode == "progress":
                    ctx.progress(50, f"half {i}")
                    return {"i": i, "progress": 50, "message": f"half {i}"}
                return None if mode == "none" else {"i": i}
            finally:
                with lock:
                    running[0] -= 1
                    count[0] += 1
                    if count[0] == n:
                        anyio.from_thread.run_sync(worker.stop)

        # The worker shares the test's open client (one connection for both).
        worker = Worker(c, q, sync_handler, concurrency=4, handle_signals=False)
        with anyio.fail_after(50):
            await worker.run()
        assert loop_thread not in threads and 1 <= running[1] <= 4
        assert c.is_open  # a client it was given open is left open
        await _check_outcomes(c, q, ids, "sync_handler")


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_progress_is_visible_while_running(cluster: Cluster, anyio_backend: str) -> None:
    q = qname("work")
    async with open_client(cluster, anyio_backend) as c:
        jid = await c.push(q, "slow")
        release = anyio.Event()

        async def handler(job: Job, ctx: JobContext) -> str:
            await ctx.progress(30, "thirty")
            await release.wait()
            return "done"

        worker = Worker(c, q, handler, poll_timeout=0.2, handle_signals=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await eventually(
                lambda: c.get_job(jid), lambda r: r.job is not None and r.job.progress == 30, 10
            )
            p = await c.get_progress(jid)
            assert (p.progress, p.message) == (30, "thirty")
            release.set()
            assert await c.wait_for(jid, 10) == "done"
            worker.stop()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_unencodable_result_fails_the_job(cluster: Cluster, anyio_backend: str) -> None:
    q = qname("work")
    async with open_client(cluster, anyio_backend) as c:
        jid = await c.push(q, 1, max_attempts=1)

        async def handler(job: Job) -> Any:
            worker.stop()
            return {"bad": object()}

        worker = Worker(c, q, handler, handle_signals=False)
        with anyio.fail_after(30):
            await worker.run()
        assert await c.get_state(jid) == "failed"
        (dead,) = await c.dlq(q)
        assert dead.progress_msg is not None
        assert dead.progress_msg.startswith("Result is not JSON-serialisable")


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_stop_finishes_short_jobs_and_fails_back_long_ones(
    cluster: Cluster, anyio_backend: str
) -> None:
    q = qname("work")
    async with open_client(cluster, anyio_backend) as c:
        ids = await c.push_batch(q, [JobSpec({"long": i % 2 == 1}, backoff=0) for i in range(6)])
        started: set[int] = set()

        async def handler(job: Job) -> str:
            started.add(job.id)
            if len(started) == len(ids):
                worker.stop()  # all six in hand: stop now
            await anyio.sleep(3600 if job.data["long"] else 0.05)
            return "short"

        worker = Worker(c, q, handler, concurrency=6, grace=0.5, handle_signals=False)
        with anyio.fail_after(30):
            await worker.run()
        assert worker.stats.completed == 3 and worker.stats.given_back == 3
        for i, jid in enumerate(ids):
            job, state = await c.get_job(jid)
            if i % 2:
                assert state == "waiting" and job is not None
                assert job.attempts == 1 and job.progress_msg == SHUTDOWN_ERROR
            else:
                assert state == "completed" and await c.get_result(jid) == "short"


@pytest.mark.timeout(60)
def test_run_sync_in_a_script(cluster: Cluster) -> None:
    q = qname("work")
    with Client(port=cluster.port) as c:
        ids = c.push_batch(q, [JobSpec(i) for i in range(50)])
        seen: list[str] = []

        async def handler(job: Job) -> int:
            seen.append(current_backend())
            if len(seen) == len(ids):
                worker.stop()
            return int(job.data) * 2

        # A Client is accepted too: the worker opens its own AsyncClient with its settings.
        worker = Worker(c, q, handler, concurrency=5)
        worker.run_sync()
        assert set(seen) == {"asyncio"}
        assert [c.get_result(jid) for jid in ids] == [i * 2 for i in range(50)]


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_configuration_errors_surface_from_run(cluster: Cluster, anyio_backend: str) -> None:
    from magicqueue_client import ConnectionLost, InvalidRequest

    assert current_backend() == anyio_backend

    async def handler(job: Job) -> None:
        raise AssertionError("never called")

    bad_queue = Worker(ConnectionSettings(port=cluster.port), "x" * 300, handler)
    with pytest.raises(InvalidRequest, match="queue"):
        await bad_queue.run()
    nowhere = Worker(ConnectionSettings(path="/nonexistent/mq.sock"), "q", handler)
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await nowhere.run()
