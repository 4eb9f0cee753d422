"""FAIL and retry, backoff, the DLQ, timeouts, TTL expiry and lost workers
(original tests 10-15, and PROTOCOL.md "FAIL and retry", "Timeout", "TTL", "lost worker")."""

from __future__ import annotations

import pytest

from proto.errors import JobNotFound
from shard.core import LOST_WORKER, TIMED_OUT
from shard.shardset import ShardSet

from .helpers import (
    ack,
    ack_batch,
    drain_events,
    fail,
    get_job,
    metrics,
    pull,
    pull_ids,
    pull_one,
    push,
    qshard,
    release_owner,
    spec,
    state,
    stats,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


def dlq_ids(ss: ShardSet, queue: str, count: int = 100) -> list[int]:
    return [j.id for j in qshard(ss, queue).dlq(queue, count)]


def retry_dlq(ss: ShardSet, queue: str, job_id: int | None, now: int) -> int:
    n = qshard(ss, queue).retry_dlq(queue, job_id, now)
    ss.settle(now)
    return n


# ---------------------------------------------------------------- fail and retry


def test_fail_and_retry(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=3)
    job = pull_one(ss, "test", 0)
    assert job.attempts == 0
    fail(ss, jid, 1, "error")
    assert state(ss, jid) == "waiting"
    again = pull_one(ss, "test", 2)
    assert again.id == jid
    assert again.attempts == 1
    assert again.progress_msg == "error"


def test_fail_with_backoff_moves_run_at_into_the_future(ss: ShardSet) -> None:
    jid = push(ss, "test", 1000, max_attempts=3, backoff=100)
    pull_one(ss, "test", 1000)
    fail(ss, jid, 1050)
    job = get_job(ss, jid)
    assert job.run_at == 1150
    assert job.started_at == 0
    assert state(ss, jid) == "delayed"
    assert pull(ss, "test", 1149) == []
    assert pull_ids(ss, "test", 1150) == [jid]


def test_fail_nonexistent_job(ss: ShardSet) -> None:
    with pytest.raises(JobNotFound) as ei:
        fail(ss, 999999)
    assert ei.value.message == "Job 999999 not found"


def test_fail_of_a_waiting_job_is_refused(ss: ShardSet) -> None:
    jid = push(ss, "test")
    with pytest.raises(JobNotFound):
        fail(ss, jid)
    assert get_job(ss, jid).attempts == 0


def test_backoff_doubles_from_the_base_and_is_capped(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, backoff=1000)  # max_attempts 0: retry forever
    now = 0
    delays = []
    for _ in range(13):
        ss.tick(now)
        job = pull_one(ss, "test", now)
        assert job.id == jid
        fail(ss, jid, now)
        run_at = get_job(ss, jid).run_at
        delays.append(run_at - now)
        now = run_at
    assert delays[:4] == [1000, 2000, 4000, 8000]
    assert delays[10:] == [1024 * 1000] * 3
    assert get_job(ss, jid).attempts == 13


def test_retry_resets_started_at_and_progress(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=5)
    pull_one(ss, "test", 10)
    qshard(ss, "test").progress(jid, 70, "most", 11)
    fail(ss, jid, 12, "oops")
    job = get_job(ss, jid)
    assert (job.started_at, job.progress, job.progress_msg, job.attempts) == (0, 0, "oops", 1)
    assert job.run_at == 12


def test_fail_emits_retried_then_failed_on_last_attempt(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=2)
    pull_one(ss, "test")
    fail(ss, jid, 1, "first")
    pull_one(ss, "test", 2)
    fail(ss, jid, 3, "second")
    evs = drain_events(ss)
    assert [e for e in evs if e[0] in ("retried", "failed")] == [
        ("retried", "test", jid, 1, "first"),
        ("failed", "test", jid, 3, "second"),
    ]
    assert state(ss, jid) == "failed"
    assert get_job(ss, jid).attempts == 2


# ---------------------------------------------------------------- DLQ


def test_dlq(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=1)
    pull_one(ss, "test")
    fail(ss, jid, 5, "error")
    assert dlq_ids(ss, "test") == [jid]
    assert state(ss, jid) == "failed"
    assert get_job(ss, jid).progress_msg == "error"
    assert stats(ss)["dlq"] == 1
    assert metrics(ss)["total_failed"] == 1
    assert retry_dlq(ss, "test", None, 100) == 1
    assert dlq_ids(ss, "test") == []
    job = get_job(ss, jid)
    assert state(ss, jid) == "waiting"
    assert (job.attempts, job.run_at, job.started_at) == (0, 100, 0)
    assert pull_ids(ss, "test", 100) == [jid]


def test_dlq_keeps_a_null_error(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=1)
    pull_one(ss, "test")
    fail(ss, jid, 1, None)
    assert get_job(ss, jid).progress_msg is None
    assert state(ss, jid) == "failed"


def test_dlq_retry_single(ss: ShardSet) -> None:
    j1 = push(ss, "test", 0, max_attempts=1)
    j2 = push(ss, "test", 0, max_attempts=1)
    for jid in pull_ids(ss, "test", count=2):
        fail(ss, jid)
    assert dlq_ids(ss, "test") == [j1, j2]
    assert retry_dlq(ss, "test", j1, 10) == 1
    assert dlq_ids(ss, "test") == [j2]
    assert state(ss, j1) == "waiting"
    assert retry_dlq(ss, "test", j1, 10) == 0  # no longer in the DLQ
    assert retry_dlq(ss, "test", 999999, 10) == 0
    assert retry_dlq(ss, "nowhere", None, 10) == 0


def test_dlq_with_limit_oldest_first(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i, max_attempts=1) for i in range(10)], 0)
    pulled = pull_ids(ss, "test", count=10)
    for jid in reversed(pulled):  # fail in reverse: the DLQ is in arrival order
        fail(ss, jid)
    assert dlq_ids(ss, "test", 5) == list(reversed(ids))[:5]
    assert len(dlq_ids(ss, "test")) == 10
    assert dlq_ids(ss, "test", 0) == []
    assert qshard(ss, "test").dlq("nowhere", 5) == []


