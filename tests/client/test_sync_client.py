"""The blocking Client against the real cluster: every method, TCP and Unix socket."""

from __future__ import annotations

import threading
import time

import pytest

from magicqueue_client import (
    Client,
    ConnectionLost,
    CronNotFound,
    DuplicateJob,
    InvalidRequest,
    JobFailed,
    JobFinished,
    JobNotActive,
    JobNotFound,
    JobSpec,
    WaitTimeout,
)
from tests.client.helpers import qname
from tests.harness import Cluster

pytestmark = pytest.mark.timeout(60)


def test_job_lifecycle(cluster: Cluster) -> None:
    q = qname("sync")
    with Client("127.0.0.1", cluster.port) as c:
        parent = c.push(q, "p")
        jid = c.push(
            q,
            {"x": 1},
            priority=5,
            ttl=600_000,
            timeout=300_000,
            max_attempts=2,
            backoff=100,
            unique_key=f"u-{q}",
            depends_on=[parent],
            tags=["t"],
        )
        job, state = c.get_job(jid)
        assert state == "waiting-children" and job is not None
        assert (job.priority, job.max_attempts, job.backoff, job.tags) == (5, 2, 100, ("t",))
        p = c.pull(q, timeout=5)
        assert p is not None and p.id == parent
        c.ack(parent)
        got = c.pull(q)
        assert got is not None and got.id == jid and c.get_state(jid) == "active"
        c.progress(jid, 25, "quarter")
        pr = c.get_progress(jid)
        assert (pr.progress, pr.message) == (25, "quarter")
        c.ack(jid, {"ok": 1})
        assert c.get_result(jid) == {"ok": 1}
        assert c.wait_for(jid, 5) == {"ok": 1}
        assert c.get_job(jid) == (None, "completed")
        assert c.pull(q, timeout=0) is None
        assert c.pull_batch(q, 3, timeout=0.05) == []

        ids = c.push_batch(q, [JobSpec(i) for i in range(12_000)])
        assert len(ids) == 12_000
        jobs = c.pull_batch(q, 10_000, timeout=5)
        assert [j.data for j in jobs] == list(range(10_000))
        assert c.ack_batch([j.id for j in jobs]) == 10_000
        rest = c.pull_batch(q, 10_000, timeout=5)
        assert len(rest) == 2_000
        c.ack_batch([j.id for j in rest])


def test_failures_dlq_and_errors(cluster: Cluster) -> None:
    q = qname("sync")
    with Client(port=cluster.port) as c:
        a = c.push(q, "a", max_attempts=1)
        job = c.pull(q, timeout=5)
        assert job is not None and job.id == a
        c.fail(a, "nope")
        assert c.get_state(a) == "failed"
        assert [j.id for j in c.dlq(q, count=10)] == [a]
        with pytest.raises(JobFailed, match="nope"):
            c.wait_for(a, 5)
        assert c.retry_dlq(q) == 1
        job = c.pull(q, timeout=5)
        assert job is not None and job.id == a
        c.fail(a)
        assert c.retry_dlq(q, id=a) == 1

        with pytest.raises(JobNotActive):
            c.progress(a, 1)
        with pytest.raises(JobNotFound):
            c.ack(123_456_789_000)
        c.cancel(a)
        with pytest.raises(JobNotFound):
            c.wait_for(a)
        d = c.push(q, "d")
        job = c.pull(q, timeout=5)
        assert job is not None and job.id == d
        c.ack(d)
        with pytest.raises(JobFinished):
            c.cancel(d)
        c.push(q, 1, unique_key="k")
        with pytest.raises(DuplicateJob):
            c.push(q, 2, unique_key="k")
        with pytest.raises(InvalidRequest):
            c.progress(d, -1)
        w = c.push(q, "w")
        with pytest.raises(WaitTimeout):
            c.wait_for(w, 0.05)
        with pytest.raises(InvalidRequest, match="frame exceeds"):
            c.push(q, "z" * (c.settings.max_frame_bytes + 1))
        assert c.get_state(w) == "waiting" and c.drops == 0  # the connection stayed up


def test_queue_controls_cron_stats(cluster: Cluster) -> None:
    q = qname("sync")
    name = qname("cron")
    with Client(port=cluster.port) as c:
        c.push(q, 1)
        c.pause(q)
        assert c.pull(q, timeout=0.05) is None
        c.resume(q)
        c.rate_limit(q, 3)
        c.set_concurrency(q, 1)
        info = {x.name: x for x in c.list_queues()}[q]
        assert (info.paused, info.rate_limit, info.concurrency_limit) == (False, 3, 1)
        c.clear_rate_limit(q)
        c.clear_concurrency(q)
        info = {x.name: x for x in c.list_queues()}[q]
        assert (info.rate_limit, info.concurrency_limit) == (None, None)
        c.cron(name, q, [1], "0 0 * * *")
        assert {e.name: e for e in c.cron_list()}[name].data == [1]
        c.cron_delete(name)
        with pytest.raises(CronNotFound):
            c.cron_delete(name)
        assert c.stats().queued >= 1
        assert q in {x.name for x in c.metrics().queues}
        assert c.call("LISTQUEUES")["ok"] is True


def test_unix_socket_and_threads(cluster: Cluster, unix_path: str) -> None:
    q = qname("sync")
    with Client(path=unix_path) as c:
        got: list[object] = []
        # Another thread waits in a blocking pull on its own client; this one pushes.
        with Client(path=unix_path) as waiter:
            t = threading.Thread(target=lambda: got.append(waiter.pull(q, timeout=10)))
            t.start()
            jid = c.push(q, "hello")
            t.join(15)
        assert not t.is_alive()
        job = got[0]
        assert job is not None and getattr(job, "id", None) == jid
        # The waiter's connection closed with the job still active: the server fails it back.
        deadline = time.monotonic() + 10
        while (lookup := c.get_job(jid)).state != "waiting":
            assert time.monotonic() < deadline, lookup
            time.sleep(0.01)
        assert lookup.job is not None and lookup.job.attempts == 1
        assert lookup.job.progress_msg == "Worker connection lost"


def test_connect_failure_is_immediate() -> None:
    with pytest.raises(ConnectionLost, match="cannot connect"):
        Client(path="/nonexistent/magicqueue.sock").connect()
