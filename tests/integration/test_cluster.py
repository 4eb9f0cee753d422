"""The cluster as one server: queues on both workers, requests crossing between them.

A queue lives on shard `crc32(utf8(name)) % 32`, owned by worker `shard % 2`; a connection lands
on a random worker and is handed to the owner of its first request's queue, and later requests
for the other worker's queues are forwarded over a link. These tests pick queue names for a
chosen worker (the `names` fixture) so that each path is taken on purpose, and check what a
client sees: dependencies across workers, blocking pulls woken from another connection, `reqId`
replies out of order, strict order without it, jobs of a lost connection going back to the
queue, cron firings, and delayed jobs.

Synchronisation is by the protocol itself, never by sleeping: requests on one connection take
effect in order, so a reply to a later request proves an earlier PULL is parked; a half-closed
connection that the server closes proves the server has let go of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.harness import Client, Cluster
from tests.integration.conftest import Names, owner_of_queue, shard_of

Connect = Callable[..., Client]


def now_ms() -> int:
    return int(time.time() * 1000)


def pull(c: Client, queue: str, timeout: int = 5000) -> dict[str, Any]:
    job = c.ok("PULL", queue=queue, timeout=timeout)["job"]
    assert job is not None, f"no job in {queue!r} within {timeout} ms"
    return job  # type: ignore[no-any-return]


def wait_state(c: Client, jid: int, state: str, timeout: float = 10.0) -> dict[str, Any]:
    """Probe GETJOB until the job reaches `state` (for effects of another connection's close)."""
    deadline = time.monotonic() + timeout
    while True:
        got = c.ok("GETJOB", id=jid)
        if got["state"] == state:
            return got
        assert time.monotonic() < deadline, f"job {jid} stuck in {got['state']}, not {state}"
        time.sleep(0.005)


def half_close(c: Client) -> None:
    """Stop sending and wait until the server closes its side: it has then let go of us."""
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed_by_server(10.0), "the server never closed a half-closed connection"
    c.close()


# ---------------------------------------------------------------- queues over both workers


def test_64_queues_over_both_workers_from_one_connection(connect: Connect, names: Names) -> None:
    c = connect()
    queues = [names.queue(f"spread{i}") for i in range(64)]
    owners = {owner_of_queue(q) for q in queues}
    assert owners == {0, 1}, "64 names should land on both workers"
    ids = {}
    for i, q in enumerate(queues):
        ids[q] = c.ok("PUSH", queue=q, data={"i": i})["id"]
        assert ids[q] % 32 == shard_of(q)  # the id carries its queue's shard
    for i, q in enumerate(queues):
        job = c.ok("PULL", queue=q, timeout=5000)["job"]
        assert (job["id"], job["queue"], job["data"]) == (ids[q], q, {"i": i})
        assert c.ok("GETSTATE", id=ids[q])["state"] == "active"
        c.ok("ACK", id=ids[q], result=[q, i])
    for i, q in enumerate(queues):
        assert c.ok("GETRESULT", id=ids[q])["result"] == [q, i]
        assert c.ok("GETJOB", id=ids[q]) == {"ok": True, "job": None, "state": "completed"}
    listed = {x["name"]: x for x in c.ok("LISTQUEUES")["queues"]}
    for q in queues:
        assert (listed[q]["pending"], listed[q]["processing"]) == (0, 0)


# ---------------------------------------------------------------- dependencies across workers


HOMES = pytest.mark.parametrize(
    ("home", "parent_worker"), [(0, 0), (0, 1), (1, 0), (1, 1)], ids=lambda v: str(v)
)


@HOMES
def test_dependency_on_a_job_of_the_other_worker(
    connect: Connect, names: Names, home: int, parent_worker: int
) -> None:
    """Parent and child on different workers; the client's connection on either of them."""
    c = connect()
    c.ok("DLQ", queue=names.queue("home", home))  # the connection now lives on worker `home`
    pq, cq = names.queue("parent", parent_worker), names.queue("child", 1 - parent_worker)
    parent = c.ok("PUSH", queue=pq, data="p")["id"]
    child = c.ok("PUSH", queue=cq, data="c", depends_on=[parent])["id"]
    got = c.ok("GETJOB", id=child)
    assert got["state"] == "waiting-children" and got["job"]["depends_on"] == [parent]
    assert c.ok("PULL", queue=cq, timeout=0)["job"] is None
    assert pull(c, pq)["id"] == parent
    c.ok("ACK", id=parent)
    # fix: the child says `waiting` as soon as the ACK is answered, across workers too.
    assert c.ok("GETSTATE", id=child)["state"] == "waiting"
    assert pull(c, cq)["id"] == child


@HOMES
def test_parent_in_dlq_sends_the_child_to_the_dlq(
    connect: Connect, names: Names, home: int, parent_worker: int
) -> None:
    c = connect()
    c.ok("DLQ", queue=names.queue("home", home))
    pq, cq = names.queue("parent", parent_worker), names.queue("child", 1 - parent_worker)
    parent = c.ok("PUSH", queue=pq, data="p", max_attempts=1)["id"]
    child = c.ok("PUSH", queue=cq, data="c", depends_on=[parent])["id"]
    pull(c, pq)
    c.ok("FAIL", id=parent, error="parent broke")
    got = c.ok("GETJOB", id=child)
    assert got["state"] == "failed"
    assert got["job"]["progress_msg"] == f"Dependency {parent} failed"
    dlq = c.ok("DLQ", queue=cq)["jobs"]
    assert [(j["id"], j["progress_msg"]) for j in dlq] == [(child, f"Dependency {parent} failed")]
    # A new job on a parent that is already in the DLQ goes straight there.
    late = c.ok("PUSH", queue=cq, data="late", depends_on=[parent])["id"]
    got = c.ok("GETJOB", id=late)
    assert (got["state"], got["job"]["progress_msg"]) == ("failed", f"Dependency {parent} failed")


@pytest.mark.parametrize("worker", [0, 1])
def test_unknown_dependency_is_refused(connect: Connect, names: Names, worker: int) -> None:
    c = connect()
    q = names.queue(worker=worker)
    # Ids that never existed, on either worker's shards (id % 32 is the shard).
    for missing in (999_968, 999_969):
        assert c.call("PUSH", queue=q, data=1, depends_on=[missing]) == {
            "ok": False,
            "error": f"Unknown dependency: {missing}",
        }
        r = c.call("PUSHB", queue=q, jobs=[{"data": 1}, {"data": 2, "depends_on": [missing]}])
        assert r == {"ok": False, "error": f"Unknown dependency: {missing}"}
    assert c.ok("PULL", queue=q, timeout=0)["job"] is None  # nothing of the batch was pushed


# ---------------------------------------------------------------- blocking pulls


@pytest.mark.parametrize(("puller_home", "queue_worker"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_blocking_pull_released_by_a_push_on_another_connection(
    connect: Connect, names: Names, puller_home: int, queue_worker: int
) -> None:
    """The parked PULL runs locally or through a link, and the PUSH arrives elsewhere."""
    puller, pusher = connect(), connect()
    home, q = names.queue("home", puller_home), names.queue(worker=queue_worker)
    puller.ok("DLQ", queue=home)  # the connection now lives on worker `puller_home`
    puller.send({"cmd": "PULL", "queue": q})  # no timeout: blocks until a job comes
    # A later request for the same queue is answered only after the PULL was parked there.
    assert puller.call("DLQ", queue=q, reqId=1) == {"ok": True, "jobs": [], "reqId": 1}
    jid = pusher.ok("PUSH", queue=q, data="wake up")["id"]
    r = puller.recv()
    assert r["ok"] is True and r["job"]["id"] == jid and r["job"]["data"] == "wake up"
    assert pusher.ok("GETSTATE", id=jid)["state"] == "active"
    puller.ok("ACK", id=jid)


@pytest.mark.parametrize("worker", [0, 1])
def test_pull_timeouts(connect: Connect, names: Names, worker: int) -> None:
    c = connect()
    q = names.queue(worker=worker)
    assert c.call("PULL", queue=q, timeout=0) == {"ok": True, "job": None}
    assert c.call("PULL", queue=q, timeout=50) == {"ok": True, "job": None}
    assert c.call("PULLB", queue=q, count=5, timeout=0) == {"ok": True, "jobs": []}
    assert c.call("PULLB", queue=q, count=5, timeout=50) == {"ok": True, "jobs": []}
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    assert c.ok("PULL", queue=q, timeout=0)["job"]["id"] == jid  # ready: no waiting at all


# ---------------------------------------------------------------- reqId and reply order


def test_req_id_pull_does_not_hold_back_later_requests(connect: Connect, names: Names) -> None:
    c, other = connect(), connect()
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    c.send({"cmd": "PULL", "queue": q1, "timeout": 30_000, "reqId": "pull-1"})
    # Later requests, with and without reqId, on both workers, are answered meanwhile.
    assert c.call("PUSH", queue=q0, data="x", reqId="push-x")["reqId"] == "push-x"
    jid = c.call("PUSH", queue=q0, data="y", reqId=7)["id"]
    assert c.call("GETSTATE", id=jid) == {"ok": True, "id": jid, "state": "waiting"}
    assert c.call("STATS", reqId="s")["reqId"] == "s"
    assert c.call("LISTQUEUES", reqId=None)["reqId"] is None
    # The parked PULL answers when a job comes, with its own reqId.
    pushed = other.ok("PUSH", queue=q1, data="for the pull")["id"]
    r = c.recv()
    assert r["reqId"] == "pull-1" and r["job"]["id"] == pushed


def test_req_id_is_echoed_on_errors(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    assert c.call("NOPE", reqId=1) == {
        "ok": False,
        "error": "Invalid: unknown cmd 'NOPE'",
        "reqId": 1,
    }
    r = c.call("PUSH", queue=q, data=1, priority="high", reqId="bad-field")
    assert r["ok"] is False and r["reqId"] == "bad-field"
    assert r["error"].startswith("Invalid: ") and "priority" in r["error"]
    r = c.call("PUSH", queue=q, reqId=2.5)
    assert (r["ok"], r["reqId"]) == (False, 2.5) and "data" in r["error"]
    r = c.call("ACK", id=999_999, reqId=-3)
    assert r == {"ok": False, "error": "Job 999999 not found", "reqId": -3}
    assert c.call("PULL", queue=q, timeout=0, reqId=True) == {
        "ok": True,
        "job": None,
        "reqId": True,
    }


def test_pipelined_requests_are_answered_in_order_across_workers(
    connect: Connect, names: Names
) -> None:
    c = connect()
    queues = [names.queue(worker=i % 2) for i in range(20)]
    # One write: a push to each queue of both workers, interleaved with reads and pulls.
    batch = []
    for i, q in enumerate(queues):
        batch.append({"cmd": "PUSH", "queue": q, "data": i})
        batch.append({"cmd": "STATS"})
        batch.append({"cmd": "PULL", "queue": q, "timeout": 0})
        batch.append({"cmd": "PULL", "queue": q, "timeout": 0})
    c.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in batch))
    ids = []
    for i, q in enumerate(queues):
        push = c.recv()
        assert push["ok"] is True and push["id"] % 32 == shard_of(q)
        ids.append(push["id"])
        assert "queued" in c.recv()
        job = c.recv()["job"]
        assert (job["id"], job["queue"], job["data"]) == (push["id"], q, i)
        assert c.recv() == {"ok": True, "job": None}
    # The same, by id: ack and read back each job in one write.
    batch = []
    for i, jid in enumerate(ids):
        batch += [
            {"cmd": "ACK", "id": jid, "result": i},
            {"cmd": "GETRESULT", "id": jid},
            {"cmd": "GETSTATE", "id": jid},
        ]
    c.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in batch))
    for i, jid in enumerate(ids):
        assert c.recv() == {"ok": True}
        assert c.recv() == {"ok": True, "id": jid, "result": i}
        assert c.recv() == {"ok": True, "id": jid, "state": "completed"}


