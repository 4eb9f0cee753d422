"""Dependencies, in one shard and across shards (original tests 29-30, PROTOCOL.md
"Dependencies" and the dependency details of "Job lifecycle")."""

from __future__ import annotations

import pytest

from proto.errors import UnknownDependency
from shard.core import Shard
from shard.shardset import ShardSet

from .helpers import (
    ack,
    cancel,
    drain_events,
    fail,
    get_job,
    pull,
    pull_ids,
    pull_one,
    push,
    qshard,
    queues_on_distinct_shards,
    queues_on_same_shard,
    shard_of,
    spec,
    state,
    stats,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


def test_job_dependencies_single(ss: ShardSet) -> None:
    parent = push(ss, "test", 0, "P")
    child = push(ss, "test", 0, "C", depends_on=[parent])
    assert state(ss, child) == "waiting-children"
    assert stats(ss)["waiting_children"] == 1
    assert pull_ids(ss, "test", 0, count=5) == [parent]  # the child is not pullable
    ack(ss, parent, 1)
    assert state(ss, child) == "waiting"  # at once
    assert stats(ss)["waiting_children"] == 0
    assert pull_ids(ss, "test", 1) == [child]


def test_job_dependencies_multiple(ss: ShardSet) -> None:
    p1 = push(ss, "test", 0, "P1")
    p2 = push(ss, "test", 0, "P2")
    child = push(ss, "test", 0, "C", depends_on=[p1, p2])
    assert pull_ids(ss, "test", 0) == [p1]
    ack(ss, p1, 1)
    assert state(ss, child) == "waiting-children"
    assert pull_ids(ss, "test", 1) == [p2]  # the child is still waiting
    ack(ss, p2, 2)
    assert stats(ss)["queued"] == 1
    assert state(ss, child) == "waiting"
    assert pull_ids(ss, "test", 2) == [child]


def test_dependencies_across_shards(ss: ShardSet) -> None:
    qa, qb, qc = queues_on_distinct_shards(3)
    p1 = push(ss, qa, 0)
    p2 = push(ss, qb, 0)
    child = push(ss, qc, 0, depends_on=[p1, p2])
    assert len({shard_of(ss, j).index for j in (p1, p2, child)}) == 3
    assert state(ss, child) == "waiting-children"
    pull_one(ss, qa)
    ack(ss, p1, 1)
    assert state(ss, child) == "waiting-children"
    pull_one(ss, qb)
    ack(ss, p2, 2)
    assert state(ss, child) == "waiting"
    assert pull_ids(ss, qc, 3) == [child]


def test_dependencies_across_queues_in_one_shard(ss: ShardSet) -> None:
    qa, qb = queues_on_same_shard(2)
    parent = push(ss, qa, 0)
    child = push(ss, qb, 0, depends_on=[parent])
    pull_one(ss, qa)
    ack(ss, parent, 1)
    assert state(ss, child) == "waiting"


def test_dependency_on_a_completed_job_is_satisfied(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa)
    pull_one(ss, qa)
    ack(ss, parent, 1)
    child = push(ss, qb, 2, depends_on=[parent])
    assert state(ss, child) == "waiting"
    assert get_job(ss, child).depends_on == (parent,)


def test_dependency_released_child_keeps_its_delay(ss: ShardSet) -> None:
    parent = push(ss, "p")
    child = push(ss, "c", 0, delay=100, depends_on=[parent])
    pull_one(ss, "p")
    ack(ss, parent, 10)
    assert state(ss, child) == "delayed"
    ss.tick(100)
    assert state(ss, child) == "waiting"


def test_dependency_in_the_dlq_sends_the_child_straight_to_the_dlq(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa, 0, max_attempts=1)
    pull_one(ss, qa)
    fail(ss, parent, 1)
    drain_events(ss)
    child = push(ss, qb, 2, depends_on=[parent])
    assert state(ss, child) == "failed"
    assert get_job(ss, child).progress_msg == f"Dependency {parent} failed"
    assert [j.id for j in qshard(ss, qb).dlq(qb, 10)] == [child]
    assert stats(ss)["waiting_children"] == 0
    assert drain_events(ss) == [
        ("pushed", qb, child, 2, None),
        ("failed", qb, child, 2, f"Dependency {parent} failed"),
    ]


def test_parent_landing_in_the_dlq_fails_waiting_children(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa, 0, max_attempts=1)
    child = push(ss, qb, 0, depends_on=[parent])
    pull_one(ss, qa)
    fail(ss, parent, 1, "boom")
    assert state(ss, child) == "failed"
    assert get_job(ss, child).progress_msg == f"Dependency {parent} failed"
    assert stats(ss)["dlq"] == 2


def test_parent_retried_does_not_fail_the_child(ss: ShardSet) -> None:
    parent = push(ss, "p", 0, max_attempts=3)
    child = push(ss, "c", 0, depends_on=[parent])
    pull_one(ss, "p")
    fail(ss, parent, 1)
    assert state(ss, child) == "waiting-children"
    pull_one(ss, "p", 2)
    ack(ss, parent, 3)
    assert state(ss, child) == "waiting"


def test_cancelled_parent_fails_the_child(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa, 0, delay=1000)
    child = push(ss, qb, 0, depends_on=[parent])
    cancel(ss, parent, 5)
    assert state(ss, child) == "failed"
    assert get_job(ss, child).progress_msg == f"Dependency {parent} failed"


def test_unknown_dependency_is_refused(ss: ShardSet) -> None:
    with pytest.raises(UnknownDependency) as ei:
        push(ss, "test", 0, depends_on=[999999])
    assert ei.value.message == "Unknown dependency: 999999"
    assert ei.value.http_status == 400
    # a cancelled (now unknown) job is refused too
    gone = push(ss, "test")
    cancel(ss, gone)
    with pytest.raises(UnknownDependency):
        push(ss, "test", 0, depends_on=[gone])
    assert stats(ss)["waiting_children"] == 0


def test_unknown_dependency_among_known_ones_admits_nothing(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    parent = push(ss, qa)
    with pytest.raises(UnknownDependency) as ei:
        push(ss, qb, 0, depends_on=[parent, 999999])
    assert ei.value.message == "Unknown dependency: 999999"
    assert stats(ss)["queued"] == 1
    assert stats(ss)["waiting_children"] == 0


def test_cascade_chain_across_shards(ss: ShardSet) -> None:
    qa, qb, qc, qd = queues_on_distinct_shards(4)
    root = push(ss, qa, 0, max_attempts=1)
    b = push(ss, qb, 0, depends_on=[root])
    c = push(ss, qc, 0, depends_on=[b])
    d = push(ss, qd, 0, depends_on=[c, root])
    pull_one(ss, qa)
    fail(ss, root, 1)
    assert [state(ss, j) for j in (b, c, d)] == ["failed", "failed", "failed"]
    assert get_job(ss, b).progress_msg == f"Dependency {root} failed"
    assert get_job(ss, c).progress_msg == f"Dependency {b} failed"
    assert get_job(ss, d).progress_msg in {f"Dependency {root} failed", f"Dependency {c} failed"}
    assert stats(ss)["dlq"] == 4


def test_success_chain_across_shards(ss: ShardSet) -> None:
    qa, qb, qc = queues_on_distinct_shards(3)
    a = push(ss, qa)
    b = push(ss, qb, 0, depends_on=[a])
    c = push(ss, qc, 0, depends_on=[b])
    pull_one(ss, qa)
    ack(ss, a, 1)
    assert (state(ss, b), state(ss, c)) == ("waiting", "waiting-children")
    pull_one(ss, qb, 2)
    ack(ss, b, 3)
    assert state(ss, c) == "waiting"


def test_a_child_waiting_on_children_can_expire(ss: ShardSet) -> None:
    parent = push(ss, "p")
    child = push(ss, "c", 0, ttl=50, depends_on=[parent])
    ss.tick(51)
    assert state(ss, child) == "unknown"
    pull_one(ss, "p", 60)
    ack(ss, parent, 61)  # the outcome finds nobody waiting
    assert state(ss, child) == "unknown"
    assert stats(ss)["waiting_children"] == 0
    assert stats(ss)["queued"] == 0


def test_cancel_a_waiting_child(ss: ShardSet) -> None:
    parent = push(ss, "p")
    child = push(ss, "c", 0, depends_on=[parent])
    cancel(ss, child, 1)
    assert stats(ss)["waiting_children"] == 0
    pull_one(ss, "p")
    ack(ss, parent, 2)
    assert state(ss, child) == "unknown"
    assert pull(ss, "c", 3) == []


def test_batch_dependencies(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    p = push(ss, qa)
    ids = ss.push(qb, [spec(1, depends_on=[p]), spec(2), spec(3, depends_on=[p])], 0)
    assert [state(ss, j) for j in ids] == ["waiting-children", "waiting", "waiting-children"]
    pull_one(ss, qa)
    ack(ss, p, 1)
    assert [state(ss, j) for j in ids] == ["waiting", "waiting", "waiting"]


def test_single_shard_push_refuses_parents_of_other_shards() -> None:
    s = Shard(0)
    with pytest.raises(UnknownDependency):
        s.push("q", spec(1, depends_on=[33]), 0)  # 33 lives in shard 1
    parent = s.push("q", spec(1), 0)
    child = s.push("q", spec(2, depends_on=[parent]), 0)
    assert s.get_state(child) == "waiting-children"
    s.pull("q", 1, 0)
    s.ack(parent, None, 1)
    # the outcome goes through the outbox, even to the same shard
    assert s.dep_out == [(0, parent, True)]
    assert s.get_state(child) == "waiting-children"
    s.resolve(parent, True, 1)
    assert s.get_state(child) == "waiting"
