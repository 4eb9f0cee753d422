"""The newline-JSON protocol with no I/O: request bytes out, reply objects in.

Both clients (blocking and async) are thin I/O shells around this module, so a command is built
and its reply is read the same way in both. Nothing here touches a socket or a clock.

- A request is built as the compact JSON bytes of one object (`{"cmd":...}`), without `reqId`;
  the transport splices its `reqId` in just before the closing brace (`frame`), which saves
  re-encoding and lets `push_batch` assemble its body from jobs encoded one by one.
- Sizes are checked here, before anything is sent: a line over the server's frame limit would be
  refused *and* make the server close the connection, taking every other call in flight with it.
  Refusing it locally gives the same `Invalid: frame exceeds <n> bytes` message and keeps the
  connection intact.
- A reply is checked (`check`) and then turned into a typed value by a `parse_*` function; an
  error reply becomes the exception of `errors.error_from_message`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson

from magicqueue_client.errors import InvalidRequest, MagicQueueError, error_from_message
from magicqueue_client.types import (
    JOB_OPTIONS,
    CronEntry,
    Job,
    JobLookup,
    JobSpec,
    JobState,
    Metrics,
    ProgressInfo,
    QueueInfo,
    Stats,
)

# The server's named defaults (PROTOCOL.md, "Limits"). A client may be told others.
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_BATCH = 10_000
# Room kept in a frame for `,"reqId":<n>` and the newline spliced in by `frame`.
_REQ_ID_ROOM = 32

Reply = dict[str, Any]
T = TypeVar("T")

_dumps = orjson.dumps
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


def encode(obj: Any, what: str = "request") -> bytes:
    """Compact JSON, or `InvalidRequest` naming what could not be encoded."""
    try:
        return _dumps(obj)
    except TypeError as e:  # orjson.JSONEncodeError is a TypeError
        raise InvalidRequest(f"Invalid: {what} is not JSON-serialisable: {e}") from None


def frame(body: bytes, req_id: int, max_frame: int) -> bytes:
    """The line to send: `body` (one JSON object) with `reqId` spliced in, newline-terminated."""
    line = b'%b,"reqId":%d}\n' % (body[:-1], req_id)
    if len(line) > max_frame:
        raise InvalidRequest(f"Invalid: frame exceeds {max_frame} bytes")
    return line


def check(reply: Any) -> Reply:
    """The reply if it is `ok`, else the mapped exception."""
    if type(reply) is dict:
        if reply.get("ok") is True:
            return reply
        err = reply.get("error")
        raise error_from_message(err if isinstance(err, str) else f"Malformed reply: {reply!r}")
    raise MagicQueueError(f"Malformed reply: {reply!r}")


def parsed(fn: Callable[[Reply], T], reply: Reply) -> T:
    """Apply a reply parser; a reply that lacks what the protocol promises is a clear error."""
    try:
        return fn(reply)
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise MagicQueueError(f"Malformed reply ({type(e).__name__}: {e}): {reply!r}") from None


class LineSplitter:
    """Bytes in, complete lines out. Partial lines are kept as a list of chunks and joined once
    their newline arrives, so a large reply read in many pieces costs no quadratic copying."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            if data:
                self._parts.append(data)
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts = []
        lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._parts.append(rest)
        return lines


# ---------------------------------------------------------------- requests