def test_retry_dlq_emits_retried(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, max_attempts=1)
    pull_one(ss, "test")
    fail(ss, jid, 1, "bad")
    drain_events(ss)
    retry_dlq(ss, "test", None, 9)
    assert drain_events(ss) == [("retried", "test", jid, 9, "bad")]
    assert metrics(ss)["total_retried"] == 1


# ---------------------------------------------------------------- timeout


def test_timeout_fails_the_job_and_retries_it(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, timeout=100, max_attempts=3)
    pull_one(ss, "test", 0)
    ss.tick(100)
    assert state(ss, jid) == "active"  # strict: now > started_at + timeout
    ss.tick(101)
    job = get_job(ss, jid)
    assert state(ss, jid) == "waiting"
    assert (job.attempts, job.progress_msg) == (1, TIMED_OUT)
    with pytest.raises(JobNotFound) as ei:
        ack(ss, jid, 102)  # a late ACK
    assert ei.value.message == f"Job {jid} not found"
    assert pull_ids(ss, "test", 103) == [jid]
    ack(ss, jid, 104)
    assert state(ss, jid) == "completed"


def test_timeout_to_dlq(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, timeout=50, max_attempts=1)
    pull_one(ss, "test", 10)
    ss.tick(61)
    assert state(ss, jid) == "failed"
    assert get_job(ss, jid).progress_msg == "Job timed out"


def test_late_ack_before_the_timer_fired_is_refused(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, timeout=100, max_attempts=1)
    pull_one(ss, "test", 0)
    with pytest.raises(JobNotFound):
        ack(ss, jid, 101, {"late": True})
    # refused exactly as if the timer had fired: the job failed with the timeout
    assert state(ss, jid) == "failed"
    assert get_job(ss, jid).progress_msg == TIMED_OUT
    assert qshard(ss, "test").get_result(jid) is None


def test_ack_just_in_time_is_accepted(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, timeout=100)
    pull_one(ss, "test", 0)
    ack(ss, jid, 100)
    assert state(ss, jid) == "completed"


def test_late_fail_and_ack_batch_after_timeout(ss: ShardSet) -> None:
    a = push(ss, "test", 0, timeout=10, max_attempts=5)
    b = push(ss, "test", 0, timeout=10, max_attempts=5)
    pull(ss, "test", 0, count=2)
    with pytest.raises(JobNotFound):
        fail(ss, a, 11, "too late")
    assert get_job(ss, a).progress_msg == TIMED_OUT
    assert ack_batch(ss, [b], 11) == 0
    assert state(ss, b) == "waiting"
    assert get_job(ss, b).progress_msg == TIMED_OUT


def test_timeout_counts_from_each_pull(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, timeout=100)
    pull_one(ss, "test", 0)
    fail(ss, jid, 50)
    pull_one(ss, "test", 90)
    ss.tick(150)  # past the first pull's deadline, not the second's
    assert state(ss, jid) == "active"
    ss.tick(191)
    assert state(ss, jid) == "waiting"
    assert get_job(ss, jid).attempts == 2


# ---------------------------------------------------------------- TTL


def test_ttl_expiry_is_eager(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, ttl=100, unique_key="k")
    drain_events(ss)
    ss.tick(100)
    assert state(ss, jid) == "waiting"
    assert ss.wake_at() == 101
    ss.tick(101)
    assert state(ss, jid) == "unknown"
    assert metrics(ss)["total_expired"] == 1
    assert stats(ss)["queued"] == 0
    assert drain_events(ss) == [("expired", "test", jid, 101, None)]
    # the key is released
    again = push(ss, "test", 102, unique_key="k")
    assert again != jid


