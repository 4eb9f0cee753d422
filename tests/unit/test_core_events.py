"""The `events` outbox: what each operation emits (PROTOCOL.md "Events"; the core side of the
original's broadcast tests 71-73)."""

from __future__ import annotations

import orjson
import pytest

from proto.errors import DuplicateJob, JobNotFound
from proto.wire import event_to_wire
from shard.core import LOST_WORKER, TIMED_OUT
from shard.shardset import ShardSet

from .helpers import (
    ack,
    ack_batch,
    cancel,
    drain_events,
    fail,
    pull,
    pull_one,
    push,
    qshard,
    queues_on_distinct_shards,
    release_owner,
    spec,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


def test_pushed_event(ss: ShardSet) -> None:
    jid = push(ss, "test", 10, {"x": 1})
    [ev] = drain_events(ss)
    assert ev == ("pushed", "test", jid, 10, None)
    assert event_to_wire(ev) == {
        "event_type": "pushed",
        "queue": "test",
        "job_id": jid,
        "timestamp": 10,
    }


def test_pushed_for_each_job_of_a_batch(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(4)], 3)
    assert drain_events(ss) == [("pushed", "test", j, 3, None) for j in ids]


def test_pushed_for_a_job_entering_waiting_children(ss: ShardSet) -> None:
    parent = push(ss, "a")
    drain_events(ss)
    child = push(ss, "b", 1, depends_on=[parent])
    assert drain_events(ss) == [("pushed", "b", child, 1, None)]


def test_active_for_every_job_handed_out(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(3)], 0)
    drain_events(ss)
    pull(ss, "test", 5, count=3)
    assert drain_events(ss) == [("active", "test", j, 5, None) for j in ids]


def test_completed_with_the_result(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    drain_events(ss)
    ack(ss, jid, 9, {"computed": 42})
    [ev] = drain_events(ss)
    assert ev == ("completed", "test", jid, 9, b'{"computed":42}')
    assert orjson.loads(orjson.dumps(event_to_wire(ev))) == {
        "event_type": "completed",
        "queue": "test",
        "job_id": jid,
        "timestamp": 9,
        "data": {"computed": 42},
    }


def test_completed_for_each_job_of_an_ack_batch(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(3)], 0)
    pull(ss, "test", 0, count=3)
    drain_events(ss)
    assert ack_batch(ss, [*ids, 999999], 4) == 3
    assert drain_events(ss) == [("completed", "test", j, 4, None) for j in ids]


def test_failed_with_the_error(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=1)
    pull_one(ss, "test")
    drain_events(ss)
    fail(ss, jid, 6, "test error")
    [ev] = drain_events(ss)
    assert ev == ("failed", "test", jid, 6, "test error")
    assert event_to_wire(ev)["error"] == "test error"


def test_retried_with_the_error(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=2)
    pull_one(ss, "test")
    drain_events(ss)
    fail(ss, jid, 6, "transient")
    assert drain_events(ss) == [("retried", "test", jid, 6, "transient")]


def test_timeout_and_lost_worker_events(ss: ShardSet) -> None:
    a = push(ss, "test", 0, timeout=10, max_attempts=1)
    b = push(ss, "test", 0)
    pull_one(ss, "test", 0)
    pull_one(ss, "test", 0, owner="conn")
    drain_events(ss)
    ss.tick(11)
    release_owner(ss, "conn", 12)
    assert drain_events(ss) == [
        ("failed", "test", a, 11, TIMED_OUT),
        ("retried", "test", b, 12, LOST_WORKER),
    ]


def test_cascade_emits_failed_for_each_dependant(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa, 0, max_attempts=1)
    child = push(ss, qb, 0, depends_on=[parent])
    pull_one(ss, qa)
    drain_events(ss)
    fail(ss, parent, 2, "root cause")
    assert sorted(drain_events(ss)) == sorted(
        [
            ("failed", qa, parent, 2, "root cause"),
            ("failed", qb, child, 2, f"Dependency {parent} failed"),
        ]
    )


def test_progress_cancelled_expired_retried_dlq(ss: ShardSet) -> None:
    a = push(ss, "test", 0)
    pull_one(ss, "test")
    qshard(ss, "test").progress(a, 30, "m", 1)
    cancel(ss, a, 2)
    b = push(ss, "test", 3, ttl=5)
    ss.tick(9)
    c = push(ss, "test", 10, max_attempts=1)
    pull_one(ss, "test", 10)
    fail(ss, c, 11, None)
    qshard(ss, "test").retry_dlq("test", None, 12)
    evs = [e for e in drain_events(ss) if e[0] not in ("pushed", "active")]
    assert evs == [
        ("progress", "test", a, 1, 30),
        ("cancelled", "test", a, 2, None),
        ("expired", "test", b, 9, None),
        ("failed", "test", c, 11, None),
        ("retried", "test", c, 12, None),
    ]
    assert event_to_wire(evs[0])["progress"] == 30


def test_cron_firing_emits_pushed(ss: ShardSet) -> None:
    qshard(ss, "cron").cron_add("cron", "target", b"1", "*/1", 0, 0)
    ss.tick(1000)
    evs = drain_events(ss)
    assert [(e[0], e[1], e[3]) for e in evs] == [("pushed", "target", 1000)]


def test_refused_operations_emit_nothing(ss: ShardSet) -> None:
    push(ss, "test", 0, unique_key="k")
    drain_events(ss)
    with pytest.raises(DuplicateJob):
        push(ss, "test", 0, unique_key="k")
    with pytest.raises(JobNotFound):
        ack(ss, 999999)
    assert pull(ss, "empty") == []
    assert drain_events(ss) == []