def test_a_large_pipelined_burst_mixing_req_ids(connect: Connect, names: Names) -> None:
    """2,000 requests in one write over 8 queues of both workers, every third with a reqId:
    the replies without reqId come back in request order, the others each exactly once."""
    c = connect(timeout=30)
    queues = [names.queue(worker=i % 2) for i in range(8)]
    requests = []
    for i in range(2000):
        req: dict[str, Any] = {"cmd": "PUSH", "queue": queues[i % 8], "data": i}
        if i % 3 == 0:
            req["reqId"] = i
        requests.append(req)
    c.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in requests))
    in_order, tagged = [], {}
    for _ in requests:
        r = c.recv()
        assert r["ok"] is True, r
        if "reqId" in r:
            assert r["reqId"] not in tagged
            tagged[r["reqId"]] = r["id"]
        else:
            in_order.append(r["id"])
    assert sorted(tagged) == [i for i in range(2000) if i % 3 == 0]
    untagged = [i for i in range(2000) if i % 3]
    assert len(in_order) == len(untagged)
    # Each id carries its queue's shard, so the untagged replies name the requests, in order.
    for i, jid in zip(untagged, in_order, strict=True):
        assert jid % 32 == shard_of(queues[i % 8])
    ids = {**tagged, **dict(zip(untagged, in_order, strict=True))}
    for q in queues:  # FIFO per queue: the order the pushes were applied in is request order
        jobs = c.ok("PULLB", queue=q, count=1000, timeout=0)["jobs"]
        assert [j["data"] for j in jobs] == [i for i in range(2000) if queues[i % 8] == q]
        assert all(ids[j["data"]] == j["id"] for j in jobs)
        assert c.ok("ACKB", ids=[j["id"] for j in jobs])["ids"] == [250]


