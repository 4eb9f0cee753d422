"""Order, delay, pause, rate limit, concurrency and progress (original tests 21-28, 31-33, and
PROTOCOL.md "Order", "Delay", "Pause", "Rate limit", "Concurrency", "Progress")."""

from __future__ import annotations

import pytest

from proto.errors import JobNotActive, JobNotFound
from shard.shardset import ShardSet

from .helpers import (
    ack,
    data_of,
    drain_events,
    fail,
    get_job,
    pull,
    pull_ids,
    pull_one,
    push,
    qshard,
    queue_info,
    spec,
    state,
    stats,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


# ---------------------------------------------------------------- order


def test_priority_ordering(ss: ShardSet) -> None:
    for p in (1, 3, 2):
        push(ss, "test", 0, p, priority=p)
    assert [pull_one(ss, "test").priority for _ in range(3)] == [3, 2, 1]


def test_priority_negative(ss: ShardSet) -> None:
    for p in (-10, 0, 10):
        push(ss, "test", 0, p, priority=p)
    assert [j.priority for j in pull(ss, "test", count=3)] == [10, 0, -10]


def test_fifo_same_priority(ss: ShardSet) -> None:
    ids = [push(ss, "test", 0, i) for i in range(3)]
    assert [pull_one(ss, "test").id for _ in range(3)] == ids


def test_fifo_across_many_pushes_and_pulls(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(50)], 0)
    got = pull_ids(ss, "test", count=20)
    ids2 = ss.push("test", [spec(i) for i in range(10)], 0)
    got += pull_ids(ss, "test", count=100)
    assert got == ids + ids2


def test_equal_priority_orders_by_run_at_then_push_order(ss: ShardSet) -> None:
    late = push(ss, "test", 0, "late", delay=100)  # run_at 100
    early = push(ss, "test", 50, "early")  # run_at 50
    later = push(ss, "test", 150, "later")  # run_at 150
    ss.tick(200)
    assert pull_ids(ss, "test", 200, count=3) == [early, late, later]


def test_delayed_job_promoted_late_keeps_its_run_at_order(ss: ShardSet) -> None:
    # Promoted at 300 (after later-run_at jobs were appended), it still goes by run_at 100.
    delayed = push(ss, "test", 0, "d", delay=100)
    a = push(ss, "test", 200, "a")
    b = push(ss, "test", 250, "b")
    ss.tick(300)
    assert state(ss, delayed) == "waiting"
    assert pull_ids(ss, "test", 300, count=3) == [delayed, a, b]


def test_delayed_job_promoted_by_pull_itself(ss: ShardSet) -> None:
    a = push(ss, "test", 200, "a")
    delayed = push(ss, "test", 0, "d", delay=100)
    # no tick: the pull promotes what is due
    assert pull_ids(ss, "test", 300, count=2) == [delayed, a]


def test_priority_beats_run_at(ss: ShardSet) -> None:
    low = push(ss, "test", 0, "low", priority=0)
    high = push(ss, "test", 100, "high", priority=1)
    assert pull_ids(ss, "test", 100, count=2) == [high, low]


def test_retried_job_is_ordered_by_its_new_run_at(ss: ShardSet) -> None:
    r = push(ss, "test", 0, "r", max_attempts=3)
    pull_one(ss, "test", 0)
    a = push(ss, "test", 10, "a")
    fail(ss, r, 20)  # run_at 20: after a (run_at 10)
    b = push(ss, "test", 30, "b")
    assert pull_ids(ss, "test", 30, count=3) == [a, r, b]


def test_retried_job_with_backoff_goes_by_run_at(ss: ShardSet) -> None:
    r = push(ss, "test", 0, "r", backoff=100)
    pull_one(ss, "test", 0)
    fail(ss, r, 10)  # run_at 110
    a = push(ss, "test", 50, "a")
    b = push(ss, "test", 200, "b")
    ss.tick(200)
    assert pull_ids(ss, "test", 200, count=3) == [a, r, b]


def test_retried_high_priority_job_comes_before_lower_priorities(ss: ShardSet) -> None:
    r = push(ss, "test", 0, "r", priority=5)
    pull_one(ss, "test", 0)
    low = push(ss, "test", 1, "low", priority=1)
    fail(ss, r, 2)
    assert pull_ids(ss, "test", 3, count=2) == [r, low]


