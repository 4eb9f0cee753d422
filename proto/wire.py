"""Shapes that travel on the wire: the job object, states, events, reply envelopes.

The job object keeps the field order of PROTOCOL.md (`id` first). `data` is stored as compact
JSON bytes and embedded with `orjson.Fragment`, so a payload is parsed once on the way in and
never again. Events are plain tuples inside a worker (cheap to make on the hot path) and become
JSON objects only here, when somebody subscribes.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

Fragment = orjson.Fragment

JOB_FIELDS = (
    "id", "queue", "data", "priority", "created_at", "run_at", "started_at", "attempts",
    "max_attempts", "backoff", "ttl", "timeout", "unique_key", "depends_on", "progress",
    "progress_msg", "tags",
)  # fmt: skip

STATES = ("waiting", "delayed", "active", "completed", "failed", "waiting-children", "unknown")

EVENT_TYPES = (
    "pushed", "active", "completed", "failed", "retried", "progress", "cancelled", "expired",
)  # fmt: skip


class JobLike(Protocol):
    id: int
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

    @property
    def queue(self) -> str: ...


def job_to_wire(job: JobLike) -> dict[str, Any]:
    return {
        "id": job.id,
        "queue": job.queue,
        "data": Fragment(job.data),
        "priority": job.priority,
        "created_at": job.created_at,
        "run_at": job.run_at,
        "started_at": job.started_at,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "backoff": job.backoff,
        "ttl": job.ttl,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "depends_on": job.depends_on,
        "progress": job.progress,
        "progress_msg": job.progress_msg,
        "tags": job.tags,
    }


# An event inside a worker: (type, queue, job_id, timestamp_ms, extra). `extra` is the result
# bytes for "completed", the error text for "failed"/"retried", the percentage for "progress",
# and None otherwise.
Event = tuple[str, str, int, int, Any]

_EXTRA_KEY = {"completed": "data", "failed": "error", "retried": "error", "progress": "progress"}


def event_to_wire(ev: Event) -> dict[str, Any]:
    """The JSON object SSE and WebSocket subscribers receive."""
    kind, queue, job_id, ts, extra = ev
    out: dict[str, Any] = {"event_type": kind, "queue": queue, "job_id": job_id, "timestamp": ts}
    key = _EXTRA_KEY.get(kind)
    if key is not None:
        if kind == "completed":
            out[key] = None if extra is None else Fragment(extra)
        else:
            out[key] = extra
    return out


def event_to_webhook(ev: Event) -> dict[str, Any]:
    """The JSON body a webhook receives: `event` instead of `event_type`."""
    body = event_to_wire(ev)
    body["event"] = body.pop("event_type")
    return {"event": body.pop("event"), **body}


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error_reply(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
