"""ShardSet with only some shards (as one worker process holds them): what `settle()` hands to
the runtime for other workers, and the shard's handling of outcomes for remote parents."""

from __future__ import annotations

import pytest

from proto.errors import UnknownDependency
from shard.routing import shard_of_name
from shard.shardset import Outbound, ShardSet

from .helpers import spec


def queue_in_shard(index: int) -> str:
    i = 0
    while shard_of_name(f"q{i}") != index:
        i += 1
    return f"q{i}"


Q0 = queue_in_shard(0)
Q1 = queue_in_shard(1)
REMOTE_PARENT = 5 * 32 + 1  # a job id of shard 1


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet(indices=[0])


def test_only_the_given_shards_are_held(ss: ShardSet) -> None:
    assert [s.index for s in ss] == [0]
    assert ss.local(0) is not None
    assert ss.local(1) is None
    assert ss.for_queue(Q1) is None
    assert ss.for_id(REMOTE_PARENT) is None
    assert not Outbound()


def test_outcome_for_a_remote_watcher_is_handed_out(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    [jid] = ss.push(Q0, [spec(1)], 0)
    assert s.watch(jid, 1) == "pending"  # shard 1 waits for this job's outcome
    s.pull(Q0, 1, 0)
    s.ack(jid, None, 1)
    out = ss.settle(1)
    assert out.dep_outcomes == [(1, jid, True)]
    assert out.cron_pushes == []
    assert bool(out)
    assert ss.settle(2).dep_outcomes == []  # handed out once


def test_watch_answers_the_state_at_once(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    done, failed = ss.push(Q0, [spec(1), spec(2, max_attempts=1)], 0)
    s.pull(Q0, 2, 0)
    s.ack(done, None, 1)
    s.fail(failed, "x", 1)
    assert s.watch(done, 1) == "completed"
    assert s.watch(failed, 1) == "failed"
    assert s.watch(999 * 32, 1) == "unknown"


def test_cron_push_for_a_remote_queue_is_handed_out(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    s.cron_add("c", Q1, b'{"x":1}', "*/5", 3, 0)
    out = ss.tick(5000)
    assert out.cron_pushes == [(Q1, b'{"x":1}', 3)]


def test_push_with_a_remote_parent_needs_the_runtime(ss: ShardSet) -> None:
    with pytest.raises(ValueError):
        ss.push(Q0, [spec(1, depends_on=[REMOTE_PARENT])], 0)
    assert ss.watch_local([REMOTE_PARENT], 0) == ({}, [REMOTE_PARENT])


def test_remote_parent_outcome_after_the_push(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    child = s.push(Q0, spec(1, depends_on=[REMOTE_PARENT]), 0, {REMOTE_PARENT: "pending"})
    assert s.get_state(child) == "waiting-children"
    s.resolve(REMOTE_PARENT, True, 5)
    assert s.get_state(child) == "waiting"


def test_remote_parent_failure_after_the_push(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    child = s.push(Q0, spec(1, depends_on=[REMOTE_PARENT]), 0, {REMOTE_PARENT: "pending"})
    s.resolve(REMOTE_PARENT, False, 5)
    job, state = s.get_job(child)
    assert state == "failed"
    assert job is not None
    assert job.progress_msg == f"Dependency {REMOTE_PARENT} failed"


@pytest.mark.parametrize(("ok", "expected"), [(True, "waiting"), (False, "failed")])
def test_outcome_arriving_while_the_push_is_in_flight(
    ss: ShardSet, ok: bool, expected: str
) -> None:
    s = ss.local(0)
    assert s is not None
    s.expect([REMOTE_PARENT])
    s.resolve(REMOTE_PARENT, ok, 3)  # arrives before the push it belongs to
    child = s.push(Q0, spec(1, depends_on=[REMOTE_PARENT]), 4, {REMOTE_PARENT: "pending"})
    assert s.get_state(child) == expected
    s.unexpect([REMOTE_PARENT])
    assert s.early == {}
    assert s.expecting == {}


def test_remote_parent_states_answered_by_the_owner(ss: ShardSet) -> None:
    s = ss.local(0)
    assert s is not None
    done = s.push(Q0, spec(1, depends_on=[REMOTE_PARENT]), 0, {REMOTE_PARENT: "completed"})
    assert s.get_state(done) == "waiting"
    dead = s.push(Q0, spec(2, depends_on=[REMOTE_PARENT]), 0, {REMOTE_PARENT: "failed"})
    assert s.get_state(dead) == "failed"
    with pytest.raises(UnknownDependency):
        s.push(Q0, spec(3, depends_on=[REMOTE_PARENT]), 0, {REMOTE_PARENT: "unknown"})