# ---------------------------------------------------------------- delay


def test_delayed_job(ss: ShardSet) -> None:
    jid = push(ss, "test", 1000, delay=100)
    job = get_job(ss, jid)
    assert job.run_at == 1100 > job.created_at == 1000
    assert state(ss, jid) == "delayed"
    assert stats(ss)["delayed"] == 1
    assert queue_info(ss, "test")["pending"] == 1


def test_delayed_job_ordering(ss: ShardSet) -> None:
    push(ss, "test", 0, "delayed", delay=200)
    now_id = push(ss, "test", 0, "now")
    assert pull_ids(ss, "test", 0) == [now_id]


def test_delayed_never_blocks_ready_jobs_even_with_higher_priority(ss: ShardSet) -> None:
    push(ss, "test", 0, "delayed", delay=200, priority=100)
    ready = push(ss, "test", 0, "ready", priority=0)
    assert pull_ids(ss, "test", 0, count=5) == [ready]


def test_backing_off_job_never_blocks_ready_jobs(ss: ShardSet) -> None:
    r = push(ss, "test", 0, "r", priority=100, backoff=1000)
    pull_one(ss, "test", 0)
    fail(ss, r, 1)
    ready = push(ss, "test", 2, "ready")
    assert pull_ids(ss, "test", 3, count=5) == [ready]


def test_delayed_becomes_waiting_exactly_at_run_at(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, delay=100)
    assert ss.wake_at() == 100
    ss.tick(99)
    assert state(ss, jid) == "delayed"
    assert pull(ss, "test", 99) == []
    ss.tick(100)
    assert state(ss, jid) == "waiting"
    assert stats(ss)["delayed"] == 0
    assert stats(ss)["queued"] == 1
    assert pull_ids(ss, "test", 100) == [jid]


def test_promotion_marks_the_queue_ready(ss: ShardSet) -> None:
    push(ss, "test", 0, delay=100)
    s = qshard(ss, "test")
    s.ready.clear()
    ss.tick(100)
    assert [q.name for q in s.ready] == ["test"]


# ---------------------------------------------------------------- pause


def test_pause_resume(ss: ShardSet) -> None:
    push(ss, "test")
    s = qshard(ss, "test")
    s.pause("test")
    assert queue_info(ss, "test")["paused"] is True
    s.resume("test")
    assert queue_info(ss, "test")["paused"] is False