def test_pipelined_first_request_is_handed_off_with_the_rest(
    cluster: Cluster, names: Names
) -> None:
    """Fresh connections whose first line names either worker, all lines in one write."""
    for attempt in range(6):
        q_first, q_other = names.queue(worker=attempt % 2), names.queue(worker=1 - attempt % 2)
        with cluster.client() as c:
            lines = [
                {"cmd": "PUSH", "queue": q_first, "data": "a"},
                {"cmd": "PUSH", "queue": q_other, "data": "b"},
                {"cmd": "PULL", "queue": q_first, "timeout": 0},
                {"cmd": "PULL", "queue": q_other, "timeout": 0},
                {"cmd": "NOPE"},
            ]
            c.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in lines))
            a, b = c.recv()["id"], c.recv()["id"]
            assert c.recv()["job"]["id"] == a
            assert c.recv()["job"]["id"] == b
            assert c.recv()["error"] == "Invalid: unknown cmd 'NOPE'"
            assert c.ok("ACKB", ids=[a, b])["ids"] == [2]


# ---------------------------------------------------------------- lost worker connection


@pytest.mark.parametrize("home", [0, 1])
@pytest.mark.parametrize("queue_worker", [0, 1])
def test_jobs_of_a_closed_connection_go_back_to_waiting(
    connect: Connect, names: Names, home: int, queue_worker: int
) -> None:
    """Pulled locally (home == queue_worker) or through a link, then the connection closes."""
    worker, observer = connect(), connect()
    home_q, q = names.queue("home", home), names.queue(worker=queue_worker)
    worker.ok("DLQ", queue=home_q)  # place the connection on worker `home`
    a, b = observer.ok("PUSHB", queue=q, jobs=[{"data": "a"}, {"data": "b"}])["ids"]
    assert [j["id"] for j in worker.ok("PULLB", queue=q, count=2)["jobs"]] == [a, b]
    worker.ok("PROGRESS", id=a, progress=40, message="busy")
    worker.ok("ACK", id=b)
    assert observer.ok("GETSTATE", id=a)["state"] == "active"
    worker.close()
    got = wait_state(observer, a, "waiting")
    job = got["job"]
    assert (job["attempts"], job["progress_msg"]) == (1, "Worker connection lost")
    assert (job["started_at"], job["progress"]) == (0, 0)
    assert observer.ok("GETSTATE", id=b)["state"] == "completed"  # acked jobs are untouched
    again = pull(observer, q)
    assert (again["id"], again["attempts"]) == (a, 1)
    observer.ok("ACK", id=a)