def job_options(
    priority: int | None = None,
    delay: int | None = None,
    ttl: int | None = None,
    timeout: int | None = None,
    max_attempts: int | None = None,
    backoff: int | None = None,
    unique_key: str | None = None,
    depends_on: Sequence[int] | None = None,
    tags: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The options that are set (None leaves an option to the server's default)."""
    out: dict[str, Any] = {}
    if priority is not None:
        out["priority"] = priority
    if delay is not None:
        out["delay"] = delay
    if ttl is not None:
        out["ttl"] = ttl
    if timeout is not None:
        out["timeout"] = timeout
    if max_attempts is not None:
        out["max_attempts"] = max_attempts
    if backoff is not None:
        out["backoff"] = backoff
    if unique_key is not None:
        out["unique_key"] = unique_key
    if depends_on is not None:
        out["depends_on"] = list(depends_on)
    if tags is not None:
        out["tags"] = list(tags)
    return out


def ms(seconds: float | None) -> int | None:
    """A client-side wait in seconds as the wire's milliseconds (None stays None)."""
    if seconds is None:
        return None
    if seconds < 0:
        raise InvalidRequest(f"Invalid: timeout must be >= 0 seconds, got {seconds}")
    return round(seconds * 1000)


def req(cmd: str, **fields: Any) -> bytes:
    """A request body with the fields that are not None."""
    obj: dict[str, Any] = {"cmd": cmd}
    for k, v in fields.items():
        if v is not None:
            obj[k] = v
    return encode(obj)


def req_push(queue: str, data: Any, options: dict[str, Any]) -> bytes:
    # `data` is required and may be null, so it is always sent.
    return encode({"cmd": "PUSH", "queue": queue, "data": data, **options})


def req_ack(job_id: int, result: Any) -> bytes:
    if result is None:
        return encode({"cmd": "ACK", "id": job_id})
    return encode({"cmd": "ACK", "id": job_id, "result": result}, "result")


def req_cron(name: str, queue: str, data: Any, schedule: str, priority: int | None) -> bytes:
    obj: dict[str, Any] = {
        "cmd": "CRON",
        "name": name,
        "queue": queue,
        "data": data,
        "schedule": schedule,
    }
    if priority is not None:
        obj["priority"] = priority
    return encode(obj)


JobItem = JobSpec | Mapping[str, Any]


def _encode_item(item: JobItem, index: int) -> bytes:
    if isinstance(item, JobSpec):
        return encode(item.to_wire(), f"jobs[{index}]")
    if isinstance(item, Mapping):
        if "data" not in item:
            raise InvalidRequest(f"Invalid: missing field 'jobs[{index}].data'")
        unknown = set(item) - {"data", *JOB_OPTIONS}
        if unknown:
            raise InvalidRequest(f"Invalid: unknown fields in 'jobs[{index}]': {sorted(unknown)}")
        return encode(dict(item), f"jobs[{index}]")
    raise InvalidRequest(f"Invalid: 'jobs[{index}]' must be a JobSpec or a mapping with 'data'")


def pushb_bodies(
    queue: str, jobs: Iterable[JobItem], max_batch: int, max_frame: int
) -> Iterator[tuple[bytes, int]]:
    """PUSHB request bodies for `jobs`, in order: each at most `max_batch` jobs and small enough
    to fit one frame with its `reqId`. Yields `(body, number of jobs in it)`.

    Every job is encoded before the first body is yielded, so a job that cannot be encoded or
    that can never fit a frame is refused before anything is sent.
    """
    head = b'{"cmd":"PUSHB","queue":' + encode(queue) + b',"jobs":['
    tail = b"]}"
    budget = max_frame - len(head) - len(tail) - _REQ_ID_ROOM
    encoded = [_encode_item(item, i) for i, item in enumerate(jobs)]
    for i, e in enumerate(encoded):
        if len(e) + 1 > budget:
            raise InvalidRequest(
                f"Invalid: jobs[{i}] is {len(e)} bytes encoded and cannot fit a "
                f"{max_frame}-byte frame"
            )
    parts: list[bytes] = []
    size = 0
    for e in encoded:
        if parts and (len(parts) >= max_batch or size + len(e) + 1 > budget):
            yield head + b",".join(parts) + tail, len(parts)
            parts = []
            size = 0
        parts.append(e)
        size += len(e) + 1
    if parts:
        yield head + b",".join(parts) + tail, len(parts)


# ---------------------------------------------------------------- replies


def parse_id(r: Reply) -> int:
    return cast(int, r["id"])


def parse_ids(r: Reply) -> list[int]:
    return list(r["ids"])


def parse_count(r: Reply) -> int:
    """ACKB and RETRYDLQ answer their count as `"ids":[count]`."""
    ids = r["ids"]
    return int(ids[0]) if ids else 0


def parse_job(r: Reply) -> Job | None:
    j = r["job"]
    return None if j is None else Job.from_wire(j)


def parse_jobs(r: Reply) -> list[Job]:
    return [Job.from_wire(j) for j in r["jobs"]]


def parse_lookup(r: Reply) -> JobLookup:
    j = r.get("job")
    return JobLookup(None if j is None else Job.from_wire(j), r["state"])


def parse_state(r: Reply) -> JobState:
    return cast(JobState, r["state"])


def parse_result(r: Reply) -> Any:
    return r.get("result")


def parse_progress(r: Reply) -> ProgressInfo:
    return ProgressInfo.from_wire(r["progress"])


def parse_queues(r: Reply) -> list[QueueInfo]:
    return [QueueInfo.from_wire(q) for q in r["queues"]]


def parse_crons(r: Reply) -> list[CronEntry]:
    return [CronEntry.from_wire(c) for c in r["crons"]]


def parse_stats(r: Reply) -> Stats:
    return Stats.from_wire(r)


def parse_metrics(r: Reply) -> Metrics:
    return Metrics.from_wire(r["metrics"])


def pulled_job_ids(r: Any) -> list[int]:
    """Ids of the jobs a PULL/PULLB reply handed out (for giving back an abandoned pull)."""
    if type(r) is not dict or r.get("ok") is not True:
        return []
    if r.get("job") is not None:
        return [r["job"]["id"]]
    return [j["id"] for j in r.get("jobs") or ()]
