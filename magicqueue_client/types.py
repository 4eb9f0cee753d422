"""The records a client sends and gets back: jobs, job specs, queue info, stats, metrics.

Every record is built from a reply object by a `from_wire` class method that reads the fields
PROTOCOL.md names and ignores any others, so a newer server that adds fields does not break an
older client. Units follow the wire: times are Unix epoch milliseconds and job durations
(`delay`, `ttl`, `timeout`, `backoff`) are milliseconds; 0 means "none" for `ttl` and `timeout`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

JobState = Literal[
    "waiting", "delayed", "active", "completed", "failed", "waiting-children", "unknown"
]

# Job options a PUSH, a PUSHB item and `JobSpec` may carry (beside `data`).
JOB_OPTIONS = (
    "priority",
    "delay",
    "ttl",
    "timeout",
    "max_attempts",
    "backoff",
    "unique_key",
    "depends_on",
    "tags",
)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the server shows it (all wire fields, in wire order)."""

    id: int
    queue: str
    data: Any
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

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> Job:
        return cls(
            id=o["id"],
            queue=o["queue"],
            data=o.get("data"),
            priority=o.get("priority", 0),
            created_at=o.get("created_at", 0),
            run_at=o.get("run_at", 0),
            started_at=o.get("started_at", 0),
            attempts=o.get("attempts", 0),
            max_attempts=o.get("max_attempts", 0),
            backoff=o.get("backoff", 0),
            ttl=o.get("ttl", 0),
            timeout=o.get("timeout", 0),
            unique_key=o.get("unique_key"),
            depends_on=tuple(o.get("depends_on") or ()),
            progress=o.get("progress", 0),
            progress_msg=o.get("progress_msg"),
            tags=tuple(o.get("tags") or ()),
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of a `push_batch`: its data and options. `None` leaves an option to the server."""

    data: Any
    priority: int | None = None
    delay: int | None = None
    ttl: int | None = None
    timeout: int | None = None
    max_attempts: int | None = None
    backoff: int | None = None
    unique_key: str | None = None
    depends_on: Sequence[int] | None = None
    tags: Sequence[str] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data}
        for name in JOB_OPTIONS:
            v = getattr(self, name)
            if v is not None:
                out[name] = list(v) if name in ("depends_on", "tags") else v
        return out


class JobLookup(NamedTuple):
    """GETJOB: the job (None once completed, or when unknown) and its state."""

    job: Job | None
    state: JobState


@dataclass(frozen=True, slots=True)
class ProgressInfo:
    id: int
    progress: int
    message: str | None

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> ProgressInfo:
        return cls(id=o["id"], progress=o.get("progress", 0), message=o.get("message"))


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """LISTQUEUES: `pending` is waiting plus delayed; limits are None when unset."""

    name: str
    pending: int
    processing: int
    dlq: int
    paused: bool
    rate_limit: int | None
    concurrency_limit: int | None

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> QueueInfo:
        return cls(
            name=o["name"],
            pending=o.get("pending", 0),
            processing=o.get("processing", 0),
            dlq=o.get("dlq", 0),
            paused=bool(o.get("paused", False)),
            rate_limit=o.get("rate_limit"),
            concurrency_limit=o.get("concurrency_limit"),
        )


@dataclass(frozen=True, slots=True)
class CronEntry:
    name: str
    queue: str
    data: Any
    schedule: str
    priority: int
    next_run: int | None

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> CronEntry:
        return cls(
            name=o["name"],
            queue=o["queue"],
            data=o.get("data"),
            schedule=o["schedule"],
            priority=o.get("priority", 0),
            next_run=o.get("next_run"),
        )


@dataclass(frozen=True, slots=True)
class Stats:
    queued: int
    processing: int
    delayed: int
    dlq: int
    waiting_children: int

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> Stats:
        return cls(
            queued=o.get("queued", 0),
            processing=o.get("processing", 0),
            delayed=o.get("delayed", 0),
            dlq=o.get("dlq", 0),
            waiting_children=o.get("waiting_children", 0),
        )


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    name: str
    pending: int
    processing: int
    dlq: int
    rate_limit: int | None

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> QueueMetrics:
        return cls(
            name=o["name"],
            pending=o.get("pending", 0),
            processing=o.get("processing", 0),
            dlq=o.get("dlq", 0),
            rate_limit=o.get("rate_limit"),
        )


@dataclass(frozen=True, slots=True)
class Metrics:
    total_pushed: int
    total_completed: int
    total_failed: int
    total_expired: int
    jobs_per_second: float
    avg_latency_ms: float
    queues: tuple[QueueMetrics, ...]

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> Metrics:
        return cls(
            total_pushed=o.get("total_pushed", 0),
            total_completed=o.get("total_completed", 0),
            total_failed=o.get("total_failed", 0),
            total_expired=o.get("total_expired", 0),
            jobs_per_second=o.get("jobs_per_second", 0.0),
            avg_latency_ms=o.get("avg_latency_ms", 0.0),
            queues=tuple(QueueMetrics.from_wire(q) for q in o.get("queues") or ()),
        )