def test_lost_connection_with_max_attempts_reached_goes_to_the_dlq(
    connect: Connect, names: Names
) -> None:
    worker, observer = connect(), connect()
    q = names.queue()
    jid = observer.ok("PUSH", queue=q, data=1, max_attempts=1)["id"]
    pull(worker, q)
    worker.close()
    got = wait_state(observer, jid, "failed")
    assert got["job"]["progress_msg"] == "Worker connection lost"
    assert [j["id"] for j in observer.ok("DLQ", queue=q)["jobs"]] == [jid]


@pytest.mark.parametrize("forwarded", [False, True], ids=["local", "forwarded"])
@pytest.mark.parametrize("queue_worker", [0, 1])
def test_parked_pull_of_a_closed_connection_is_never_handed_a_job(
    connect: Connect, names: Names, queue_worker: int, forwarded: bool
) -> None:
    home_worker = 1 - queue_worker if forwarded else queue_worker
    gone, producer = connect(), connect()
    home, q = names.queue("home", home_worker), names.queue(worker=queue_worker)
    gone.ok("DLQ", queue=home)  # the connection lives on `home_worker`
    gone.send({"cmd": "PULL", "queue": q})
    assert gone.call("DLQ", queue=q, reqId="parked") == {"ok": True, "jobs": [], "reqId": "parked"}
    half_close(gone)
    # The producer's requests travel the same way the PULL did (same home worker), so they
    # reach the queue after the server dropped the parked PULL.
    producer.ok("DLQ", queue=home)
    jid = producer.ok("PUSH", queue=q, data="for a live worker")["id"]
    got = producer.ok("GETJOB", id=jid)
    assert got["state"] == "waiting"
    assert (got["job"]["attempts"], got["job"]["progress_msg"]) == (0, None)
    job = pull(producer, q)
    assert (job["id"], job["attempts"]) == (jid, 0)
    producer.ok("ACK", id=jid)


