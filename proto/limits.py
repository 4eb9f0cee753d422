"""Named limits of the wire protocol, each with the reason it exists.

Nothing defaults to unlimited. `cluster.config.Config` overrides these from the environment and
hands one `Limits` object to every parser, so a limit has exactly one value in a running server.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

# One request line (TCP) or body (HTTP). A line longer than this is refused and the connection
# closed: we cannot find the next line boundary without buffering the rest of the giant line.
MAX_FRAME_BYTES = 16 * MIB
# A job's `data` (and an ACK `result`), measured as compact JSON. Jobs are kept in memory.
MAX_JOB_BYTES = 1 * MIB
# Jobs in one PUSHB, ids in one ACKB, `count` of one PULLB: bounds the work of one request.
MAX_BATCH = 10_000
# Queue names are map keys, metric labels and URL segments.
MAX_QUEUE_NAME_BYTES = 256
# Unique keys, cron names, tags, webhook ids: short identifiers.
MAX_KEY_BYTES = 1024
MAX_TAGS = 64
MAX_DEPENDENCIES = 1000
# FAIL `error` and PROGRESS `message` are kept with the job (the DLQ reason lives there).
MAX_ERROR_BYTES = 64 * KIB
# Durations in ms (delay, ttl, timeout, backoff, pull timeout): 2^40 ms is about 34 years. The
# bound keeps run_at inside the bits the shard's ordering keys reserve for it.
MAX_DURATION_MS = 1 << 40
# Rate limits in jobs per second, and concurrency limits in active jobs.
MAX_RATE_LIMIT = 1_000_000
MAX_CONCURRENCY = 1_000_000
I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_job_bytes: int = MAX_JOB_BYTES
    max_batch: int = MAX_BATCH
    max_queue_name_bytes: int = MAX_QUEUE_NAME_BYTES


DEFAULT_LIMITS = Limits()