def test_pause_stops_pulls_not_pushes(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    a = push(ss, "test")
    s.pause("test")
    b = push(ss, "test")
    assert pull(ss, "test", count=5) == []
    assert stats(ss)["queued"] == 2
    s.ready.clear()
    s.resume("test")
    assert [q.name for q in s.ready] == ["test"]  # parked pulls are woken
    assert pull_ids(ss, "test", count=5) == [a, b]


# ---------------------------------------------------------------- rate limit


def test_rate_limit_setting(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_rate_limit("test", 100, 0)
    push(ss, "test")
    assert queue_info(ss, "test")["rate_limit"] == 100
    s.set_rate_limit("test", None, 0)
    assert queue_info(ss, "test")["rate_limit"] is None


def test_rate_limit_bucket_full_at_start_and_refills_continuously(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_rate_limit("test", 10, 0)  # 10 tokens, one every 100 ms
    ss.push("test", [spec(i) for i in range(30)], 0)
    assert len(pull(ss, "test", 0, count=25)) == 10  # the full bucket
    assert pull(ss, "test", 0) == []
    assert pull(ss, "test", 99) == []
    assert len(pull(ss, "test", 100, count=5)) == 1  # continuous refill: 1 token per 100 ms
    assert len(pull(ss, "test", 350, count=5)) == 2  # 2.5 tokens
    assert len(pull(ss, "test", 400, count=5)) == 1  # the half token plus 0.5 more
    assert len(pull(ss, "test", 10_000, count=30)) == 10  # capped at the capacity
    assert stats(ss)["queued"] == 30 - 24


def test_rate_limit_takes_a_token_only_when_a_job_is_handed_out(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_rate_limit("test", 2, 0)
    for _ in range(5):
        assert pull(ss, "test", 0, count=2) == []  # empty queue: no token spent
    s.pause("test")
    push(ss, "test")
    push(ss, "test")
    assert pull(ss, "test", 0) == []  # paused: no token spent
    s.resume("test")
    assert len(pull(ss, "test", 0, count=5)) == 2


def test_rate_limit_sets_wake_at_for_parked_pulls(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_rate_limit("test", 4, 1000)  # a token every 250 ms
    ss.push("test", [spec(i) for i in range(6)], 1000)
    assert len(pull(ss, "test", 1000, count=10)) == 4
    assert s.wake_at > 1000
    assert pull(ss, "test", 1100) == []  # blocked: 0.4 tokens
    assert s.wake_at == 1250  # when the next whole token is due
    assert s.next_deadline() == 1250
    s.ready.clear()
    ss.tick(1249)
    assert s.ready == set()
    ss.tick(1250)
    assert [q.name for q in s.ready] == ["test"]
    assert len(pull(ss, "test", 1250, count=10)) == 1


def test_rate_limit_clear_wakes_and_unblocks(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_rate_limit("test", 1, 0)
    ss.push("test", [spec(i) for i in range(3)], 0)
    assert len(pull(ss, "test", 0, count=3)) == 1
    assert pull(ss, "test", 0) == []
    s.set_rate_limit("test", None, 0)
    assert len(pull(ss, "test", 0, count=3)) == 2


# ---------------------------------------------------------------- concurrency


def test_concurrency_limit_setting(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_concurrency("test", 2)
    for i in range(3):
        push(ss, "test", 0, i)
    assert queue_info(ss, "test")["concurrency_limit"] == 2
    s.set_concurrency("test", None)
    assert queue_info(ss, "test")["concurrency_limit"] is None


def test_concurrency_limit_caps_active_jobs(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    s.set_concurrency("test", 2)
    ids = ss.push("test", [spec(i) for i in range(4)], 0)
    assert pull_ids(ss, "test", 0, count=5) == ids[:2]
    assert pull(ss, "test", 0) == []
    s.ready.clear()
    ack(ss, ids[0], 1)
    assert [q.name for q in s.ready] == ["test"]  # a slot freed: parked pulls are woken
    assert pull_ids(ss, "test", 1, count=5) == [ids[2]]
    s.ready.clear()
    fail(ss, ids[1], 2)  # a failure frees the slot too (the retry waits again)
    assert [q.name for q in s.ready] == ["test"]
    assert pull_ids(ss, "test", 2, count=5) == [ids[3]]
    s.set_concurrency("test", None)
    assert pull_ids(ss, "test", 3, count=5) == [ids[1]]
    assert queue_info(ss, "test")["processing"] == 3


# ---------------------------------------------------------------- progress


def test_progress(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    s = qshard(ss, "test")
    s.progress(jid, 50, "halfway", 1)
    assert s.get_progress(jid) == (50, "halfway")
    assert get_job(ss, jid).progress == 50


def test_progress_max_100(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    s = qshard(ss, "test")
    s.progress(jid, 150, None, 1)
    assert s.get_progress(jid) == (100, None)


def test_progress_nonexistent(ss: ShardSet) -> None:
    s = ss.for_id(999999)
    assert s is not None
    with pytest.raises(JobNotFound) as ei:
        s.get_progress(999999)
    assert ei.value.message == "Job 999999 not found"
    with pytest.raises(JobNotFound):
        s.progress(999999, 5, None, 0)


def test_progress_only_for_active_jobs(ss: ShardSet) -> None:
    jid = push(ss, "test")
    s = qshard(ss, "test")
    with pytest.raises(JobNotActive) as ei:
        s.progress(jid, 10, None, 0)
    assert ei.value.message == f"Job {jid} is not active"
    assert ei.value.http_status == 404
    with pytest.raises(JobNotActive):
        s.get_progress(jid)
    pull_one(ss, "test")
    ack(ss, jid, 1)
    with pytest.raises(JobNotFound):
        s.get_progress(jid)  # completed jobs keep no body


def test_progress_event(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    drain_events(ss)
    qshard(ss, "test").progress(jid, 120, "x", 7)
    assert drain_events(ss) == [("progress", "test", jid, 7, 100)]


def test_data_survives_the_round_trip(ss: ShardSet) -> None:
    push(ss, "test", 0, {"k": [1, 2]})
    assert data_of(pull_one(ss, "test")) == {"k": [1, 2]}