# ---------------------------------------------------------------- cron


def test_cron_fires_into_a_queue(cluster: Cluster, names: Names) -> None:
    with cluster.client() as c:
        for worker in (0, 1):
            cron, q = names.queue("cron", 1 - worker), names.queue("fired", worker)
            before = now_ms()
            c.ok("CRON", name=cron, queue=q, data={"tick": worker}, schedule="*/1", priority=3)
            entry = [e for e in c.ok("CRONLIST")["crons"] if e["name"] == cron]
            assert len(entry) == 1 and entry[0]["queue"] == q and entry[0]["schedule"] == "*/1"
            assert before < entry[0]["next_run"] <= now_ms() + 1000 + 5
            job = pull(c, q, timeout=10_000)  # the first firing, about a second from now
            assert (job["queue"], job["data"], job["priority"]) == (q, {"tick": worker}, 3)
            c.ok("CRONDELETE", name=cron)
            assert c.call("CRONDELETE", name=cron) == {"ok": False, "error": "Cron job not found"}
            c.ok("ACK", id=job["id"])


@pytest.mark.parametrize(
    "schedule", ["bad", "*/0", "*/x", "61 * * * * *", "* * *", "", "0 0 30 2 *"]
)
def test_bad_cron_schedule_is_refused(connect: Connect, names: Names, schedule: str) -> None:
    c = connect()
    name = names.queue("cron")
    r = c.call("CRON", name=name, queue=names.queue(), data=1, schedule=schedule)
    assert r["ok"] is False and r["error"].startswith("Invalid: ") and "schedule" in r["error"]
    assert [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name] == []


def test_six_field_cron_with_seconds_is_accepted(connect: Connect, names: Names) -> None:
    c = connect()
    name = names.queue("cron")
    c.ok("CRON", name=name, queue=names.queue(), data=1, schedule="0 30 9 * * MON-FRI")
    c.ok("CRON", name=name, queue=names.queue(), data=1, schedule="*/5 * * * * *")
    entry = [e for e in c.ok("CRONLIST")["crons"] if e["name"] == name]
    assert entry[0]["schedule"] == "*/5 * * * * *" and entry[0]["next_run"] % 5000 == 0
    c.ok("CRONDELETE", name=name)


# ---------------------------------------------------------------- delayed jobs


@pytest.mark.parametrize("worker", [0, 1])
def test_delayed_job_becomes_pullable_at_run_at(
    connect: Connect, names: Names, worker: int
) -> None:
    c = connect()
    q = names.queue(worker=worker)
    jid = c.ok("PUSH", queue=q, data="later", delay=300)["id"]
    got = c.ok("GETJOB", id=jid)
    assert got["state"] == "delayed"
    run_at = got["job"]["run_at"]
    assert run_at == got["job"]["created_at"] + 300
    assert c.ok("PULL", queue=q, timeout=0)["job"] is None
    job = pull(c, q, timeout=10_000)
    assert job["id"] == jid
    # A sanity bound, not a benchmark: handed out soon after run_at, never before it.
    assert 0 <= job["started_at"] - run_at < 500


# ---------------------------------------------------------------- what wakes a parked PULL


def _park(c: Client, queue: str, tag: str) -> None:
    """Send a blocking PULL with reqId `tag`, and make sure it is parked before returning."""
    c.send({"cmd": "PULL", "queue": queue, "timeout": 30_000, "reqId": tag})
    assert c.call("DLQ", queue=queue, count=1, reqId=f"{tag}-probe")["reqId"] == f"{tag}-probe"


