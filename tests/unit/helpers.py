"""Small helpers for driving the pure core the way the runtime does, with plain-number clocks."""

from __future__ import annotations

from typing import Any

import orjson

from proto.commands import JobSpec
from proto.wire import Event
from shard.core import Queue, Shard, merge_metrics, merge_stats
from shard.job import Job
from shard.routing import shard_of_name
from shard.shardset import ShardSet


def spec(data: Any = None, **kw: Any) -> JobSpec:
    """A JobSpec whose data is the compact JSON of `data` (as the parser would store it)."""
    deps = kw.pop("depends_on", ())
    tags = kw.pop("tags", ())
    return JobSpec(orjson.dumps(data), depends_on=tuple(deps), tags=tuple(tags), **kw)


def push(ss: ShardSet, queue: str, now: int = 0, data: Any = None, **kw: Any) -> int:
    [jid] = ss.push(queue, [spec(data, **kw)], now)
    return jid


def shard_of(ss: ShardSet, job_id: int) -> Shard:
    s = ss.for_id(job_id)
    assert s is not None
    return s


def qshard(ss: ShardSet, queue: str) -> Shard:
    s = ss.for_queue(queue)
    assert s is not None
    return s


def pull(ss: ShardSet, queue: str, now: int = 0, count: int = 1, owner: Any = None) -> list[Job]:
    return qshard(ss, queue).pull(queue, count, now, owner)


def pull_ids(
    ss: ShardSet, queue: str, now: int = 0, count: int = 1, owner: Any = None
) -> list[int]:
    return [j.id for j in pull(ss, queue, now, count, owner)]


def pull_one(ss: ShardSet, queue: str, now: int = 0, owner: Any = None) -> Job:
    jobs = pull(ss, queue, now, 1, owner)
    assert len(jobs) == 1, jobs
    return jobs[0]


def ack(ss: ShardSet, job_id: int, now: int = 0, result: Any = None) -> None:
    raw = None if result is None else orjson.dumps(result)
    shard_of(ss, job_id).ack(job_id, raw, now)
    ss.settle(now)


def fail(ss: ShardSet, job_id: int, now: int = 0, error: str | None = "error") -> None:
    shard_of(ss, job_id).fail(job_id, error, now)
    ss.settle(now)


def cancel(ss: ShardSet, job_id: int, now: int = 0) -> None:
    shard_of(ss, job_id).cancel(job_id, now)
    ss.settle(now)


def ack_batch(ss: ShardSet, ids: list[int], now: int = 0) -> int:
    n = sum(s.ack_batch(ids, now) for s in ss)
    ss.settle(now)
    return n


def release_owner(ss: ShardSet, owner: Any, now: int = 0) -> int:
    n = sum(s.release_owner(owner, now) for s in ss)
    ss.settle(now)
    return n


def state(ss: ShardSet, job_id: int) -> str:
    return shard_of(ss, job_id).get_state(job_id)


def get_job(ss: ShardSet, job_id: int) -> Job:
    job, _ = shard_of(ss, job_id).get_job(job_id)
    assert job is not None
    return job


def data_of(job: Job) -> Any:
    return orjson.loads(job.data)


def stats(ss: ShardSet) -> dict[str, int]:
    return merge_stats(s.stats() for s in ss)


def metrics(ss: ShardSet, now: int = 0) -> dict[str, Any]:
    return merge_metrics(s.metrics(now) for s in ss)


def queue_infos(ss: ShardSet) -> list[dict[str, Any]]:
    return sorted((i for s in ss for i in s.queue_infos()), key=lambda i: i["name"])


def queue_info(ss: ShardSet, name: str) -> dict[str, Any]:
    [info] = [i for i in queue_infos(ss) if i["name"] == name]
    return info


def the_queue(ss: ShardSet, name: str) -> Queue:
    return qshard(ss, name).queues[name]


def cron_list(ss: ShardSet) -> list[dict[str, Any]]:
    return [c for s in ss for c in s.cron_list()]


def drain_events(ss: ShardSet) -> list[Event]:
    out: list[Event] = []
    for s in ss:
        out.extend(s.events)
        s.events.clear()
    return out


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(e[0], e[2]) for e in events]


def queues_on_distinct_shards(n: int, prefix: str = "q") -> list[str]:
    """`n` queue names that live in `n` different shards."""
    names: list[str] = []
    used: set[int] = set()
    i = 0
    while len(names) < n:
        name = f"{prefix}{i}"
        sh = shard_of_name(name)
        if sh not in used:
            used.add(sh)
            names.append(name)
        i += 1
    return names


def queues_on_same_shard(n: int, prefix: str = "q") -> list[str]:
    """`n` queue names that live in one shard."""
    first = f"{prefix}0"
    target = shard_of_name(first)
    names = [first]
    i = 1
    while len(names) < n:
        name = f"{prefix}{i}"
        if shard_of_name(name) == target:
            names.append(name)
        i += 1
    return names
