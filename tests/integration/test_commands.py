"""Every command of PROTOCOL.md over the wire, once over TCP and once over the Unix socket.

The original server's own tests (spec/original-tests.md) are named `test_NN_<their name>` so each
behaviour can be found; where PROTOCOL.md marks a "fix:", the fixed behaviour is what is checked.
Each test uses its own queue names (the `names` fixture), so tests sharing the module's cluster
never see each other's jobs. Counters that are global to the cluster (STATS, METRICS) are checked
in test_counters.py, where every test leaves nothing that changes with time.

Nothing here waits by sleeping: a job that becomes ready later is waited for with a PULL that
carries a `timeout`, and the server answers the moment it is ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import Client, Cluster
from tests.integration.conftest import Names, owner_of_queue

Connect = Callable[..., Client]
MISSING = 999_999  # an id that never existed (ids are seq * 32 + shard; the tests stay far below)

ALL_OPTIONS: dict[str, Any] = {
    "priority": 10,
    "delay": 0,
    "ttl": 60_000,
    "timeout": 30_000,
    "max_attempts": 3,
    "backoff": 1000,
    "unique_key": "key-1",
    "tags": ["urgent", "backend"],
}


def now_ms() -> int:
    return int(time.time() * 1000)


def pull(c: Client, queue: str, timeout: int = 5000) -> dict[str, Any]:
    """PULL that must get a job within `timeout` ms."""
    job = c.ok("PULL", queue=queue, timeout=timeout)["job"]
    assert job is not None, f"no job in {queue!r} within {timeout} ms"
    return job  # type: ignore[no-any-return]


def queue_info(c: Client, queue: str) -> dict[str, Any]:
    found = [q for q in c.ok("LISTQUEUES")["queues"] if q["name"] == queue]
    assert len(found) == 1, f"{queue!r} listed {len(found)} times"
    return found[0]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- core operations (1-9)


def test_01_push_and_pull(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue("test")
    r = c.ok("PUSH", queue=q, data={"hello": "world"})
    assert type(r["id"]) is int and r["id"] > 0
    job = c.ok("PULL", queue=q)["job"]
    assert job["id"] == r["id"] and job["queue"] == q and job["data"] == {"hello": "world"}


def test_02_push_with_all_options(connect: Connect, names: Names) -> None:
    c = connect()
    q, parent_q = names.queue(), names.queue("parent")
    parent = c.ok("PUSH", queue=parent_q, data=None)["id"]
    c.ok("ACK", id=pull(c, parent_q)["id"])  # a completed parent is already satisfied
    before = now_ms()
    jid = c.ok("PUSH", queue=q, data={"x": [1, 2]}, depends_on=[parent], **ALL_OPTIONS)["id"]
    got = c.ok("GETJOB", id=jid)
    assert got["state"] == "waiting"
    for job in (got["job"], pull(c, q)):
        assert job["id"] == jid and job["queue"] == q and job["data"] == {"x": [1, 2]}
        for k in ("priority", "ttl", "timeout", "max_attempts", "backoff", "unique_key", "tags"):
            assert job[k] == ALL_OPTIONS[k], k
        assert job["depends_on"] == [parent]
        assert job["attempts"] == 0 and job["progress"] == 0 and job["progress_msg"] is None
        assert before - 5 <= job["created_at"] == job["run_at"] <= now_ms() + 5
    # The wire shape keeps the documented field order, `id` first.
    assert list(got["job"]) == [
        "id", "queue", "data", "priority", "created_at", "run_at", "started_at", "attempts",
        "max_attempts", "backoff", "ttl", "timeout", "unique_key", "depends_on", "progress",
        "progress_msg", "tags",
    ]  # fmt: skip
    assert got["job"]["started_at"] == 0


def test_03_push_batch(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    ids = c.ok("PUSHB", queue=q, jobs=[{"data": "a", "priority": 0}, {"data": "b", "priority": 5}])[
        "ids"
    ]
    assert len(ids) == 2
    first, second = pull(c, q), pull(c, q)
    assert (first["id"], first["priority"], first["data"]) == (ids[1], 5, "b")
    assert (second["id"], second["priority"], second["data"]) == (ids[0], 0, "a")


def test_04_push_batch_large(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    ids = c.ok("PUSHB", queue=q, jobs=[{"data": i, "priority": i} for i in range(100)])["ids"]
    assert len(ids) == 100 and len(set(ids)) == 100
    # ids come back in input order: the i-th id is the job pushed with data i.
    for i in (0, 1, 50, 99):
        assert c.ok("GETJOB", id=ids[i])["job"]["data"] == i
    assert pull(c, q)["priority"] == 99
    rest = c.ok("PULLB", queue=q, count=100, timeout=0)["jobs"]
    assert [j["priority"] for j in rest] == list(range(98, -1, -1))
    assert [j["id"] for j in rest] == ids[98::-1]


def test_05_ack(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    assert pull(c, q)["id"] == jid
    assert c.call("ACK", id=jid) == {"ok": True}
    assert c.call("ACK", id=jid) == {"ok": False, "error": f"Job {jid} not found"}


def test_06_ack_with_result(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    pull(c, q)
    c.ok("ACK", id=jid, result={"computed": 42, "success": True})
    assert c.ok("GETRESULT", id=jid) == {
        "ok": True,
        "id": jid,
        "result": {"computed": 42, "success": True},
    }
    # An ACK without a result stores none.
    j2 = c.ok("PUSH", queue=q, data=2)["id"]
    pull(c, q)
    c.ok("ACK", id=j2)
    assert c.ok("GETRESULT", id=j2)["result"] is None


def test_07_ack_nonexistent_job(connect: Connect) -> None:
    c = connect()
    assert c.call("ACK", id=MISSING) == {"ok": False, "error": f"Job {MISSING} not found"}


def test_ack_of_a_waiting_job_is_refused(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    assert c.call("ACK", id=jid) == {"ok": False, "error": f"Job {jid} not found"}
    assert c.ok("GETSTATE", id=jid)["state"] == "waiting"


def test_pullb_returns_what_is_ready_at_once(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    ids = c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(3)])["ids"]
    # Three are ready and ten are asked for: the three come back without waiting for more.
    jobs = c.ok("PULLB", queue=q, count=10, timeout=20_000)["jobs"]
    assert [j["id"] for j in jobs] == ids
    assert all(c.ok("GETSTATE", id=i)["state"] == "active" for i in ids)


def test_ackb_across_both_workers(connect: Connect, names: Names) -> None:
    c = connect()
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    active = []
    for q in (q0, q1):
        c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(3)])
        active += [j["id"] for j in c.ok("PULLB", queue=q, count=3)["jobs"]]
    assert {i % 32 % 2 for i in active} == {0, 1}  # the ids live on both workers
    waiting = c.ok("PUSH", queue=q1, data="not pulled")["id"]
    done = c.ok("PUSH", queue=q0, data="done")["id"]
    c.ok("ACK", id=pull(c, q0)["id"])
    r = c.ok("ACKB", ids=[*active, waiting, done, MISSING])
    assert r == {"ok": True, "ids": [6]}  # only the active ones count
    for i in active:
        assert c.ok("GETSTATE", id=i)["state"] == "completed"
    assert c.ok("GETSTATE", id=waiting)["state"] == "waiting"
    assert c.ok("ACKB", ids=[]) == {"ok": True, "ids": [0]}


# ---------------------------------------------------------------- fail and retry (10-12)


def test_10_fail_and_retry(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, max_attempts=3)["id"]
    job = pull(c, q)
    assert (job["id"], job["attempts"]) == (jid, 0)
    c.ok("FAIL", id=jid, error="error")
    again = pull(c, q)
    assert (again["id"], again["attempts"], again["progress_msg"]) == (jid, 1, "error")
    assert again["started_at"] >= again["run_at"]


def test_11_fail_with_backoff(cluster: Cluster, names: Names) -> None:
    """backoff * 2^(attempts-1): 1000, 2000, 4000 ms for a base of 1000 (fix).

    TCP only: it waits out two backoffs (3 s), and the transport plays no part in it.
    """
    c = cluster.client()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, max_attempts=10, backoff=1000)["id"]
    for attempt, expected in ((1, 1000), (2, 2000), (3, 4000)):
        job = pull(c, q, timeout=10_000)  # waits out the previous backoff
        assert (job["id"], job["attempts"]) == (jid, attempt - 1)
        t0 = now_ms()
        c.ok("FAIL", id=jid, error=f"try {attempt}")
        t1 = now_ms()
        got = c.ok("GETJOB", id=jid)
        assert got["state"] == "delayed"
        assert got["job"]["attempts"] == attempt
        # run_at was set between our two clock readings, `expected` ms ahead (ms rounding slack).
        assert t0 + expected - 2 <= got["job"]["run_at"] <= t1 + expected + 2
        if attempt < 3:
            assert c.ok("PULL", queue=q, timeout=0)["job"] is None  # not before run_at
    c.ok("CANCEL", id=jid)  # leave nothing behind that changes with time
    c.close()


def test_12_fail_nonexistent_job(connect: Connect) -> None:
    c = connect()
    assert c.call("FAIL", id=MISSING, error="x") == {
        "ok": False,
        "error": f"Job {MISSING} not found",
    }


def test_fail_moves_to_dlq_at_max_attempts(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, max_attempts=2)["id"]
    pull(c, q)
    c.ok("FAIL", id=jid, error="first")
    assert pull(c, q)["attempts"] == 1
    c.ok("FAIL", id=jid, error="second")
    got = c.ok("GETJOB", id=jid)
    assert got["state"] == "failed"
    assert (got["job"]["attempts"], got["job"]["progress_msg"]) == (2, "second")
    assert [j["id"] for j in c.ok("DLQ", queue=q)["jobs"]] == [jid]
    # A FAIL without an error leaves the reason null.
    j2 = c.ok("PUSH", queue=q, data=2, max_attempts=1)["id"]
    pull(c, q)
    c.ok("FAIL", id=j2)
    assert c.ok("GETJOB", id=j2)["job"]["progress_msg"] is None


# ---------------------------------------------------------------- DLQ (13-15)


def test_13_dlq(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, max_attempts=1)["id"]
    pull(c, q)
    c.ok("FAIL", id=jid, error="boom")
    dlq = c.ok("DLQ", queue=q)["jobs"]
    assert [j["id"] for j in dlq] == [jid] and dlq[0]["progress_msg"] == "boom"
    assert c.ok("RETRYDLQ", queue=q) == {"ok": True, "ids": [1]}
    assert c.ok("DLQ", queue=q)["jobs"] == []
    job = pull(c, q)
    assert (job["id"], job["attempts"]) == (jid, 0)  # RETRYDLQ resets attempts


def test_14_dlq_retry_single(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    j1 = c.ok("PUSH", queue=q, data=1, max_attempts=1)["id"]
    j2 = c.ok("PUSH", queue=q, data=2, max_attempts=1)["id"]
    for _ in range(2):
        c.ok("FAIL", id=pull(c, q)["id"])
    assert [j["id"] for j in c.ok("DLQ", queue=q)["jobs"]] == [j1, j2]
    assert c.ok("RETRYDLQ", queue=q, id=j1) == {"ok": True, "ids": [1]}
    assert [j["id"] for j in c.ok("DLQ", queue=q)["jobs"]] == [j2]
    assert c.ok("GETSTATE", id=j1)["state"] == "waiting"
    assert c.ok("RETRYDLQ", queue=q, id=j1) == {"ok": True, "ids": [0]}  # not in the DLQ now


def test_15_dlq_with_limit(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("PUSHB", queue=q, jobs=[{"data": i, "max_attempts": 1} for i in range(10)])
    for job in c.ok("PULLB", queue=q, count=10)["jobs"]:
        c.ok("FAIL", id=job["id"])
    assert len(c.ok("DLQ", queue=q, count=5)["jobs"]) == 5
    assert len(c.ok("DLQ", queue=q)["jobs"]) == 10


def test_dlq_is_oldest_first(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    ids = c.ok("PUSHB", queue=q, jobs=[{"data": i, "max_attempts": 1} for i in range(3)])["ids"]
    c.ok("PULLB", queue=q, count=3)
    order = [ids[2], ids[0], ids[1]]  # fail out of push order: arrival in the DLQ decides
    for jid in order:
        c.ok("FAIL", id=jid, error=f"e{jid}")
    dlq = c.ok("DLQ", queue=q)["jobs"]
    assert [j["id"] for j in dlq] == order
    assert [j["progress_msg"] for j in dlq] == [f"e{j}" for j in order]
    assert all(c.ok("GETSTATE", id=j)["state"] == "failed" for j in ids)


# ---------------------------------------------------------------- unique keys (16-18)


def test_16_unique_key(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, unique_key="unique-123")["id"]
    assert c.call("PUSH", queue=q, data=2, unique_key="unique-123") == {
        "ok": False,
        "error": "Duplicate job with key: unique-123",
    }
    pull(c, q)
    c.ok("ACK", id=jid)
    assert c.ok("PUSH", queue=q, data=3, unique_key="unique-123")["id"] != jid


def test_17_unique_key_different_queues(connect: Connect, names: Names) -> None:
    c = connect()
    q1, q2 = names.queue(worker=0), names.queue(worker=1)
    a = c.ok("PUSH", queue=q1, data=1, unique_key="shared")["id"]
    b = c.ok("PUSH", queue=q2, data=1, unique_key="shared")["id"]
    assert a != b


def test_18_unique_key_released_on_fail(connect: Connect, names: Names) -> None:
    """fix: a key is released when its job lands in the DLQ, and taken back on RETRYDLQ if free."""
    c = connect()
    q = names.queue()
    first = c.ok("PUSH", queue=q, data=1, max_attempts=1, unique_key="k")["id"]
    pull(c, q)
    c.ok("FAIL", id=first)
    assert c.ok("GETSTATE", id=first)["state"] == "failed"
    second = c.ok("PUSH", queue=q, data=2, unique_key="k")["id"]  # the key is free again
    # While `second` holds the key, the DLQ job cannot come back and is not counted.
    assert c.ok("RETRYDLQ", queue=q) == {"ok": True, "ids": [0]}
    assert [j["id"] for j in c.ok("DLQ", queue=q)["jobs"]] == [first]
    assert pull(c, q)["id"] == second
    c.ok("ACK", id=second)
    assert c.ok("RETRYDLQ", queue=q) == {"ok": True, "ids": [1]}
    assert c.call("PUSH", queue=q, data=3, unique_key="k")["error"] == "Duplicate job with key: k"
    assert pull(c, q)["id"] == first


# ---------------------------------------------------------------- cancel (19-20)


def test_19_cancel(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, delay=60_000)["id"]
    assert c.ok("GETSTATE", id=jid)["state"] == "delayed"
    assert c.call("CANCEL", id=jid) == {"ok": True}
    assert c.ok("GETSTATE", id=jid)["state"] == "unknown"
    assert c.call("CANCEL", id=jid) == {"ok": False, "error": f"Job {jid} not found"}
    assert c.call("CANCEL", id=MISSING) == {"ok": False, "error": f"Job {MISSING} not found"}


def test_20_cancel_processing_job(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    pull(c, q)
    assert c.call("CANCEL", id=jid) == {"ok": True}
    assert c.ok("GETSTATE", id=jid)["state"] == "unknown"
    assert queue_info(c, q)["processing"] == 0
    assert c.call("ACK", id=jid) == {"ok": False, "error": f"Job {jid} not found"}


def test_cancel_finished_jobs_is_refused(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    done = c.ok("PUSH", queue=q, data=1)["id"]
    c.ok("ACK", id=pull(c, q)["id"])
    r = c.call("CANCEL", id=done)
    assert r["ok"] is False and str(done) in r["error"] and "completed" in r["error"]
    dead = c.ok("PUSH", queue=q, data=2, max_attempts=1)["id"]
    c.ok("FAIL", id=pull(c, q)["id"])
    r = c.call("CANCEL", id=dead)
    assert r["ok"] is False and str(dead) in r["error"] and "failed" in r["error"]
    assert c.ok("GETSTATE", id=done)["state"] == "completed"
    assert c.ok("GETSTATE", id=dead)["state"] == "failed"


# ---------------------------------------------------------------- progress (21-23)


def test_21_progress(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    pull(c, q)
    c.ok("PROGRESS", id=jid, progress=50, message="halfway")
    assert c.ok("GETPROGRESS", id=jid) == {
        "ok": True,
        "progress": {"id": jid, "progress": 50, "message": "halfway"},
    }
    job = c.ok("GETJOB", id=jid)["job"]
    assert (job["progress"], job["progress_msg"]) == (50, "halfway")


def test_22_progress_max_100(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    pull(c, q)
    c.ok("PROGRESS", id=jid, progress=150)
    assert c.ok("GETPROGRESS", id=jid)["progress"]["progress"] == 100


def test_23_progress_nonexistent(connect: Connect, names: Names) -> None:
    c = connect()
    assert c.call("GETPROGRESS", id=MISSING)["ok"] is False
    assert c.call("PROGRESS", id=MISSING, progress=1)["ok"] is False
    # Progress exists only for active jobs: a waiting one is refused both ways.
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    for r in (c.call("PROGRESS", id=jid, progress=10), c.call("GETPROGRESS", id=jid)):
        assert r["ok"] is False and str(jid) in r["error"]
    r = c.call("PROGRESS", id=jid, progress=-1)
    assert r["ok"] is False and r["error"].startswith("Invalid: ") and "progress" in r["error"]


# ---------------------------------------------------------------- priority (24-26)


@pytest.mark.parametrize(
    ("pushed", "expected"),
    [
        pytest.param([1, 3, 2], [3, 2, 1], id="24_priority_ordering"),
        pytest.param([-10, 0, 10], [10, 0, -10], id="25_priority_negative"),
    ],
)
def test_24_25_priority(
    connect: Connect, names: Names, pushed: list[int], expected: list[int]
) -> None:
    c = connect()
    q = names.queue()
    for p in pushed:
        c.ok("PUSH", queue=q, data=p, priority=p)
    assert [pull(c, q)["priority"] for _ in pushed] == expected


def test_26_fifo_same_priority(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    ids = [c.ok("PUSH", queue=q, data=i)["id"] for i in range(3)]
    assert [pull(c, q)["id"] for _ in ids] == ids


# ---------------------------------------------------------------- delayed (27-28)


def test_27_delayed_job(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, delay=100)["id"]
    got = c.ok("GETJOB", id=jid)
    assert got["state"] == "delayed"
    assert got["job"]["run_at"] == got["job"]["created_at"] + 100
    assert pull(c, q)["id"] == jid  # leave nothing delayed behind


def test_28_delayed_job_ordering(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    later = c.ok("PUSH", queue=q, data="later", delay=200, priority=5)["id"]
    now = c.ok("PUSH", queue=q, data="now")["id"]
    # fix: a delayed job never blocks a ready one, even with a higher priority.
    assert pull(c, q)["id"] == now
    assert pull(c, q)["id"] == later


# ---------------------------------------------------------------- dependencies (29-30)


def test_29_job_dependencies_single(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    parent = c.ok("PUSH", queue=q, data="p")["id"]
    child = c.ok("PUSH", queue=q, data="c", depends_on=[parent])["id"]
    assert c.ok("GETSTATE", id=child)["state"] == "waiting-children"
    assert pull(c, q)["id"] == parent
    assert c.ok("PULL", queue=q, timeout=0)["job"] is None  # the child is not pullable
    c.ok("ACK", id=parent)
    assert c.ok("GETSTATE", id=child)["state"] == "waiting"  # fix: at once
    assert pull(c, q)["id"] == child


def test_30_job_dependencies_multiple(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    p1 = c.ok("PUSH", queue=q, data=1)["id"]
    p2 = c.ok("PUSH", queue=q, data=2)["id"]
    child = c.ok("PUSH", queue=q, data=3, depends_on=[p1, p2])["id"]
    c.ok("ACK", id=pull(c, q)["id"])
    assert c.ok("GETSTATE", id=child)["state"] == "waiting-children"
    assert pull(c, q)["id"] == p2
    c.ok("ACK", id=p2)
    info = queue_info(c, q)
    assert (info["pending"], info["processing"]) == (1, 0)
    assert pull(c, q)["id"] == child


# ---------------------------------------------------------------- pause, limits (31-33)


def test_31_pause_resume(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    c.ok("PAUSE", queue=q)
    assert queue_info(c, q)["paused"] is True
    assert c.ok("PULL", queue=q, timeout=200)["job"] is None
    assert c.ok("PULLB", queue=q, count=5, timeout=0)["jobs"] == []
    c.ok("PUSH", queue=q, data=2)  # pause stops pulls, not pushes
    assert queue_info(c, q)["pending"] == 2
    c.ok("RESUME", queue=q)
    assert queue_info(c, q)["paused"] is False
    assert pull(c, q)["id"] == jid


def test_pause_holds_a_parked_pull_until_resume(connect: Connect, names: Names) -> None:
    c, other = connect(), connect()
    q = names.queue()
    c.ok("PAUSE", queue=q)
    c.send({"cmd": "PULL", "queue": q, "timeout": 20_000, "reqId": "parked"})
    jid = other.ok("PUSH", queue=q, data=1)["id"]
    assert c.call("GETSTATE", id=jid, reqId="probe") == {
        "ok": True,
        "id": jid,
        "state": "waiting",
        "reqId": "probe",
    }
    other.ok("RESUME", queue=q)
    r = c.recv()
    assert r["reqId"] == "parked" and r["job"]["id"] == jid


def test_32_rate_limit(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("RATELIMIT", queue=q, limit=100)
    c.ok("PUSH", queue=q, data=1)
    info = queue_info(c, q)
    assert (info["rate_limit"], info["concurrency_limit"]) == (100, None)
    metrics_q = [m for m in c.ok("METRICS")["metrics"]["queues"] if m["name"] == q]
    assert metrics_q[0]["rate_limit"] == 100
    c.ok("RATELIMITCLEAR", queue=q)
    assert queue_info(c, q)["rate_limit"] is None


def test_rate_limit_hands_out_one_token_per_job(cluster: Cluster, names: Names) -> None:
    with cluster.client() as c:
        q = names.queue()
        c.ok("RATELIMIT", queue=q, limit=10)
        c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(15)])
        # The bucket starts full (10 tokens): a batch pull gets at most 10 jobs right now.
        first = c.ok("PULLB", queue=q, count=15, timeout=0)["jobs"]
        assert 1 <= len(first) <= 10
        # It refills (10 per second), so the rest come out with waiting pulls.
        got = len(first)
        while got < 15:
            got += len(c.ok("PULLB", queue=q, count=15, timeout=10_000)["jobs"])
        assert got == 15
        c.ok("RATELIMITCLEAR", queue=q)


def test_33_concurrency_limit(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("SETCONCURRENCY", queue=q, limit=2)
    c.ok("PUSHB", queue=q, jobs=[{"data": i} for i in range(3)])
    info = queue_info(c, q)
    assert (info["concurrency_limit"], info["pending"]) == (2, 3)
    assert len(c.ok("PULLB", queue=q, count=3, timeout=0)["jobs"]) == 2
    c.ok("CLEARCONCURRENCY", queue=q)
    assert queue_info(c, q)["concurrency_limit"] is None
    assert c.ok("PULL", queue=q, timeout=0)["job"] is not None


def test_concurrency_one_lets_one_job_be_active(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("SETCONCURRENCY", queue=q, limit=1)
    a, b = c.ok("PUSHB", queue=q, jobs=[{"data": "a"}, {"data": "b"}])["ids"]
    assert pull(c, q)["id"] == a
    assert c.ok("PULL", queue=q, timeout=200)["job"] is None
    assert queue_info(c, q)["processing"] == 1
    c.ok("ACK", id=a)
    assert pull(c, q)["id"] == b
    c.ok("CLEARCONCURRENCY", queue=q)


# ---------------------------------------------------------------- cron (34-36)


def test_34_cron(connect: Connect, names: Names) -> None:
    c = connect()
    name, q = names.queue("cron"), names.queue()
    before = now_ms()
    assert c.call("CRON", name=name, queue=q, data={"k": 1}, schedule="*/60") == {"ok": True}
    mine = [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name]
    assert len(mine) == 1
    e = mine[0]
    assert (e["queue"], e["data"], e["schedule"], e["priority"]) == (q, {"k": 1}, "*/60", 0)
    assert before < e["next_run"] <= now_ms() + 60_000 + 5
    assert c.call("CRONDELETE", name=name) == {"ok": True}
    assert [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name] == []


def test_35_cron_delete_nonexistent(connect: Connect, names: Names) -> None:
    c = connect()
    assert c.call("CRONDELETE", name=names.queue("nonexistent")) == {
        "ok": False,
        "error": "Cron job not found",
    }


def test_36_cron_with_priority(connect: Connect, names: Names) -> None:
    c = connect()
    name, q = names.queue("cron"), names.queue()
    c.ok("CRON", name=name, queue=q, data=None, schedule="*/30", priority=100)
    # The same name replaces the entry.
    c.ok("CRON", name=name, queue=q, data="v2", schedule="*/45", priority=7)
    mine = [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name]
    assert [(e["priority"], e["schedule"], e["data"]) for e in mine] == [(7, "*/45", "v2")]
    c.ok("CRON", name=name, queue=q, data=None, schedule="*/30", priority=100)
    mine = [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name]
    assert [e["priority"] for e in mine] == [100]
    c.ok("CRONDELETE", name=name)


# ---------------------------------------------------------------- queues (39, 43)


def test_39_list_queues(connect: Connect, names: Names) -> None:
    c = connect()
    q1, q2 = names.queue(worker=0), names.queue(worker=1)
    c.ok("PUSH", queue=q1, data=1)
    c.ok("PUSHB", queue=q2, jobs=[{"data": 1}, {"data": 2}])
    assert len(c.ok("LISTQUEUES")["queues"]) >= 2
    assert queue_info(c, q2) == {
        "name": q2,
        "pending": 2,
        "processing": 0,
        "dlq": 0,
        "paused": False,
        "rate_limit": None,
        "concurrency_limit": None,
    }
    # Drained queues stay listed.
    c.ok("ACK", id=pull(c, q1)["id"])
    for j in c.ok("PULLB", queue=q2, count=2)["jobs"]:
        c.ok("ACK", id=j["id"])
    for q in (q1, q2):
        info = queue_info(c, q)
        assert (info["pending"], info["processing"], info["dlq"]) == (0, 0, 0)


def test_a_queue_with_only_a_setting_is_listed(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("SETCONCURRENCY", queue=q, limit=3)
    assert queue_info(c, q)["concurrency_limit"] == 3


def test_43_different_queues_different_shards(connect: Connect, names: Names) -> None:
    c = connect()
    before = {q["name"] for q in c.ok("LISTQUEUES")["queues"]}
    qs = [names.queue(f"queue-{i}") for i in range(100)]
    for q in qs:
        c.ok("PUSH", queue=q, data=1)
    after = {q["name"] for q in c.ok("LISTQUEUES")["queues"]}
    assert after - before == set(qs)  # exactly 100 new queues
    assert {owner_of_queue(q) for q in qs} == {0, 1}


# ---------------------------------------------------------------- edge cases (45-50)


def test_45_empty_queue_name(connect: Connect) -> None:
    c = connect()
    jid = c.ok("PUSH", queue="", data="empty")["id"]
    assert c.ok("GETJOB", id=jid)["job"]["queue"] == ""
    c.ok("CANCEL", id=jid)


def test_46_large_payload(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    data = {"numbers": list(range(10_000))}
    jid = c.ok("PUSH", queue=q, data=data)["id"]
    job = pull(c, q)
    assert job["id"] == jid and job["data"] == data


@pytest.mark.parametrize(
    "base",
    [
        "queue-with-dash",
        "queue_with_underscore",
        "queue.with.dots",
        "queue:with:colons",
        "queue/with/slashes",
        'quote"and\\backslash',
    ],
)
def test_47_special_characters_in_queue_name(connect: Connect, names: Names, base: str) -> None:
    c = connect()
    q = f"{base}-{names.queue()}"
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    job = pull(c, q)
    assert (job["id"], job["queue"]) == (jid, q)
    assert queue_info(c, q)["name"] == q


def test_48_unicode_queue_name(connect: Connect, names: Names) -> None:
    c = connect()
    q = f"队列名称-{names.queue()}"
    jid = c.ok("PUSH", queue=q, data={"emoji": "🚀"})["id"]
    job = pull(c, q)
    assert (job["id"], job["queue"], job["data"]) == (jid, q, {"emoji": "🚀"})


def test_49_null_json_data(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("PUSH", queue=q, data=None)
    assert pull(c, q)["data"] is None


def test_50_nested_json_data(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    data = {
        "level1": {"level2": {"level3": {"value": 42, "list": [1, "two", 3.5, None, True]}}},
        "array": [{"a": 1}, [2, [3, {"b": "c"}]], "s", -7, 1e-3],
        "unicode": "ünïcødé ✓",
    }
    c.ok("PUSH", queue=q, data=data)
    assert pull(c, q)["data"] == data


# ---------------------------------------------------------------- tags, GETJOB, GETSTATE


def test_58_push_with_tags(connect: Connect, names: Names) -> None:
    c = connect()
    jid = c.ok("PUSH", queue=names.queue(), data=1, tags=["urgent", "backend"])["id"]
    assert c.ok("GETJOB", id=jid)["job"]["tags"] == ["urgent", "backend"]


def test_59_push_with_empty_tags(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    a = c.ok("PUSH", queue=q, data=1, tags=[])["id"]
    b = c.ok("PUSH", queue=q, data=1)["id"]
    assert c.ok("GETJOB", id=a)["job"]["tags"] == []
    assert c.ok("GETJOB", id=b)["job"]["tags"] == []


def test_60_tags_preserved_after_pull(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("PUSH", queue=q, data=1, tags=["tag1", "tag2"])
    assert pull(c, q)["tags"] == ["tag1", "tag2"]


def test_74_get_job_includes_tags(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data={"to": "x"}, priority=5, tags=["priority", "email"])["id"]
    got = c.ok("GETJOB", id=jid)
    assert got["state"] == "waiting"
    assert (got["job"]["tags"], got["job"]["priority"]) == (["priority", "email"], 5)


def test_75_job_state_with_tags(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    jid = c.ok("PUSH", queue=q, data=1, tags=["t"])["id"]
    assert c.ok("GETSTATE", id=jid) == {"ok": True, "id": jid, "state": "waiting"}
    pull(c, q)
    assert c.ok("GETSTATE", id=jid) == {"ok": True, "id": jid, "state": "active"}
    c.ok("ACK", id=jid, result="r")
    assert c.ok("GETSTATE", id=jid) == {"ok": True, "id": jid, "state": "completed"}
    # Completed jobs keep no body.
    assert c.ok("GETJOB", id=jid) == {"ok": True, "job": None, "state": "completed"}


def test_unknown_ids_read_as_unknown(connect: Connect) -> None:
    c = connect()
    assert c.ok("GETSTATE", id=MISSING) == {"ok": True, "id": MISSING, "state": "unknown"}
    got = c.ok("GETJOB", id=MISSING)
    assert (got["job"], got["state"]) == (None, "unknown")
    assert c.ok("GETRESULT", id=MISSING) == {"ok": True, "id": MISSING, "result": None}


# ---------------------------------------------------------------- ttl, timeout, keys in batches


def test_ttl_expires_a_job_that_was_not_started(cluster: Cluster, names: Names) -> None:
    with cluster.client() as c:
        q = names.queue()
        m0 = c.ok("METRICS")["metrics"]
        jid = c.ok("PUSH", queue=q, data=1, ttl=200, unique_key="ttl-key")["id"]
        child = c.ok("PUSH", queue=q, data=2, depends_on=[jid])["id"]
        # Expiry is eager: probe until the job is gone (no PULL: that would start it).
        deadline = time.monotonic() + 10
        while c.ok("GETSTATE", id=jid)["state"] != "unknown":
            assert time.monotonic() < deadline, "the job never expired"
            time.sleep(0.01)
        assert c.ok("GETJOB", id=jid) == {"ok": True, "job": None, "state": "unknown"}
        assert c.ok("METRICS")["metrics"]["total_expired"] - m0["total_expired"] == 1
        got = c.ok("GETJOB", id=child)
        assert (got["state"], got["job"]["progress_msg"]) == ("failed", f"Dependency {jid} failed")
        # The unique key was released.
        again = c.ok("PUSH", queue=q, data=3, unique_key="ttl-key")["id"]
        assert c.ok("PULL", queue=q, timeout=5000)["job"]["id"] == again
        c.ok("ACK", id=again)


def test_job_timeout_fails_an_active_job(cluster: Cluster, names: Names) -> None:
    with cluster.client() as c:
        q = names.queue()
        jid = c.ok("PUSH", queue=q, data=1, timeout=200, max_attempts=3)["id"]
        assert pull(c, q)["id"] == jid
        # It is failed at started_at + timeout and retried at once (no backoff): wait for it.
        job = pull(c, q, timeout=10_000)
        assert (job["id"], job["attempts"], job["progress_msg"]) == (jid, 1, "Job timed out")
        c.ok("ACK", id=jid)
        j2 = c.ok("PUSH", queue=q, data=2, timeout=100, max_attempts=1)["id"]
        assert pull(c, q)["id"] == j2
        deadline = time.monotonic() + 10
        while c.ok("GETSTATE", id=j2)["state"] != "failed":
            assert time.monotonic() < deadline, "the job never timed out"
            time.sleep(0.01)
        assert c.ok("GETJOB", id=j2)["job"]["progress_msg"] == "Job timed out"
        assert c.call("ACK", id=j2) == {"ok": False, "error": f"Job {j2} not found"}  # too late


def test_pushb_honours_unique_keys_all_or_nothing(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    c.ok("PUSH", queue=q, data=0, unique_key="held")
    r = c.call(
        "PUSHB", queue=q, jobs=[{"data": 1, "unique_key": "new"}, {"data": 2, "unique_key": "held"}]
    )
    assert r == {"ok": False, "error": "Duplicate job with key: held"}
    r = c.call(
        "PUSHB",
        queue=q,
        jobs=[{"data": 1, "unique_key": "twice"}, {"data": 2, "unique_key": "twice"}],
    )
    assert r == {"ok": False, "error": "Duplicate job with key: twice"}
    assert queue_info(c, q)["pending"] == 1  # nothing of either batch was pushed
    ids = c.ok(
        "PUSHB",
        queue=q,
        jobs=[{"data": 1, "unique_key": "new"}, {"data": 2, "unique_key": "twice"}],
    )["ids"]
    assert len(ids) == 2 and queue_info(c, q)["pending"] == 3
