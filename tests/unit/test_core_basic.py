"""Core operations, queries, counters and edge cases (original tests 1-9, 19-20, 37-39, 43-50,
58-60, 74-75), against the pure core with all 32 shards in one ShardSet."""

from __future__ import annotations

from zlib import crc32

import orjson
import pytest

from proto.errors import InvalidRequest, JobFinished, JobNotFound, UnknownDependency
from proto.wire import job_to_wire
from shard.core import Shard
from shard.routing import NUM_SHARDS, shard_of_id, shard_of_name
from shard.shardset import ShardSet

from .helpers import (
    ack,
    ack_batch,
    cancel,
    data_of,
    fail,
    get_job,
    metrics,
    pull,
    pull_ids,
    pull_one,
    push,
    qshard,
    queue_info,
    queue_infos,
    shard_of,
    spec,
    state,
    stats,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


# ---------------------------------------------------------------- core operations


def test_push_and_pull(ss: ShardSet) -> None:
    jid = push(ss, "test", 100, {"n": 1})
    assert jid > 0
    assert shard_of_id(jid) == shard_of_name("test")
    job = get_job(ss, jid)
    assert job.queue == "test"
    assert state(ss, jid) == "waiting"
    pulled = pull_one(ss, "test", 200)
    assert pulled.id == jid
    assert pulled.queue == "test"
    assert data_of(pulled) == {"n": 1}
    assert pulled.started_at == 200
    assert state(ss, jid) == "active"


def test_job_ids_are_seq_times_32_plus_shard() -> None:
    s = Shard(7)
    ids = [s.push("q", spec(i), 0) for i in range(3)]
    assert ids == [1 * 32 + 7, 2 * 32 + 7, 3 * 32 + 7]
    assert s.push_batch("other", [spec(1), spec(2)], 0) == [4 * 32 + 7, 5 * 32 + 7]


def test_push_with_all_options(ss: ShardSet) -> None:
    jid = push(
        ss,
        "test",
        1000,
        {"x": 1},
        priority=10,
        delay=0,
        ttl=60000,
        timeout=30000,
        max_attempts=3,
        backoff=1000,
        unique_key="key-1",
        tags=["a"],
    )
    job = pull_one(ss, "test", 1000)
    assert job.id == jid
    assert (job.priority, job.ttl, job.timeout, job.max_attempts, job.backoff) == (
        10,
        60000,
        30000,
        3,
        1000,
    )
    assert job.unique_key == "key-1"
    assert job.created_at == job.run_at == 1000
    assert job.attempts == 0
    assert job.tags == ("a",)
    wire = orjson.loads(orjson.dumps(job_to_wire(job)))
    assert wire["priority"] == 10 and wire["unique_key"] == "key-1" and wire["data"] == {"x": 1}


def test_push_batch_priorities(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(0, priority=0), spec(1, priority=5)], 0)
    assert len(ids) == 2
    assert ids[0] < ids[1]
    assert pull_one(ss, "test").priority == 5
    assert pull_one(ss, "test").priority == 0


def test_push_batch_large(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i, priority=i) for i in range(100)], 0)
    assert len(ids) == len(set(ids)) == 100
    assert pull_one(ss, "test").priority == 99
    assert [j.priority for j in pull(ss, "test", count=200)] == list(range(98, -1, -1))


