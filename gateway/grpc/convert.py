"""gRPC messages <-> the TCP protocol's JSON objects. Pure: no I/O, no loop.

Requests become the JSON object a TCP client would send for the same command (`{"cmd":"PUSH",
"queue":...}`), so validation, limits, routing and error messages are the TCP ones. Proto3 has
no "absent" for plain scalars, so a zero duration or priority is simply left out (the TCP
default, which is also zero); fields declared `optional` in the .proto are passed only when set.
`data` and `result` arrive as JSON bytes and are parsed here, which is also where bytes that are
not JSON are refused.

Replies (dicts in the TCP reply shape) become messages; a job's `data` may be an
`orjson.Fragment` (a local reply embeds the stored bytes unchanged) or a parsed value (a reply
forwarded by another worker): `orjson.dumps` gives the JSON bytes of either.
"""

from __future__ import annotations

from typing import Any

import orjson

from proto.errors import InvalidRequest

_dumps = orjson.dumps

# The wire states of PROTOCOL.md -> JobState enum numbers of magicqueue.proto.
STATE_NUMBERS = {
    "unknown": 0,
    "waiting": 1,
    "delayed": 2,
    "active": 3,
    "completed": 4,
    "failed": 5,
    "waiting-children": 6,
    "waitingchildren": 6,
}


def json_field(raw: bytes, name: str) -> Any:
    """The value of a JSON-bytes field, or InvalidRequest naming the field."""
    if not raw:
        raise InvalidRequest(f"field '{name}' is empty: it must be JSON bytes (b'null' for none)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"field '{name}' is not valid JSON: {e}") from None


def job_options(m: Any, prefix: str = "") -> dict[str, Any]:
    """The job fields of a PushRequest or JobInput as a TCP job object."""
    o: dict[str, Any] = {"data": json_field(m.data, prefix + "data")}
    if m.priority:
        o["priority"] = m.priority
    if m.delay_ms:
        o["delay"] = m.delay_ms
    if m.ttl_ms:
        o["ttl"] = m.ttl_ms
    if m.timeout_ms:
        o["timeout"] = m.timeout_ms
    if m.max_attempts:
        o["max_attempts"] = m.max_attempts
    if m.backoff_ms:
        o["backoff"] = m.backoff_ms
    if m.HasField("unique_key"):
        o["unique_key"] = m.unique_key
    if m.depends_on:
        o["depends_on"] = list(m.depends_on)
    if m.tags:
        o["tags"] = list(m.tags)
    return o


def push(m: Any) -> dict[str, Any]:
    o = job_options(m)
    o["cmd"] = "PUSH"
    o["queue"] = m.queue
    return o


def push_batch(m: Any) -> dict[str, Any]:
    jobs = [job_options(j, f"jobs[{i}].") for i, j in enumerate(m.jobs)]
    return {"cmd": "PUSHB", "queue": m.queue, "jobs": jobs}


def pull(m: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"cmd": "PULL", "queue": m.queue}
    if m.HasField("timeout_ms"):
        o["timeout"] = m.timeout_ms
    return o


def pull_batch(m: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"cmd": "PULLB", "queue": m.queue, "count": m.count}
    if m.HasField("timeout_ms"):
        o["timeout"] = m.timeout_ms
    return o


def ack(job_id: int, result: bytes | None) -> dict[str, Any]:
    o: dict[str, Any] = {"cmd": "ACK", "id": job_id}
    if result is not None:
        o["result"] = json_field(result, "result")
    return o


def fail(job_id: int, error: str | None) -> dict[str, Any]:
    o: dict[str, Any] = {"cmd": "FAIL", "id": job_id}
    if error is not None:
        o["error"] = error
    return o


def job_message(pb2: Any, j: dict[str, Any]) -> Any:
    """A wire job dict as a `magicqueue.Job`."""
    return pb2.Job(
        id=j["id"],
        queue=j["queue"],
        data=_dumps(j["data"]),
        priority=j["priority"],
        created_at=j["created_at"],
        run_at=j["run_at"],
        started_at=j["started_at"],
        attempts=j["attempts"],
        max_attempts=j["max_attempts"],
        backoff=j["backoff"],
        ttl=j["ttl"],
        timeout=j["timeout"],
        unique_key=j["unique_key"],
        depends_on=j["depends_on"],
        progress=j["progress"],
        progress_msg=j["progress_msg"],
        tags=j["tags"],
    )


def state_number(state: str) -> int:
    return STATE_NUMBERS.get(state, 0)
