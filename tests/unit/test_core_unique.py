"""Unique keys (original tests 16-18, PROTOCOL.md "Unique key", "PUSHB is all or nothing")."""

from __future__ import annotations

import pytest

from proto.errors import DuplicateJob, UnknownDependency
from shard.shardset import ShardSet

from .helpers import (
    ack,
    cancel,
    fail,
    metrics,
    pull_ids,
    pull_one,
    push,
    qshard,
    queue_infos,
    spec,
    state,
    stats,
    the_queue,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


def held(ss: ShardSet, queue: str) -> dict[str, int]:
    return dict(the_queue(ss, queue).unique)


def test_unique_key(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, unique_key="unique-123")
    with pytest.raises(DuplicateJob) as ei:
        push(ss, "test", 0, unique_key="unique-123")
    assert ei.value.message == "Duplicate job with key: unique-123"
    assert ei.value.http_status == 409
    assert stats(ss)["queued"] == 1
    assert metrics(ss)["total_pushed"] == 1
    pull_one(ss, "test")
    ack(ss, jid)
    again = push(ss, "test", 1, unique_key="unique-123")
    assert again != jid
    assert held(ss, "test") == {"unique-123": again}


def test_unique_key_different_queues(ss: ShardSet) -> None:
    a = push(ss, "queue1", 0, unique_key="k")
    b = push(ss, "queue2", 0, unique_key="k")
    assert a != b
    assert held(ss, "queue1") == {"k": a}
    assert held(ss, "queue2") == {"k": b}


def test_unique_key_held_in_every_live_state(ss: ShardSet) -> None:
    parent = push(ss, "p")
    delayed = push(ss, "q", 0, unique_key="d", delay=100)
    children = push(ss, "q", 0, unique_key="c", depends_on=[parent])
    active = push(ss, "q", 0, unique_key="a")
    pull_one(ss, "q")
    waiting = push(ss, "q", 0, unique_key="w")
    assert [state(ss, j) for j in (delayed, children, active, waiting)] == [
        "delayed",
        "waiting-children",
        "active",
        "waiting",
    ]
    for key in "dcaw":
        with pytest.raises(DuplicateJob):
            push(ss, "q", 1, unique_key=key)
    assert held(ss, "q") == {"d": delayed, "c": children, "a": active, "w": waiting}


def test_unique_key_held_through_retry(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, unique_key="k", max_attempts=3, backoff=100)
    pull_one(ss, "test")
    fail(ss, jid, 1)
    assert state(ss, jid) == "delayed"
    with pytest.raises(DuplicateJob):
        push(ss, "test", 2, unique_key="k")
    assert held(ss, "test") == {"k": jid}


def test_unique_key_released_on_dlq_and_taken_again_on_retry(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, unique_key="k", max_attempts=1)
    pull_one(ss, "test")
    fail(ss, jid, 1)
    assert state(ss, jid) == "failed"
    assert held(ss, "test") == {}
    s = qshard(ss, "test")
    assert s.retry_dlq("test", None, 2) == 1
    assert held(ss, "test") == {"k": jid}
    with pytest.raises(DuplicateJob):
        push(ss, "test", 3, unique_key="k")


def test_retry_dlq_leaves_a_job_whose_key_is_held_elsewhere(ss: ShardSet) -> None:
    old = push(ss, "test", 0, unique_key="k", max_attempts=1)
    other = push(ss, "test", 0, max_attempts=1)
    pull_ids(ss, "test", count=2)
    fail(ss, old, 1)
    fail(ss, other, 1)
    new = push(ss, "test", 2, unique_key="k")  # the key is free while `old` is in the DLQ
    s = qshard(ss, "test")
    assert s.retry_dlq("test", None, 3) == 1  # only `other`: `old` stays, not counted
    assert state(ss, old) == "failed"
    assert state(ss, other) == "waiting"
    assert [j.id for j in s.dlq("test", 10)] == [old]
    assert s.retry_dlq("test", old, 4) == 0
    assert held(ss, "test") == {"k": new}
    # once the key is free again the job can be retried
    pull_ids(ss, "test", 5, count=5)
    ack(ss, new, 6)
    assert s.retry_dlq("test", old, 7) == 1
    assert held(ss, "test") == {"k": old}


def test_retry_dlq_of_two_jobs_with_the_same_key_takes_only_the_first(ss: ShardSet) -> None:
    a = push(ss, "test", 0, unique_key="k", max_attempts=1)
    pull_one(ss, "test")
    fail(ss, a, 1)
    b = push(ss, "test", 2, unique_key="k", max_attempts=1)
    pull_one(ss, "test", 2)
    fail(ss, b, 3)
    s = qshard(ss, "test")
    assert s.retry_dlq("test", None, 4) == 1
    assert state(ss, a) == "waiting"
    assert state(ss, b) == "failed"
    assert held(ss, "test") == {"k": a}


def test_unique_key_released_on_complete_cancel_and_expiry(ss: ShardSet) -> None:
    a = push(ss, "test", 0, unique_key="a")
    pull_one(ss, "test")
    ack(ss, a, 1)
    c = push(ss, "test", 0, unique_key="c")
    cancel(ss, c, 1)
    e = push(ss, "test", 0, unique_key="e", ttl=10)
    ss.tick(11)
    assert state(ss, e) == "unknown"
    assert held(ss, "test") == {}
    for key in "ace":
        push(ss, "test", 20, unique_key=key)
    assert sorted(held(ss, "test")) == ["a", "c", "e"]


def test_unique_key_released_when_a_dependant_goes_to_the_dlq(ss: ShardSet) -> None:
    parent = push(ss, "p", 0, max_attempts=1)
    child = push(ss, "c", 0, unique_key="k", depends_on=[parent])
    pull_one(ss, "p")
    fail(ss, parent, 1)
    assert state(ss, child) == "failed"
    assert held(ss, "c") == {}
    # a job that goes straight to the DLQ at push never takes its key
    straight = push(ss, "c", 2, unique_key="k2", depends_on=[parent])
    assert state(ss, straight) == "failed"
    assert held(ss, "c") == {}


def test_push_batch_refused_whole_on_a_held_key(ss: ShardSet) -> None:
    push(ss, "test", 0, unique_key="k")
    with pytest.raises(DuplicateJob) as ei:
        ss.push("test", [spec(1), spec(2, unique_key="k"), spec(3)], 1)
    assert ei.value.message == "Duplicate job with key: k"
    assert stats(ss)["queued"] == 1
    assert metrics(ss)["total_pushed"] == 1


def test_push_batch_refused_whole_on_a_repeated_key(ss: ShardSet) -> None:
    with pytest.raises(DuplicateJob) as ei:
        ss.push("test", [spec(1, unique_key="x"), spec(2), spec(3, unique_key="x")], 0)
    assert ei.value.message == "Duplicate job with key: x"
    assert stats(ss)["queued"] == 0
    assert metrics(ss)["total_pushed"] == 0
    assert queue_infos(ss) == []
    # nothing was admitted, so the key is still free
    [jid] = ss.push("test", [spec(1, unique_key="x")], 1)
    assert held(ss, "test") == {"x": jid}


def test_push_batch_refused_whole_on_an_unknown_dependency(ss: ShardSet) -> None:
    with pytest.raises(UnknownDependency) as ei:
        ss.push("test", [spec(1, unique_key="x"), spec(2, depends_on=[999999])], 0)
    assert ei.value.message == "Unknown dependency: 999999"
    assert metrics(ss)["total_pushed"] == 0
    assert push(ss, "test", 1, unique_key="x") > 0


def test_push_batch_distinct_keys_are_all_taken(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(1, unique_key="a"), spec(2), spec(3, unique_key="b")], 0)
    assert held(ss, "test") == {"a": ids[0], "b": ids[2]}