def test_ack_then_second_ack_is_refused(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    ack(ss, jid, 5)
    assert state(ss, jid) == "completed"
    with pytest.raises(JobNotFound) as ei:
        ack(ss, jid, 6)
    assert ei.value.message == f"Job {jid} not found"
    assert ei.value.http_status == 404


def test_ack_of_waiting_job_is_refused(ss: ShardSet) -> None:
    jid = push(ss, "test")
    with pytest.raises(JobNotFound):
        ack(ss, jid)
    assert state(ss, jid) == "waiting"


def test_ack_with_result(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    ack(ss, jid, 1, {"computed": 42, "success": True})
    s = qshard(ss, "test")
    assert s.get_result(jid) == b'{"computed":42,"success":true}'
    assert s.has_result(jid)


def test_ack_without_result_keeps_null(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    ack(ss, jid, 1)
    s = qshard(ss, "test")
    assert s.get_result(jid) is None
    assert s.has_result(jid)
    assert not s.has_result(jid + 32)


def test_ack_nonexistent_job(ss: ShardSet) -> None:
    with pytest.raises(JobNotFound) as ei:
        ack(ss, 999999)
    assert ei.value.message == "Job 999999 not found"


def test_pull_batch(ss: ShardSet) -> None:
    ss.push("test", [spec(i) for i in range(10)], 0)
    jobs = pull(ss, "test", count=5)
    assert [data_of(j) for j in jobs] == [0, 1, 2, 3, 4]
    assert stats(ss) == {
        "queued": 5,
        "processing": 5,
        "delayed": 0,
        "dlq": 0,
        "waiting_children": 0,
    }


def test_pull_batch_returns_what_is_ready(ss: ShardSet) -> None:
    ss.push("test", [spec(i) for i in range(3)], 0)
    assert len(pull(ss, "test", count=10)) == 3
    assert pull(ss, "test", count=10) == []


def test_pull_of_unknown_queue_is_empty_and_creates_nothing(ss: ShardSet) -> None:
    assert pull(ss, "nowhere", count=5) == []
    assert queue_infos(ss) == []


def test_ack_batch(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(5)], 0)
    assert len(pull(ss, "test", count=5)) == 5
    assert ack_batch(ss, ids, 10) == 5
    assert stats(ss)["processing"] == 0
    assert all(state(ss, i) == "completed" for i in ids)


def test_ack_batch_counts_only_active_jobs(ss: ShardSet) -> None:
    ids = ss.push("test", [spec(i) for i in range(4)], 0)
    pulled = pull_ids(ss, "test", count=2)
    assert pulled == ids[:2]
    # two active, two waiting, one unknown, one repeated
    assert ack_batch(ss, [*ids, 999999, ids[0]], 1) == 2
    assert [state(ss, i) for i in ids] == ["completed", "completed", "waiting", "waiting"]


# ---------------------------------------------------------------- cancel


def test_cancel_delayed_job(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, delay=60000)
    assert state(ss, jid) == "delayed"
    cancel(ss, jid, 1)
    assert state(ss, jid) == "unknown"
    assert stats(ss)["delayed"] == 0
    assert qshard(ss, "test").get_job(jid) == (None, "unknown")
    with pytest.raises(JobNotFound) as ei:
        cancel(ss, 999999)
    assert ei.value.message == "Job 999999 not found"


def test_cancel_processing_job(ss: ShardSet) -> None:
    jid = push(ss, "test")
    pull_one(ss, "test")
    cancel(ss, jid, 1)
    assert stats(ss)["processing"] == 0
    assert state(ss, jid) == "unknown"
    with pytest.raises(JobNotFound):
        ack(ss, jid, 2)


def test_cancelled_waiting_job_is_never_pulled(ss: ShardSet) -> None:
    a, b, c = ss.push("test", [spec(0), spec(1), spec(2)], 0)
    cancel(ss, b)
    assert pull_ids(ss, "test", count=5) == [a, c]
    assert stats(ss)["queued"] == 0


def test_cancel_finished_jobs_is_refused_with_409(ss: ShardSet) -> None:
    done = push(ss, "test")
    pull_one(ss, "test")
    ack(ss, done)
    with pytest.raises(JobFinished) as ei:
        cancel(ss, done)
    assert ei.value.message == f"Job {done} cannot be cancelled: it is completed"
    assert ei.value.http_status == 409
    dead = push(ss, "test", max_attempts=1)
    pull_one(ss, "test")
    fail(ss, dead)
    with pytest.raises(JobFinished) as ei:
        cancel(ss, dead)
    assert ei.value.message == f"Job {dead} cannot be cancelled: it is failed"
    assert state(ss, dead) == "failed"


# ---------------------------------------------------------------- stats, metrics, queues


def test_stats(ss: ShardSet) -> None:
    for i in range(5):
        push(ss, "test", 0, i)
    assert stats(ss) == {
        "queued": 5,
        "processing": 0,
        "delayed": 0,
        "dlq": 0,
        "waiting_children": 0,
    }
    pull_one(ss, "test")
    assert stats(ss) == {
        "queued": 4,
        "processing": 1,
        "delayed": 0,
        "dlq": 0,
        "waiting_children": 0,
    }


def test_stats_counts_every_state(ss: ShardSet) -> None:
    parent = push(ss, "a")
    push(ss, "a", 0, delay=100)
    push(ss, "b", 0, depends_on=[parent])
    doomed = push(ss, "c", 0, max_attempts=1)
    pull_one(ss, "c")
    fail(ss, doomed)
    pull_one(ss, "a")
    assert stats(ss) == {
        "queued": 0,
        "processing": 1,
        "delayed": 1,
        "dlq": 1,
        "waiting_children": 1,
    }


def test_metrics(ss: ShardSet) -> None:
    for i in range(5):
        jid = push(ss, "test", 1000 + i, i)
        pull_one(ss, "test", 1000 + i)
        ack(ss, jid, 1010 + i)
    m = metrics(ss, 5000)
    assert m["total_pushed"] == 5
    assert m["total_completed"] == 5
    assert m["total_failed"] == 0
    assert m["total_expired"] == 0
    assert m["jobs_per_second"] == 0.5  # 5 completions in the 10 s window
    assert m["avg_latency_ms"] == 10.0
    assert m["queues"] == [
        {"name": "test", "pending": 0, "processing": 0, "dlq": 0, "rate_limit": None}
    ]


def test_metrics_window_ignores_the_current_second(ss: ShardSet) -> None:
    jid = push(ss, "q", 5000)
    pull_one(ss, "q", 5000)
    ack(ss, jid, 5500)
    assert metrics(ss, 5900)["jobs_per_second"] == 0.0
    assert metrics(ss, 6000)["jobs_per_second"] == 0.1
    assert metrics(ss, 60_000)["jobs_per_second"] == 0.0  # out of the window


def test_list_queues(ss: ShardSet) -> None:
    push(ss, "queue1")
    push(ss, "queue2")
    push(ss, "queue2")
    infos = queue_infos(ss)
    assert [i["name"] for i in infos] == ["queue1", "queue2"]
    assert queue_info(ss, "queue2") == {
        "name": "queue2",
        "pending": 2,
        "processing": 0,
        "dlq": 0,
        "paused": False,
        "rate_limit": None,
        "concurrency_limit": None,
    }


def test_list_queues_pending_is_waiting_plus_delayed(ss: ShardSet) -> None:
    push(ss, "q", 0)
    push(ss, "q", 0, delay=50)
    push(ss, "q", 0)
    pull_one(ss, "q", 0)
    info = queue_info(ss, "q")
    assert (info["pending"], info["processing"]) == (2, 1)


def test_list_queues_keeps_drained_queues_and_settings_only_queues(ss: ShardSet) -> None:
    jid = push(ss, "drained")
    pull_one(ss, "drained")
    ack(ss, jid)
    qshard(ss, "paused-only").pause("paused-only")
    qshard(ss, "limited").set_rate_limit("limited", 10, 0)
    qshard(ss, "conc").set_concurrency("conc", 3)
    names = [i["name"] for i in queue_infos(ss)]
    assert names == ["conc", "drained", "limited", "paused-only"]
    assert queue_info(ss, "drained")["pending"] == 0
    assert queue_info(ss, "paused-only")["paused"] is True
    assert queue_info(ss, "limited")["rate_limit"] == 10
    assert queue_info(ss, "conc")["concurrency_limit"] == 3


def test_refused_push_does_not_list_a_new_queue(ss: ShardSet) -> None:
    with pytest.raises(UnknownDependency):
        push(ss, "never-held-a-job", 0, depends_on=[999999])
    assert ss.push("empty-batch", [], 0) == []
    assert queue_infos(ss) == []


def test_different_queues_different_shards(ss: ShardSet) -> None:
    for i in range(100):
        push(ss, f"queue-{i}")
    assert len(queue_infos(ss)) == 100
    assert stats(ss)["queued"] == 100
    used = {shard_of_name(f"queue-{i}") for i in range(100)}
    assert len(used) > 1


def test_shard_index_consistency() -> None:
    for name in ("test", "emails", "", "队列名称", "queue/with/slashes"):
        idx = shard_of_name(name)
        assert idx == shard_of_name(name)
        assert 0 <= idx < NUM_SHARDS
        assert idx == crc32(name.encode()) % 32  # stable across processes (not hash())
    ss = ShardSet()
    assert qshard(ss, "test").index == shard_of_name("test")


# ---------------------------------------------------------------- edge cases


def test_empty_queue_name(ss: ShardSet) -> None:
    jid = push(ss, "", 0, 1)
    job = pull_one(ss, "")
    assert job.id == jid
    assert job.queue == ""
    assert queue_infos(ss)[0]["name"] == ""


def test_large_payload(ss: ShardSet) -> None:
    data = {"items": list(range(10_000))}
    jid = push(ss, "test", 0, data)
    job = pull_one(ss, "test")
    assert job.id == jid
    assert data_of(job) == data


@pytest.mark.parametrize(
    "name",
    [
        "queue-with-dash",
        "queue_with_underscore",
        "queue.with.dots",
        "queue:with:colons",
        "queue/with/slashes",
        'q"quote\\back',
    ],
)
def test_special_characters_in_queue_name(ss: ShardSet, name: str) -> None:
    jid = push(ss, name)
    job = pull_one(ss, name)
    assert (job.id, job.queue) == (jid, name)


def test_unicode_queue_name(ss: ShardSet) -> None:
    jid = push(ss, "队列名称", 0, {"emoji": "🚀"})
    job = pull_one(ss, "队列名称")
    assert job.id == jid
    assert job.queue == "队列名称"
    assert data_of(job) == {"emoji": "🚀"}


def test_null_json_data(ss: ShardSet) -> None:
    push(ss, "test", 0, None)
    job = pull_one(ss, "test")
    assert job.data == b"null"
    assert orjson.dumps(job_to_wire(job)).count(b'"data":null') == 1


def test_nested_json_data(ss: ShardSet) -> None:
    data = {"a": {"b": {"c": [1, "two", None, True, 3.5, {"d": []}]}}, "e": [[1, 2], ["x"]]}
    push(ss, "test", 0, data)
    assert data_of(pull_one(ss, "test")) == data


def test_concurrent_push_counts(ss: ShardSet) -> None:
    # original 51-52: the core is single-threaded per shard; what matters is the totals
    for i in range(100):
        push(ss, "test", i, i)
    assert stats(ss)["queued"] == 100
    pulled = pull(ss, "test", 100, 50)
    for i in range(50):
        push(ss, "test", 200 + i, i)
    s = stats(ss)
    assert len(pulled) == 50
    assert s["queued"] + s["processing"] == 150


# ---------------------------------------------------------------- tags, GETJOB, GETSTATE


def test_push_with_tags(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, tags=["urgent", "backend"])
    assert get_job(ss, jid).tags == ("urgent", "backend")


def test_push_with_empty_tags(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, tags=[])
    assert get_job(ss, jid).tags == ()
    assert orjson.loads(orjson.dumps(job_to_wire(get_job(ss, jid))))["tags"] == []


def test_tags_preserved_after_pull(ss: ShardSet) -> None:
    push(ss, "test", 0, tags=["tag1", "tag2"])
    assert pull_one(ss, "test").tags == ("tag1", "tag2")


def test_get_job_includes_tags(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, priority=5, tags=["priority", "email"])
    job, st = qshard(ss, "test").get_job(jid)
    assert job is not None
    assert st == "waiting"
    assert job.tags == ("priority", "email")
    assert job.priority == 5


def test_job_state_through_its_life(ss: ShardSet) -> None:
    jid = push(ss, "test", 0, tags=["t"])
    assert state(ss, jid) == "waiting"
    pull_one(ss, "test")
    assert state(ss, jid) == "active"
    ack(ss, jid)
    assert state(ss, jid) == "completed"
    # completed jobs keep no body
    assert qshard(ss, "test").get_job(jid) == (None, "completed")


def test_get_state_of_unknown_id(ss: ShardSet) -> None:
    assert state(ss, 999999) == "unknown"
    assert shard_of(ss, 999999).get_job(999999) == (None, "unknown")


def test_list_jobs_newest_first_with_filters(ss: ShardSet) -> None:
    s = qshard(ss, "test")
    a = push(ss, "test", 10)
    b = push(ss, "test", 30)
    c = push(ss, "test", 20)
    d = push(ss, "test", 30, delay=5)
    pull_one(ss, "test", 30)  # takes a
    assert [(j.id, st) for j, st in s.list_jobs("test", None, 10)] == [
        (d, "delayed"),
        (b, "waiting"),
        (c, "waiting"),
        (a, "active"),
    ]
    assert [j.id for j, _ in s.list_jobs("test", "waiting", 10)] == [b, c]
    assert [j.id for j, _ in s.list_jobs(None, None, 2)] == [d, b]
    assert s.list_jobs("other", None, 10) == []
    with pytest.raises(InvalidRequest):
        s.list_jobs(None, "completed", 10)
