"""STATS and METRICS over the wire: counters gathered from both workers.

These counters are global to the cluster, so each test compares them before and after its own
work (a delta), and every test in this module leaves nothing behind that could change them later:
no delayed or retrying jobs, and every pulled job is acked or cancelled before the test ends (a
job left active would be released when its connection closes, which would move the counters
under the next test).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.harness import Client, Cluster
from tests.integration.conftest import Names

Connect = Callable[..., Client]
STATS_FIELDS = ("queued", "processing", "delayed", "dlq", "waiting_children")


def stats(c: Client) -> dict[str, int]:
    r = c.ok("STATS")
    assert set(r) == {"ok", *STATS_FIELDS}
    return {k: r[k] for k in STATS_FIELDS}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in STATS_FIELDS}


def expect(**changes: int) -> dict[str, int]:
    return {k: changes.get(k, 0) for k in STATS_FIELDS}


def queue_info(c: Client, queue: str) -> dict[str, Any]:
    found = [q for q in c.ok("LISTQUEUES")["queues"] if q["name"] == queue]
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def test_08_pull_batch(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    before = stats(c)
    c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(10)])
    jobs = c.ok("PULLB", queue=q, count=5)["jobs"]
    assert len(jobs) == 5
    assert delta(before, stats(c)) == expect(queued=5, processing=5)
    rest = c.ok("PULLB", queue=q, count=10, timeout=0)["jobs"]
    assert len(rest) == 5
    assert c.ok("ACKB", ids=[j["id"] for j in jobs + rest]) == {"ok": True, "ids": [10]}
    assert delta(before, stats(c)) == expect()


def test_09_ack_batch(connect: Connect, names: Names) -> None:
    c = connect()
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    before = stats(c)
    ids = []
    for q, n in ((q0, 3), (q1, 2)):
        c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(n)])
        ids += [j["id"] for j in c.ok("PULLB", queue=q, count=5)["jobs"]]
    assert len(ids) == 5
    assert delta(before, stats(c)) == expect(processing=5)
    assert c.ok("ACKB", ids=ids) == {"ok": True, "ids": [5]}
    assert delta(before, stats(c)) == expect()


def test_20_cancel_processing_job_stats(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    before = stats(c)
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    c.ok("PULL", queue=q)
    assert delta(before, stats(c)) == expect(processing=1)
    c.ok("CANCEL", id=jid)
    assert delta(before, stats(c)) == expect()


def test_30_job_dependencies_multiple_stats(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    before = stats(c)
    p1 = c.ok("PUSH", queue=q, data=1)["id"]
    p2 = c.ok("PUSH", queue=q, data=2)["id"]
    child = c.ok("PUSH", queue=q, data=3, depends_on=[p1, p2])["id"]
    assert delta(before, stats(c)) == expect(queued=2, waiting_children=1)
    for p in (p1, p2):
        assert c.ok("PULL", queue=q)["job"]["id"] == p
        c.ok("ACK", id=p)
    assert delta(before, stats(c)) == expect(queued=1)  # the child
    assert c.ok("PULL", queue=q)["job"]["id"] == child
    c.ok("ACK", id=child)


def test_37_stats(connect: Connect, names: Names) -> None:
    c = connect()
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    before = stats(c)
    c.ok("PUSHB", queue=q0, jobs=[{"data": i} for i in range(3)])
    b0, b1 = c.ok("PUSHB", queue=q1, jobs=[{"data": i} for i in range(2)])["ids"]
    assert delta(before, stats(c)) == expect(queued=5)
    assert c.ok("PULL", queue=q1)["job"]["id"] == b0
    assert delta(before, stats(c)) == expect(queued=4, processing=1)
    # delayed and dlq are counted too, on both workers.
    later = c.ok("PUSH", queue=q0, data="later", delay=600_000)["id"]
    dead = c.ok("PUSH", queue=q1, data="dead", max_attempts=1)["id"]
    assert c.ok("PULL", queue=q1)["job"]["id"] == b1
    c.ok("ACK", id=b0)
    assert delta(before, stats(c)) == expect(queued=4, processing=1, delayed=1)
    assert c.ok("PULL", queue=q1)["job"]["id"] == dead
    c.ok("FAIL", id=dead)
    assert delta(before, stats(c)) == expect(queued=3, processing=1, delayed=1, dlq=1)
    # Clean up: nothing left that changes with time or with our connection closing.
    c.ok("CANCEL", id=later)
    c.ok("ACK", id=b1)
    jobs = c.ok("PULLB", queue=q0, count=10, timeout=0)["jobs"]
    assert c.ok("ACKB", ids=[j["id"] for j in jobs]) == {"ok": True, "ids": [3]}
    assert delta(before, stats(c)) == expect(dlq=1)


def test_38_metrics(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    m0 = c.ok("METRICS")["metrics"]
    for i in range(5):
        jid = c.ok("PUSH", queue=q, data=i)["id"]
        assert c.ok("PULL", queue=q)["job"]["id"] == jid
        c.ok("ACK", id=jid)
    dead = c.ok("PUSH", queue=q, data="x", max_attempts=1)["id"]
    c.ok("PULL", queue=q)
    c.ok("FAIL", id=dead, error="no")
    m1 = c.ok("METRICS")["metrics"]
    assert m1["total_pushed"] - m0["total_pushed"] == 6
    assert m1["total_completed"] - m0["total_completed"] == 5
    assert m1["total_failed"] - m0["total_failed"] == 1
    assert m1["total_expired"] == m0["total_expired"]
    for k in ("jobs_per_second", "avg_latency_ms"):
        assert isinstance(m1[k], int | float) and m1[k] >= 0
    mine = [x for x in m1["queues"] if x["name"] == q]
    assert mine == [{"name": q, "pending": 0, "processing": 0, "dlq": 1, "rate_limit": None}]


def test_51_concurrent_push(cluster: Cluster, names: Names) -> None:
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    with cluster.client() as c:
        before = stats(c)

    def producer(k: int) -> list[int]:
        with cluster.client() as p:
            return [p.ok("PUSH", queue=(q0, q1)[k % 2], data=[k, i])["id"] for i in range(10)]

    with ThreadPoolExecutor(10) as pool:
        ids = [i for part in pool.map(producer, range(10)) for i in part]
    assert len(set(ids)) == 100
    with cluster.client() as c:
        assert delta(before, stats(c)) == expect(queued=100)
        assert queue_info(c, q0)["pending"] + queue_info(c, q1)["pending"] == 100
        for q in (q0, q1):
            jobs = c.ok("PULLB", queue=q, count=100, timeout=0)["jobs"]
            assert c.ok("ACKB", ids=[j["id"] for j in jobs])["ids"] == [50]
        assert delta(before, stats(c)) == expect()


def test_52_concurrent_push_pull(cluster: Cluster, names: Names) -> None:
    q = names.queue()
    c = cluster.client()
    before = stats(c)
    c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(50)])

    def push(i: int) -> int:
        with cluster.client() as p:
            return int(p.ok("PUSH", queue=q, data=1000 + i)["id"])

    # A puller must keep its connection open: closing it would release the job (lost worker).
    pullers = [cluster.client() for _ in range(50)]

    def pull(i: int) -> int:
        job = pullers[i].ok("PULL", queue=q, timeout=10_000)["job"]
        assert job is not None
        return int(job["id"])

    with ThreadPoolExecutor(20) as pool:
        pushed = pool.map(push, range(50))
        pulled = pool.map(pull, range(50))
        pushed_ids, pulled_ids = list(pushed), list(pulled)
    assert len(set(pulled_ids)) == 50 and len(set(pushed_ids)) == 50
    info = queue_info(c, q)
    assert info["pending"] + info["processing"] == 100
    assert info["processing"] == 50
    assert delta(before, stats(c)) == expect(queued=50, processing=50)
    assert c.ok("ACKB", ids=pulled_ids)["ids"] == [50]
    rest = c.ok("PULLB", queue=q, count=100, timeout=0)["jobs"]
    assert c.ok("ACKB", ids=[j["id"] for j in rest])["ids"] == [50]
    assert delta(before, stats(c)) == expect()
    for p in pullers:
        p.close()
    c.close()