def test_ttl_expires_delayed_and_never_pulls_an_expired_job(ss: ShardSet) -> None:
    d = push(ss, "test", 0, ttl=50, delay=100)
    w = push(ss, "test", 0, ttl=50)
    assert pull(ss, "test", 51) == []  # the timer has not run: the pull itself refuses it
    assert state(ss, w) == "unknown"
    ss.tick(51)
    assert state(ss, d) == "unknown"
    assert metrics(ss)["total_expired"] == 2
    assert stats(ss) == {
        "queued": 0,
        "processing": 0,
        "delayed": 0,
        "dlq": 0,
        "waiting_children": 0,
    }


def test_ttl_does_not_expire_an_active_job(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, ttl=50)
    pull_one(ss, "test", 10)
    ss.tick(1000)
    assert state(ss, jid) == "active"
    ack(ss, jid, 1000)
    assert state(ss, jid) == "completed"
    assert metrics(ss)["total_expired"] == 0


def test_ttl_expires_a_job_that_fails_after_its_ttl(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, ttl=50)
    pull_one(ss, "test", 10)
    fail(ss, jid, 60)
    assert state(ss, jid) == "unknown"
    assert metrics(ss)["total_expired"] == 1


def test_ttl_applies_to_a_job_retried_with_backoff(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, ttl=50, backoff=100)
    pull_one(ss, "test", 0)
    fail(ss, jid, 10)
    assert state(ss, jid) == "delayed"
    ss.tick(51)
    assert state(ss, jid) == "unknown"


def test_ttl_of_a_job_retried_from_the_dlq_is_still_eager(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, ttl=50, max_attempts=1, unique_key="k")
    pull_one(ss, "test", 0)
    fail(ss, jid, 10)
    ss.tick(100)  # the TTL passes while the job sits in the DLQ: it stays there
    assert state(ss, jid) == "failed"
    assert retry_dlq(ss, "test", None, 200) == 1
    ss.tick(200)
    assert state(ss, jid) == "unknown"
    assert metrics(ss)["total_expired"] == 1
    assert push(ss, "test", 201, unique_key="k") > 0


def test_ttl_expiry_cascades_to_dependants(ss: ShardSet) -> None:
    parent = push(ss, "test", 0, ttl=10, delay=100)
    child = push(ss, "other", 0, depends_on=[parent])
    grandchild = push(ss, "third", 0, depends_on=[child])
    ss.tick(11)
    assert state(ss, parent) == "unknown"
    assert state(ss, child) == "failed"
    assert get_job(ss, child).progress_msg == f"Dependency {parent} failed"
    assert state(ss, grandchild) == "failed"
    assert get_job(ss, grandchild).progress_msg == f"Dependency {child} failed"


# ---------------------------------------------------------------- lost worker


def test_lost_worker_fails_its_jobs(ss: ShardSet) -> None:
    a = push(ss, "test", 0, max_attempts=3)
    b = push(ss, "test", 0, max_attempts=1)
    c = push(ss, "test", 0)
    assert pull_ids(ss, "test", 0, count=2, owner="conn-1") == [a, b]
    assert pull_ids(ss, "test", 0, owner="conn-2") == [c]
    assert release_owner(ss, "conn-1", 5) == 2
    assert state(ss, a) == "waiting"
    assert get_job(ss, a).progress_msg == LOST_WORKER == "Worker connection lost"
    assert get_job(ss, a).attempts == 1
    assert state(ss, b) == "failed"
    assert get_job(ss, b).progress_msg == LOST_WORKER
    assert state(ss, c) == "active"
    assert release_owner(ss, "conn-1", 6) == 0


def test_lost_worker_skips_jobs_already_finished(ss: ShardSet) -> None:
    a = push(ss, "q1", 0)
    b = push(ss, "q2", 0)
    pull_one(ss, "q1", 0, owner="w")
    pull_one(ss, "q2", 0, owner="w")
    ack(ss, a, 1)
    assert release_owner(ss, "w", 2) == 1
    assert state(ss, a) == "completed"
    assert state(ss, b) == "waiting"


def test_lost_worker_with_backoff_and_events(ss: ShardSet) -> None:
    a = push(ss, "test", 0, backoff=500)
    pull_one(ss, "test", 0, owner=("conn", 1))
    drain_events(ss)
    release_owner(ss, ("conn", 1), 10)
    assert drain_events(ss) == [("retried", "test", a, 10, LOST_WORKER)]
    assert get_job(ss, a).run_at == 510
