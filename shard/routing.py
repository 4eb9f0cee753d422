"""Which shard holds a queue or a job, and which worker owns a shard.

A queue lives in shard `crc32(utf8(name)) % 32`: stable across processes and restarts, unlike
Python's salted `hash()`. A job id carries its shard in its low bits (`id = seq * 32 + shard`),
so any worker routes ACK/FAIL/GETJOB by `id % 32` without a lookup. Worker `i` of `n` owns the
shards `s` with `s % n == i`; with persistence, ownership follows the shard across restarts with
a different worker count because every row carries its shard.
"""

from __future__ import annotations

from zlib import crc32

NUM_SHARDS = 32


def shard_of_name(name: str) -> int:
    return crc32(name.encode()) % NUM_SHARDS


def shard_of_id(job_id: int) -> int:
    return job_id % NUM_SHARDS


def owner_of(shard: int, workers: int) -> int:
    return shard % workers


def shards_of_worker(worker: int, workers: int) -> list[int]:
    return [s for s in range(NUM_SHARDS) if s % workers == worker]