def _woken(c: Client, tag: str) -> dict[str, Any]:
    r = c.recv()
    assert r["ok"] is True and r["reqId"] == tag and r["job"] is not None, r
    return r["job"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("queue_worker", [0, 1])
def test_an_ack_under_a_concurrency_limit_wakes_a_parked_pull(
    connect: Connect, names: Names, queue_worker: int
) -> None:
    first, second = connect(), connect()
    q = names.queue(worker=queue_worker)
    first.ok("SETCONCURRENCY", queue=q, limit=1)
    a, b = first.ok("PUSHB", queue=q, jobs=[{"data": "a"}, {"data": "b"}])["ids"]
    assert pull(first, q)["id"] == a
    _park(second, q, "second")  # b is waiting, but the limit holds it back
    first.ok("ACK", id=a)
    assert _woken(second, "second")["id"] == b
    second.ok("ACK", id=b)
    first.ok("CLEARCONCURRENCY", queue=q)


@HOMES
def test_a_resolved_dependency_wakes_a_parked_pull(
    connect: Connect, names: Names, home: int, parent_worker: int
) -> None:
    c, waiter = connect(), connect()
    waiter.ok("DLQ", queue=names.queue("home", home))
    pq, cq = names.queue("parent", parent_worker), names.queue("child", 1 - parent_worker)
    parent = c.ok("PUSH", queue=pq, data="p")["id"]
    child = c.ok("PUSH", queue=cq, data="c", depends_on=[parent])["id"]
    _park(waiter, cq, "child")
    assert pull(c, pq)["id"] == parent
    c.ok("ACK", id=parent)
    assert _woken(waiter, "child")["id"] == child
    waiter.ok("ACK", id=child)


@pytest.mark.parametrize("queue_worker", [0, 1])
def test_a_lost_connection_wakes_a_parked_pull(
    connect: Connect, names: Names, queue_worker: int
) -> None:
    lost, waiter = connect(), connect()
    q = names.queue(worker=queue_worker)
    jid = waiter.ok("PUSH", queue=q, data=1)["id"]
    assert pull(lost, q)["id"] == jid
    _park(waiter, q, "heir")
    lost.close()
    job = _woken(waiter, "heir")
    assert (job["id"], job["attempts"], job["progress_msg"]) == (jid, 1, "Worker connection lost")
    waiter.ok("ACK", id=jid)


@pytest.mark.parametrize("queue_worker", [0, 1])
def test_retrydlq_wakes_a_parked_pull(connect: Connect, names: Names, queue_worker: int) -> None:
    c, waiter = connect(), connect()
    q = names.queue(worker=queue_worker)
    jid = c.ok("PUSH", queue=q, data=1, max_attempts=1)["id"]
    pull(c, q)
    c.ok("FAIL", id=jid, error="once")
    _park(waiter, q, "retry")
    assert c.ok("RETRYDLQ", queue=q, id=jid) == {"ok": True, "ids": [1]}
    job = _woken(waiter, "retry")
    assert (job["id"], job["attempts"]) == (jid, 0)
    waiter.ok("ACK", id=jid)


def test_a_blocking_pull_without_req_id_holds_back_later_replies(
    connect: Connect, names: Names
) -> None:
    """Without reqId replies are strictly in order, so a later STATS waits for the PULL."""
    c, other = connect(), connect()
    q = names.queue()
    c.send({"cmd": "PULL", "queue": q, "timeout": 30_000})
    c.send({"cmd": "GETSTATE", "id": 999_999})
    # The GETSTATE ran at once, but its reply waits behind the PULL's: prove the PULL is parked
    # (a reqId probe overtakes both), then release it.
    assert c.call("DLQ", queue=q, reqId="probe")["reqId"] == "probe"
    jid = other.ok("PUSH", queue=q, data=1)["id"]
    assert c.recv()["job"]["id"] == jid
    assert c.recv() == {"ok": True, "id": 999_999, "state": "unknown"}
    c.ok("ACK", id=jid)


def test_cancelling_a_parent_on_the_other_worker_fails_the_child(
    connect: Connect, names: Names
) -> None:
    c = connect()
    for parent_worker in (0, 1):
        pq, cq = names.queue("parent", parent_worker), names.queue("child", 1 - parent_worker)
        parent = c.ok("PUSH", queue=pq, data="p", delay=600_000)["id"]
        child = c.ok("PUSH", queue=cq, data="c", depends_on=[parent])["id"]
        c.ok("CANCEL", id=parent)
        got = c.ok("GETJOB", id=child)
        assert (got["state"], got["job"]["progress_msg"]) == (
            "failed",
            f"Dependency {parent} failed",
        )
        # A cancelled id reads `unknown`, so new jobs cannot depend on it.
        r = c.call("PUSH", queue=cq, data=1, depends_on=[parent])
        assert r == {"ok": False, "error": f"Unknown dependency: {parent}"}
