"""Wire shapes: the job object's field order and raw data, events, envelopes."""

from __future__ import annotations

import orjson

from proto.commands import JobSpec
from proto.wire import (
    EVENT_TYPES,
    JOB_FIELDS,
    STATES,
    error_reply,
    event_to_webhook,
    event_to_wire,
    job_to_wire,
    ok,
)
from shard.core import Shard

PROTOCOL_ORDER = [
    "id", "queue", "data", "priority", "created_at", "run_at", "started_at", "attempts",
    "max_attempts", "backoff", "ttl", "timeout", "unique_key", "depends_on", "progress",
    "progress_msg", "tags",
]  # fmt: skip


def test_job_fields_constant_matches_protocol() -> None:
    assert list(JOB_FIELDS) == PROTOCOL_ORDER


def test_states_and_event_types() -> None:
    assert STATES == (
        "waiting", "delayed", "active", "completed", "failed", "waiting-children", "unknown",
    )  # fmt: skip
    assert set(EVENT_TYPES) == {
        "pushed", "active", "completed", "failed", "retried", "progress", "cancelled", "expired",
    }  # fmt: skip


def test_job_to_wire_field_order_and_defaults() -> None:
    s = Shard(3)
    jid = s.push("q", JobSpec(b'{"b":1,"a":[1,2]}'), 1000)
    job, _ = s.get_job(jid)
    assert job is not None
    wire = job_to_wire(job)
    assert list(wire) == PROTOCOL_ORDER
    encoded = orjson.dumps(wire)
    assert encoded == (
        b'{"id":35,"queue":"q","data":{"b":1,"a":[1,2]},"priority":0,"created_at":1000,'
        b'"run_at":1000,"started_at":0,"attempts":0,"max_attempts":0,"backoff":0,"ttl":0,'
        b'"timeout":0,"unique_key":null,"depends_on":[],"progress":0,"progress_msg":null,'
        b'"tags":[]}'
    )


def test_job_to_wire_with_every_option() -> None:
    s = Shard(0)
    parent = s.push("q", JobSpec(b"0"), 10)
    jid = s.push(
        "q",
        JobSpec(
            b'"x"',
            priority=10,
            delay=5,
            ttl=60000,
            timeout=30000,
            max_attempts=3,
            backoff=1000,
            unique_key="key-1",
            depends_on=(parent,),
            tags=("urgent", "backend"),
        ),
        20,
    )
    job, state = s.get_job(jid)
    assert job is not None
    assert state == "waiting-children"
    decoded = orjson.loads(orjson.dumps(job_to_wire(job)))
    assert decoded == {
        "id": jid,
        "queue": "q",
        "data": "x",
        "priority": 10,
        "created_at": 20,
        "run_at": 25,
        "started_at": 0,
        "attempts": 0,
        "max_attempts": 3,
        "backoff": 1000,
        "ttl": 60000,
        "timeout": 30000,
        "unique_key": "key-1",
        "depends_on": [parent],
        "progress": 0,
        "progress_msg": None,
        "tags": ["urgent", "backend"],
    }


def test_data_is_embedded_raw_not_reencoded() -> None:
    s = Shard(0)
    raw = b'{"z":1,"a":"\\u00e9","n":1.50}'  # key order, escapes and number text kept as-is
    jid = s.push("q", JobSpec(raw), 0)
    job, _ = s.get_job(jid)
    assert job is not None
    encoded = orjson.dumps(job_to_wire(job))
    assert b'"data":' + raw + b',"priority"' in encoded


def test_event_to_wire_shapes() -> None:
    assert event_to_wire(("pushed", "q", 7, 123, None)) == {
        "event_type": "pushed",
        "queue": "q",
        "job_id": 7,
        "timestamp": 123,
    }
    assert orjson.dumps(event_to_wire(("completed", "q", 7, 5, b'{"r":1}'))) == (
        b'{"event_type":"completed","queue":"q","job_id":7,"timestamp":5,"data":{"r":1}}'
    )
    assert event_to_wire(("completed", "q", 7, 5, None)) == {
        "event_type": "completed",
        "queue": "q",
        "job_id": 7,
        "timestamp": 5,
        "data": None,
    }
    assert event_to_wire(("failed", "q", 7, 5, "boom")) == {
        "event_type": "failed",
        "queue": "q",
        "job_id": 7,
        "timestamp": 5,
        "error": "boom",
    }
    assert event_to_wire(("retried", "q", 7, 5, None))["error"] is None
    assert event_to_wire(("progress", "q", 7, 5, 50))["progress"] == 50
    for kind in ("active", "cancelled", "expired"):
        assert list(event_to_wire((kind, "q", 1, 2, None))) == [
            "event_type",
            "queue",
            "job_id",
            "timestamp",
        ]


def test_event_to_webhook_shape() -> None:
    body = event_to_webhook(("failed", "q", 9, 77, "test error"))
    assert list(body) == ["event", "queue", "job_id", "timestamp", "error"]
    assert body == {
        "event": "failed",
        "queue": "q",
        "job_id": 9,
        "timestamp": 77,
        "error": "test error",
    }
    assert orjson.dumps(event_to_webhook(("completed", "q", 9, 77, b"[1]"))) == (
        b'{"event":"completed","queue":"q","job_id":9,"timestamp":77,"data":[1]}'
    )


def test_envelopes() -> None:
    assert orjson.dumps(ok(id=5)) == b'{"ok":true,"id":5}'
    assert orjson.dumps(ok()) == b'{"ok":true}'
    assert orjson.dumps(error_reply("Job 5 not found")) == b'{"ok":false,"error":"Job 5 not found"}'
