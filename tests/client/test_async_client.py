"""AsyncClient against the real cluster, every method, under asyncio and under trio."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from magicqueue_client import (
    AsyncClient,
    CronNotFound,
    DuplicateJob,
    InvalidRequest,
    JobFailed,
    JobFinished,
    JobNotActive,
    JobNotFound,
    JobSpec,
    PartialBatch,
    UnknownDependency,
    WaitTimeout,
)
from magicqueue_client.async_client import ABANDONED_PULL_ERROR
from tests.client.helpers import current_backend, eventually, open_client, qname
from tests.harness import Cluster

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_runs_under_the_requested_backend(anyio_backend: str) -> None:
    # The guard for the plugin fix in conftest: without it both params would run under trio.
    assert current_backend() == anyio_backend


async def test_push_options_get_job_pull_progress_ack_result(
    cluster: Cluster, anyio_backend: str
) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        parent = await c.push(q, {"parent": True})
        before = int(time.time() * 1000)
        jid = await c.push(
            q,
            {"n": 1, "s": "é"},
            priority=7,
            ttl=600_000,
            timeout=300_000,
            max_attempts=3,
            backoff=250,
            unique_key=f"k-{q}",
            depends_on=[parent],
            tags=["a", "b"],
        )
        job, state = await c.get_job(jid)
        assert state == "waiting-children"
        assert job is not None
        assert job.id == jid and job.queue == q and job.data == {"n": 1, "s": "é"}
        assert (job.priority, job.ttl, job.timeout, job.max_attempts, job.backoff) == (
            7,
            600_000,
            300_000,
            3,
            250,
        )
        assert job.unique_key == f"k-{q}" and job.depends_on == (parent,)
        assert job.tags == ("a", "b") and job.progress == 0 and job.progress_msg is None
        assert job.created_at >= before - 5_000 and job.started_at == 0 and job.attempts == 0

        # The parent runs first; completing it releases the child.
        p = await c.pull(q)
        assert p is not None and p.id == parent
        await c.ack(parent)
        assert await c.get_state(jid) == "waiting"
        got = await c.pull(q, timeout=5)
        assert got is not None and got.id == jid and got.started_at > 0
        assert await c.get_state(jid) == "active"

        await c.progress(jid, 40, "forty")
        pr = await c.get_progress(jid)
        assert (pr.id, pr.progress, pr.message) == (jid, 40, "forty")
        await c.progress(jid, 150)  # above 100 is stored as 100
        assert (await c.get_progress(jid)).progress == 100

        await c.ack(jid, {"answer": [1, 2, 3]})
        assert await c.get_state(jid) == "completed"
        assert await c.get_result(jid) == {"answer": [1, 2, 3]}
        assert await c.get_result(parent) is None
        assert await c.get_job(jid) == (None, "completed")
        assert await c.wait_for(jid, timeout=5) == {"answer": [1, 2, 3]}


async def test_delay_and_pull_timeout(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        assert await c.pull(q, timeout=0) is None
        assert await c.pull_batch(q, 5, timeout=0.05) == []
        jid = await c.push(q, "later", delay=200)
        assert await c.get_state(jid) == "delayed"
        job = await c.pull(q, timeout=10)
        assert job is not None and job.id == jid and job.data == "later"
        await c.ack(jid)


async def test_push_batch_pull_batch_ack_batch(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        ids = await c.push_batch(
            q,
            [JobSpec({"i": 0}, priority=1, tags=["t"]), {"data": {"i": 1}}, JobSpec(None)],
        )
        assert len(ids) == 3
        assert await c.push_batch(q, []) == []
        jobs = await c.pull_batch(q, 10, timeout=5)
        assert [j.id for j in jobs] == ids  # priority 1 first, then FIFO
        assert [j.data for j in jobs] == [{"i": 0}, {"i": 1}, None]
        assert jobs[0].tags == ("t",)
        assert await c.ack_batch([*ids, 999_999_999]) == 3  # the unknown id is skipped
        for jid in ids:
            assert await c.get_state(jid) == "completed"


async def test_push_batch_splits_large_lists(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        # Over MAX_BATCH: sent as three PUSHB requests, ids back in input order.
        n = 25_000
        ids = await c.push_batch(q, ({"data": i} for i in range(n)))
        assert len(ids) == n and len(set(ids)) == n
        assert ids == sorted(ids)  # one queue = one shard: ids grow with push order
        seen: list[Any] = []
        while len(seen) < n:
            jobs = await c.pull_batch(q, 10_000, timeout=5)
            assert jobs
            seen.extend(j.data for j in jobs)
            assert await c.ack_batch([j.id for j in jobs]) == len(jobs)
        assert seen == list(range(n))

    # A small frame limit forces splitting by size (each job is ~2 KB encoded).
    q2 = qname()
    blob = "x" * 2000
    async with open_client(cluster, anyio_backend, max_frame_bytes=16 * 1024) as c:
        ids = await c.push_batch(q2, [{"data": {"i": i, "b": blob}} for i in range(40)])
        assert len(ids) == 40
        jobs = await c.pull_batch(q2, 100, timeout=5)
        assert [j.data["i"] for j in jobs] == list(range(40))
        await c.ack_batch(ids)
        # A single job that cannot fit a frame is refused before anything is sent.
        with pytest.raises(InvalidRequest, match="cannot fit"):
            await c.push_batch(q2, [{"data": "y" * 20_000}])
        assert await c.get_state(ids[0]) == "completed"  # the connection is intact


async def test_push_batch_reports_a_partial_split(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend, max_batch=10) as c:
        held = await c.push(q, "holder", unique_key="dup")
        specs = [JobSpec(i) for i in range(15)] + [JobSpec("late", unique_key="dup")]
        with pytest.raises(PartialBatch) as ei:
            await c.push_batch(q, specs)
        assert len(ei.value.pushed_ids) == 10
        assert isinstance(ei.value.error, DuplicateJob)
        # One request is all-or-nothing: a refusal inside the first one pushes nothing.
        with pytest.raises(DuplicateJob):
            await c.push_batch(q, [JobSpec("a"), JobSpec("b", unique_key="dup")])
        info = {qi.name: qi for qi in await c.list_queues()}[q]
        assert info.pending == 11  # the holder and the first 10
        await c.cancel(held)


async def test_fail_dlq_retry(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        a = await c.push(q, "a", max_attempts=1)
        b = await c.push(q, "b", max_attempts=1)
        r = await c.push(q, "r", max_attempts=0, backoff=0)
        for _ in range(3):
            job = await c.pull(q, timeout=5)
            assert job is not None
            if job.id == a:
                await c.fail(a, "broken a")
            elif job.id == b:
                await c.fail(b)
            else:
                await c.fail(r, "retry me")
        assert await c.get_state(a) == "failed"
        assert await c.get_state(b) == "failed"
        assert await c.get_state(r) in ("waiting", "delayed")
        retried, _ = await c.get_job(r)
        assert retried is not None and retried.attempts == 1
        assert retried.progress_msg == "retry me"
        dead = await c.dlq(q)
        assert [j.id for j in dead] == [a, b]
        assert dead[0].progress_msg == "broken a" and dead[1].progress_msg is None
        assert [j.id for j in await c.dlq(q, count=1)] == [a]
        with pytest.raises(JobFailed) as ei:
            await c.wait_for(a, timeout=5)
        assert ei.value.error == "broken a"
        assert await c.retry_dlq(q, id=a) == 1
        assert await c.get_state(a) == "waiting"
        assert await c.retry_dlq(q) == 1
        assert await c.dlq(q) == []


async def test_cancel_and_job_errors(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        jid = await c.push(q, 1)
        with pytest.raises(JobNotActive) as na:
            await c.progress(jid, 10)
        assert na.value.job_id == jid and "is not active" in na.value.message
        with pytest.raises(JobNotFound):  # JobNotActive is a JobNotFound
            await c.get_progress(jid)
        with pytest.raises(JobNotFound) as nf:
            await c.ack(jid)
        assert nf.value.message == f"Job {jid} not found" and nf.value.job_id == jid
        with pytest.raises(JobNotFound):
            await c.fail(jid)
        await c.cancel(jid)
        assert await c.get_state(jid) == "unknown"
        with pytest.raises(JobNotFound):
            await c.wait_for(jid)
        with pytest.raises(JobNotFound):
            await c.cancel(jid)

        done = await c.push(q, 2)
        job = await c.pull(q)
        assert job is not None and job.id == done
        await c.ack(done)
        with pytest.raises(JobFinished) as fin:
            await c.cancel(done)
        assert fin.value.job_id == done

        with pytest.raises(DuplicateJob) as dup:
            await c.push(q, 3, unique_key="u1")
            await c.push(q, 4, unique_key="u1")
        assert dup.value.key == "u1"
        with pytest.raises(UnknownDependency) as dep:
            await c.push(q, 5, depends_on=[987_654_321])
        assert dep.value.job_id == 987_654_321
        with pytest.raises(InvalidRequest) as inv:
            await c.push(q, 6, priority=2**40)
        assert inv.value.message.startswith("Invalid: ") and "priority" in inv.value.message
        # Refused locally (cannot be encoded): nothing sent, the connection is unaffected.
        with pytest.raises(InvalidRequest, match="not JSON-serialisable"):
            await c.push(q, object())
        w = await c.push(q, 7)
        with pytest.raises(WaitTimeout) as wt:
            await c.wait_for(w, timeout=0.05)
        assert wt.value.state == "waiting"


async def test_frame_limit_is_checked_before_sending(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend, max_frame_bytes=4096) as c:
        with pytest.raises(InvalidRequest, match="frame exceeds 4096 bytes"):
            await c.push(q, "z" * 5000)
        jid = await c.push(q, "small")
        assert await c.get_state(jid) == "waiting"
        assert c.drops == 0 and c.connections == 1


async def test_queue_controls(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        await c.push(q, 1)
        await c.pause(q)
        info = {qi.name: qi for qi in await c.list_queues()}[q]
        assert info.paused and info.pending == 1
        assert await c.pull(q, timeout=0.05) is None
        await c.resume(q)
        await c.rate_limit(q, 5)
        await c.set_concurrency(q, 2)
        info = {qi.name: qi for qi in await c.list_queues()}[q]
        assert not info.paused and info.rate_limit == 5 and info.concurrency_limit == 2
        job = await c.pull(q, timeout=5)
        assert job is not None
        m = await c.metrics()
        mq = {x.name: x for x in m.queues}[q]
        assert mq.rate_limit == 5 and mq.processing == 1
        await c.clear_rate_limit(q)
        await c.clear_concurrency(q)
        info = {qi.name: qi for qi in await c.list_queues()}[q]
        assert info.rate_limit is None and info.concurrency_limit is None
        with pytest.raises(InvalidRequest):
            await c.rate_limit(q, 0)
        await c.ack(job.id)


async def test_cron(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    name = qname("cron")
    async with open_client(cluster, anyio_backend) as c:
        await c.cron(name, q, {"tick": True}, "*/1", priority=3)
        entry = {e.name: e for e in await c.cron_list()}[name]
        assert (entry.queue, entry.data, entry.schedule, entry.priority) == (
            q,
            {"tick": True},
            "*/1",
            3,
        )
        assert entry.next_run is not None and entry.next_run > 0
        job = await c.pull(q, timeout=10)  # it fires every second
        assert job is not None and job.data == {"tick": True} and job.priority == 3
        await c.ack(job.id)
        await c.cron_delete(name)
        assert name not in {e.name for e in await c.cron_list()}
        with pytest.raises(CronNotFound):
            await c.cron_delete(name)
        with pytest.raises(InvalidRequest):
            await c.cron(name, q, None, "not a schedule")


async def test_stats_and_metrics(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        before = await c.metrics()
        await c.push(q, 1)
        await c.push(q, 2, delay=60_000)
        s = await c.stats()
        assert s.queued >= 1 and s.delayed >= 1
        m = await c.metrics()
        assert m.total_pushed >= before.total_pushed + 2
        assert q in {x.name for x in m.queues}
        assert isinstance(m.jobs_per_second, float | int)
        raw = await c.call("STATS")
        assert raw["ok"] is True and "queued" in raw


async def test_blocking_pull_does_not_hold_back_other_calls(
    cluster: Cluster, anyio_backend: str
) -> None:
    q = qname()
    other = qname()
    async with open_client(cluster, anyio_backend) as c:
        got: list[Any] = []

        async def puller() -> None:
            got.append(await c.pull(q))  # no timeout: waits until a job comes

        async with anyio.create_task_group() as tg:
            tg.start_soon(puller)
            # Many calls on the same connection complete while the pull waits.
            results: dict[int, int] = {}

            async def one(i: int) -> None:
                jid = await c.push(other, i)
                results[i] = jid
                assert await c.get_state(jid) == "waiting"

            with anyio.fail_after(20):
                async with anyio.create_task_group() as inner:
                    for i in range(200):
                        inner.start_soon(one, i)
            assert len(results) == 200 and not got
            jid = await c.push(q, "wake")
            with anyio.fail_after(10):
                while not got:
                    await anyio.sleep(0.005)
        assert got[0] is not None and got[0].id == jid
        await c.ack(jid)
        assert c.connections == 1  # all of it over one connection


async def test_abandoned_pull_gives_its_job_back(cluster: Cluster, anyio_backend: str) -> None:
    q = qname()
    async with open_client(cluster, anyio_backend) as c:
        with anyio.move_on_after(0.1):
            await c.pull(q)  # parked on the server, then abandoned here
        jid = await c.push(q, "x")
        # The parked pull takes the job; the client gives it straight back with FAIL.
        job = await eventually(lambda: c.get_job(jid), lambda r: r[0] and r[0].attempts == 1)
        assert job.state in ("waiting", "delayed")
        assert job.job is not None and job.job.progress_msg == ABANDONED_PULL_ERROR
        again = await c.pull(q, timeout=5)
        assert again is not None and again.id == jid
        await c.ack(jid, "ok")
        assert await c.wait_for(jid, 5) == "ok"


async def test_unix_socket(cluster: Cluster, unix_path: str, anyio_backend: str) -> None:
    assert current_backend() == anyio_backend
    q = qname()
    async with AsyncClient(path=unix_path) as c:
        assert c.settings.address == f"unix:{unix_path}"
        jid = await c.push(q, {"via": "unix"})
        job = await c.pull(q, timeout=5)
        assert job is not None and job.id == jid and job.data == {"via": "unix"}
        await c.ack(jid, 42)
        assert await c.get_result(jid) == 42


async def test_connect_failure_is_immediate(anyio_backend: str) -> None:
    from magicqueue_client import ConnectionLost

    assert current_backend() == anyio_backend
    with pytest.raises(ConnectionLost, match="cannot connect"):
        async with AsyncClient(path="/nonexistent/magicqueue.sock"):
            pass
