"""Cron (original tests 34-36, PROTOCOL.md "Cron"), wake-ups (`next_deadline`, `wake_at`) and
the retention of results (count and age)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from proto.errors import CronNotFound, InvalidRequest
from shard.core import NEVER, CoreConfig, Shard
from shard.shardset import ShardSet

from .helpers import (
    ack,
    cron_list,
    data_of,
    drain_events,
    fail,
    pull,
    pull_one,
    push,
    qshard,
    queue_infos,
    queues_on_distinct_shards,
    spec,
    state,
)


@pytest.fixture
def ss() -> ShardSet:
    return ShardSet()


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def cron_shard(ss: ShardSet, name: str) -> Shard:
    """CRON routes by the shard of its name (the same hash as queue names)."""
    return qshard(ss, name)


# ---------------------------------------------------------------- cron


def test_cron_add_list_delete(ss: ShardSet) -> None:
    s = cron_shard(ss, "test-cron")
    s.cron_add("test-cron", "test", b'{"a":1}', "*/60", 0, 1000)
    entries = cron_list(ss)
    assert len(entries) == 1
    [entry] = entries
    assert (entry["name"], entry["queue"], entry["schedule"], entry["priority"]) == (
        "test-cron",
        "test",
        "*/60",
        0,
    )
    assert entry["next_run"] == 61_000
    assert orjson.loads(orjson.dumps(entry))["data"] == {"a": 1}
    s.cron_delete("test-cron")
    assert cron_list(ss) == []


def test_cron_delete_nonexistent(ss: ShardSet) -> None:
    with pytest.raises(CronNotFound) as ei:
        cron_shard(ss, "nonexistent").cron_delete("nonexistent")
    assert ei.value.message == "Cron job not found"
    assert ei.value.http_status == 404


def test_cron_with_priority(ss: ShardSet) -> None:
    cron_shard(ss, "p").cron_add("p", "test", b"null", "*/30", 100, 0)
    assert cron_list(ss)[0]["priority"] == 100


@pytest.mark.parametrize("bad", ["*/0", "not a cron", "* * *", "61 * * * *", "0 0 30 2 *"])
def test_cron_bad_schedule_is_refused(ss: ShardSet, bad: str) -> None:
    s = cron_shard(ss, "bad")
    with pytest.raises(InvalidRequest) as ei:
        s.cron_add("bad", "test", b"null", bad, 0, 0)
    assert ei.value.message.startswith("Invalid: field 'schedule'")
    assert cron_list(ss) == []
    assert s.next_deadline() == NEVER


def test_cron_firing_pushes_through_the_shardset(ss: ShardSet) -> None:
    name, queue = "every-minute", "reports"
    s = cron_shard(ss, name)
    s.cron_add(name, queue, b'{"r":1}', "*/60", 7, 0)
    assert s.wake_at == 60_000
    assert ss.wake_at() == 60_000
    ss.tick(59_999)
    assert pull(ss, queue, 59_999) == []
    drain_events(ss)
    ss.tick(60_000)
    job = pull_one(ss, queue, 60_000)
    assert data_of(job) == {"r": 1}
    assert job.priority == 7
    assert job.queue == queue
    evs = drain_events(ss)
    assert ("pushed", queue, job.id, 60_000, None) in evs
    assert cron_list(ss)[0]["next_run"] == 120_000
    assert s.cron_out == []  # settled


def test_cron_missed_firings_collapse_into_one(ss: ShardSet) -> None:
    s = cron_shard(ss, "c")
    s.cron_add("c", "q", b"1", "*/10", 0, 0)
    ss.tick(95_000)
    assert len(pull(ss, "q", 95_000, count=100)) == 1
    assert cron_list(ss)[0]["next_run"] == 105_000


def test_cron_same_name_replaces(ss: ShardSet) -> None:
    s = cron_shard(ss, "c")
    s.cron_add("c", "old", b"1", "*/10", 0, 0)
    s.cron_add("c", "new", b"2", "*/10", 0, 0)
    assert [(c["name"], c["queue"]) for c in cron_list(ss)] == [("c", "new")]
    ss.tick(10_000)
    assert pull(ss, "old", 10_000) == []
    assert len(pull(ss, "new", 10_000, count=10)) == 1  # fired once, not twice


def test_deleted_cron_never_fires(ss: ShardSet) -> None:
    s = cron_shard(ss, "c")
    s.cron_add("c", "q", b"1", "*/10", 0, 0)
    s.cron_delete("c")
    ss.tick(100_000)
    assert pull(ss, "q", 100_000) == []
    assert queue_infos(ss) == []


def test_six_field_cron_fires_on_its_seconds(ss: ShardSet) -> None:
    s = cron_shard(ss, "c")
    start = ms(2024, 1, 1, 0, 0, 1)
    s.cron_add("c", "q", b"1", "*/5 * * * * *", 0, start)
    assert s.wake_at == ms(2024, 1, 1, 0, 0, 5)
    ss.tick(ms(2024, 1, 1, 0, 0, 5))
    ss.tick(ms(2024, 1, 1, 0, 0, 10))
    assert len(pull(ss, "q", ms(2024, 1, 1, 0, 0, 10), count=10)) == 2
    assert cron_list(ss)[0]["next_run"] == ms(2024, 1, 1, 0, 0, 15)


def test_weekday_cron_in_utc(ss: ShardSet) -> None:
    s = cron_shard(ss, "c")
    friday_evening = ms(2024, 3, 8, 18, 0)
    s.cron_add("c", "q", b"1", "0 30 9 * * MON-FRI", 0, friday_evening)
    assert cron_list(ss)[0]["next_run"] == ms(2024, 3, 11, 9, 30)  # Monday 09:30:00 UTC


# ---------------------------------------------------------------- wake-ups


def test_empty_shard_never_wakes() -> None:
    s = Shard(0)
    assert s.next_deadline() == NEVER
    assert s.wake_at == NEVER
    s.tick(10**9)
    assert s.wake_at == NEVER


def test_wake_at_is_the_earliest_due_thing() -> None:
    s = Shard(0)
    s.push("delayed", spec(1, delay=500), 1000)  # due at 1500
    assert (s.wake_at, s.next_deadline()) == (1500, 1500)
    s.push("ttl", spec(2, ttl=300), 1000)  # expires once now > 1300
    assert (s.wake_at, s.next_deadline()) == (1301, 1301)
    s.push("timeout", spec(3, timeout=100), 1100)
    [job] = s.pull("timeout", 1, 1100)  # times out once now > 1200
    assert job.timeout == 100
    assert (s.wake_at, s.next_deadline()) == (1201, 1201)
    s.cron_add("c", "q", b"1", "*/1", 0, 1000)  # fires at 2000
    assert s.wake_at == 1201
    s.tick(1201)
    assert (s.wake_at, s.next_deadline()) == (1301, 1301)
    s.tick(1301)
    assert (s.wake_at, s.next_deadline()) == (1500, 1500)
    s.tick(1500)
    assert (s.wake_at, s.next_deadline()) == (2000, 2000)


def test_shardset_wake_at_is_the_minimum_over_shards(ss: ShardSet) -> None:
    qa, qb = queues_on_distinct_shards(2)
    push(ss, qa, 0, delay=300)
    push(ss, qb, 0, delay=200)
    assert ss.wake_at() == 200
    ss.tick(200)
    assert ss.wake_at() == 300


def test_tick_recomputes_wake_at(ss: ShardSet) -> None:
    s = qshard(ss, "q")
    a = push(ss, "q", 0, delay=100)
    push(ss, "q", 0, delay=300)
    ss.tick(100)
    assert state(ss, a) == "waiting"
    assert s.wake_at == 300
    ss.tick(300)
    assert s.wake_at == NEVER


def test_shardset_tick_only_ticks_due_shards(ss: ShardSet) -> None:
    s = qshard(ss, "q")
    push(ss, "q", 0, delay=100)
    others = [x for x in ss if x is not s]
    assert all(x.wake_at == NEVER for x in others)
    ss.tick(50)
    assert s.wake_at == 100


def test_wake_at_for_a_retry_with_backoff(ss: ShardSet) -> None:
    s = qshard(ss, "q")
    jid = push(ss, "q", 0, backoff=250)
    pull_one(ss, "q", 0)
    fail(ss, jid, 10)
    assert s.wake_at == 260
    ss.tick(260)
    assert state(ss, jid) == "waiting"


# ---------------------------------------------------------------- results retention


def test_results_kept_by_count() -> None:
    ss = ShardSet(config=CoreConfig(completed_keep=2))
    ids = ss.push("q", [spec(i) for i in range(3)], 0)
    pull(ss, "q", 0, count=3)
    for i, jid in enumerate(ids):
        ack(ss, jid, 10 + i, {"r": i})
    s = qshard(ss, "q")
    assert [state(ss, j) for j in ids] == ["unknown", "completed", "completed"]
    assert [s.get_result(j) for j in ids] == [None, b'{"r":1}', b'{"r":2}']


def test_results_kept_by_age() -> None:
    ss = ShardSet(config=CoreConfig(completed_ttl_ms=1000))
    jid = push(ss, "q", 0)
    pull_one(ss, "q", 0)
    ack(ss, jid, 500, {"ok": True})
    s = qshard(ss, "q")
    assert s.wake_at == 1501  # the runtime must tick to evict
    ss.tick(1500)
    assert s.get_result(jid) == b'{"ok":true}'
    assert state(ss, jid) == "completed"
    ss.tick(1501)
    assert state(ss, jid) == "unknown"
    assert s.get_result(jid) is None
    assert s.wake_at == NEVER
