"""The job record and the pure rules about one job.

A `Job` is the only mutable record of a job; `shard.core.Shard` is the only code that changes
it. States are small ints on the hot path and names on the wire. `completed` and `unknown` are
not stored states: a completed job leaves the job table (only its id and result are kept, for a
bounded time), and an unknown one was never there (or was cancelled or expired).

Memory matters here (a million waiting jobs per shard must fit in 500 bytes each), hence
`__slots__`, payloads kept as compact JSON bytes, and defaults shared rather than allocated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shard.core import Queue

WAITING = 0
DELAYED = 1
ACTIVE = 2
WAITING_CHILDREN = 3
FAILED = 4  # in the DLQ
DEAD = 5  # cancelled or expired: out of the job table, skipped where an entry still names it

STATE_NAMES = ("waiting", "delayed", "active", "waiting-children", "failed", "unknown")

# Retry backoff doubles per attempt up to this multiple of the base.
BACKOFF_CAP_FACTOR = 1024


class Job:
    __slots__ = (
        "attempts",
        "backoff",
        "created_at",
        "data",
        "depends_on",
        "hkey",  # the key of this job's live entry in its queue's or the delayed heap
        "id",
        "max_attempts",
        "owner",  # the connection that pulled it (lost-worker release), or None
        "priority",
        "progress",
        "progress_msg",
        "q",
        "run_at",
        "started_at",
        "state",
        "tags",
        "timeout",
        "ttl",
        "unique_key",
    )

    id: int
    q: Queue
    data: bytes
    priority: int
    created_at: int
    run_at: int
    started_at: int
    attempts: int
    max_attempts: int
    backoff: int
    ttl: int
    timeout: int
    unique_key: str | None
    depends_on: tuple[int, ...]
    progress: int
    progress_msg: str | None
    tags: tuple[str, ...]
    state: int
    hkey: int | None
    owner: Any

    @property
    def queue(self) -> str:
        return self.q.name

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


# ---------------------------------------------------------------- pure predicates
# Strict comparisons, as the original's tests pin them down.


def is_ready(run_at: int, now: int) -> bool:
    return run_at <= now


def is_expired(created_at: int, ttl: int, now: int) -> bool:
    return ttl > 0 and now > created_at + ttl


def is_timed_out(started_at: int, timeout: int, now: int) -> bool:
    return timeout > 0 and started_at > 0 and now > started_at + timeout


def should_go_to_dlq(attempts: int, max_attempts: int) -> bool:
    return max_attempts > 0 and attempts >= max_attempts


def retry_delay(backoff: int, attempts: int) -> int:
    """Delay before the retry that follows failure number `attempts` (1 for the first).

    `backoff * 2^(attempts-1)`: 1 s, 2 s, 4 s ... for a base of 1000 ms, capped at 1024x.
    """
    if backoff <= 0 or attempts <= 0:
        return 0
    return backoff * min(1 << min(attempts - 1, 62), BACKOFF_CAP_FACTOR)
