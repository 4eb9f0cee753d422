"""The command schema: every command with its defaults, and every refusal naming its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proto import commands as c
from proto.commands import JobSpec, decode_line, parse_command, parse_job
from proto.errors import InvalidRequest
from proto.limits import (
    DEFAULT_LIMITS,
    I32_MAX,
    I32_MIN,
    MAX_DEPENDENCIES,
    MAX_DURATION_MS,
    MAX_KEY_BYTES,
    MAX_TAGS,
    U32_MAX,
    U64_MAX,
    Limits,
)

LIM = DEFAULT_LIMITS
SMALL = Limits(max_frame_bytes=1000, max_job_bytes=20, max_batch=3, max_queue_name_bytes=8)


def parse(obj: Any, limits: Limits = LIM, **kw: bool) -> c.Command:
    return parse_command(obj, limits, **kw)


def push_spec(obj: Any, limits: Limits = LIM) -> JobSpec:
    cmd = parse(obj, limits)
    assert isinstance(cmd, c.Push)
    return cmd.job


def queue_of(obj: Any, limits: Limits = LIM) -> str:
    cmd = parse(obj, limits)
    assert isinstance(cmd, c.Push | c.PushBatch | c.Pull | c.PullBatch)
    return cmd.queue


def refused(obj: Any, limits: Limits = LIM, **kw: bool) -> str:
    with pytest.raises(InvalidRequest) as ei:
        parse_command(obj, limits, **kw)
    msg = ei.value.message
    assert msg.startswith("Invalid: ")
    assert ei.value.http_status == 400
    return msg


# ---------------------------------------------------------------- every command, defaults


def test_push_defaults() -> None:
    cmd = parse({"cmd": "PUSH", "queue": "q", "data": {"a": 1}})
    assert cmd == c.Push("q", JobSpec(b'{"a":1}'))
    assert cmd.job == JobSpec(
        data=b'{"a":1}',
        priority=0,
        delay=0,
        ttl=0,
        timeout=0,
        max_attempts=0,
        backoff=0,
        unique_key=None,
        depends_on=(),
        tags=(),
    )
    assert (cmd.route, cmd.mutating, cmd.internal) == ("queue", True, False)


def test_push_every_option() -> None:
    cmd = parse(
        {
            "cmd": "PUSH",
            "queue": "emails",
            "data": [1, "two", None],
            "priority": -5,
            "delay": 100,
            "ttl": 60000,
            "timeout": 30000,
            "max_attempts": 3,
            "backoff": 1000,
            "unique_key": "key-1",
            "depends_on": [64, 97, 64],
            "tags": ["urgent", "backend"],
            "unknown_extra": {"ignored": True},
        }
    )
    assert isinstance(cmd, c.Push)
    assert cmd.queue == "emails"
    assert cmd.job == JobSpec(
        data=b'[1,"two",null]',
        priority=-5,
        delay=100,
        ttl=60000,
        timeout=30000,
        max_attempts=3,
        backoff=1000,
        unique_key="key-1",
        depends_on=(64, 97),  # a repeated id is one dependency
        tags=("urgent", "backend"),
    )


def test_push_null_data_and_null_options_mean_absent() -> None:
    cmd = parse(
        {
            "cmd": "PUSH",
            "queue": "q",
            "data": None,
            "priority": None,
            "delay": None,
            "ttl": None,
            "timeout": None,
            "max_attempts": None,
            "backoff": None,
            "unique_key": None,
            "depends_on": None,
            "tags": None,
        }
    )
    assert isinstance(cmd, c.Push)
    assert cmd.job == JobSpec(b"null")


def test_push_data_is_reencoded_compactly() -> None:
    obj = orjson.loads(b'{"cmd":"PUSH","queue":"q","data":{ "a" : [ 1 , 2 ] , "b":"\\u00e9" }}')
    cmd = parse(obj)
    assert isinstance(cmd, c.Push)
    assert cmd.job.data == '{"a":[1,2],"b":"é"}'.encode()


def test_pushb() -> None:
    cmd = parse(
        {
            "cmd": "PUSHB",
            "queue": "q",
            "jobs": [{"data": 1}, {"data": "x", "priority": 5, "unique_key": "k"}],
        }
    )
    assert cmd == c.PushBatch("q", [JobSpec(b"1"), JobSpec(b'"x"', priority=5, unique_key="k")])


def test_pushb_empty_batch_is_accepted() -> None:
    assert parse({"cmd": "PUSHB", "queue": "q", "jobs": []}) == c.PushBatch("q", [])


def test_pull_and_pullb() -> None:
    assert parse({"cmd": "PULL", "queue": "q"}) == c.Pull("q", None)
    assert parse({"cmd": "PULL", "queue": "q", "timeout": 0}) == c.Pull("q", 0)
    assert parse({"cmd": "PULL", "queue": "q", "timeout": None}) == c.Pull("q", None)
    assert parse({"cmd": "PULLB", "queue": "q", "count": 5}) == c.PullBatch("q", 5, None)
    assert parse({"cmd": "PULLB", "queue": "q", "count": 1, "timeout": 250}) == c.PullBatch(
        "q", 1, 250
    )
    assert parse({"cmd": "PULLB", "queue": "q", "count": 10_000}) == c.PullBatch("q", 10_000)


def test_ack_ackb_fail() -> None:
    assert parse({"cmd": "ACK", "id": 7}) == c.Ack(7, None, None)
    assert parse({"cmd": "ACK", "id": 7, "result": None}) == c.Ack(7, None, None)
    assert parse({"cmd": "ACK", "id": 7, "result": {"computed": 42, "success": True}}) == c.Ack(
        7, b'{"computed":42,"success":true}', None
    )
    assert parse({"cmd": "ACK", "id": 7, "result": False, "worker": "w1"}) == c.Ack(
        7, b"false", "w1"
    )
    assert parse({"cmd": "ACKB", "ids": [1, 2, 3]}) == c.AckBatch([1, 2, 3])
    assert parse({"cmd": "ACKB", "ids": []}) == c.AckBatch([])
    assert parse({"cmd": "FAIL", "id": 9}) == c.Fail(9, None)
    assert parse({"cmd": "FAIL", "id": 9, "error": "boom"}) == c.Fail(9, "boom")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("GETJOB", c.GetJob),
        ("GETSTATE", c.GetState),
        ("GETRESULT", c.GetResult),
        ("CANCEL", c.Cancel),
        ("GETPROGRESS", c.GetProgress),
    ],
)
def test_commands_by_id(name: str, cls: Any) -> None:
    cmd = parse({"cmd": name, "id": U64_MAX})
    assert cmd == cls(U64_MAX)
    assert cmd.route == "id"
    assert "field 'id'" in refused({"cmd": name})
    assert "field 'id'" in refused({"cmd": name, "id": "5"})
    assert "field 'id'" in refused({"cmd": name, "id": -1})


def test_progress() -> None:
    assert parse({"cmd": "PROGRESS", "id": 1, "progress": 50, "message": "halfway"}) == (
        c.Progress(1, 50, "halfway")
    )
    assert parse({"cmd": "PROGRESS", "id": 1, "progress": 0}) == c.Progress(1, 0, None)
    assert parse({"cmd": "PROGRESS", "id": 1, "progress": 100}) == c.Progress(1, 100, None)
    # above 100 is stored as 100
    assert parse({"cmd": "PROGRESS", "id": 1, "progress": 150}) == c.Progress(1, 100, None)
    assert parse({"cmd": "PROGRESS", "id": 1, "progress": U32_MAX}) == c.Progress(1, 100, None)
    assert "field 'progress'" in refused({"cmd": "PROGRESS", "id": 1, "progress": -1})
    assert "missing field 'progress'" in refused({"cmd": "PROGRESS", "id": 1})
    assert "field 'progress'" in refused({"cmd": "PROGRESS", "id": 1, "progress": 50.5})
    assert "field 'message'" in refused({"cmd": "PROGRESS", "id": 1, "progress": 5, "message": 3})


def test_dlq_and_retrydlq() -> None:
    assert parse({"cmd": "DLQ", "queue": "q"}) == c.Dlq("q", 100)
    assert parse({"cmd": "DLQ", "queue": "q", "count": 5}) == c.Dlq("q", 5)
    assert parse({"cmd": "DLQ", "queue": "q", "count": None}) == c.Dlq("q", 100)
    assert parse({"cmd": "RETRYDLQ", "queue": "q"}) == c.RetryDlq("q", None)
    assert parse({"cmd": "RETRYDLQ", "queue": "q", "id": 33}) == c.RetryDlq("q", 33)
    assert "field 'count'" in refused({"cmd": "DLQ", "queue": "q", "count": -1})
    assert "field 'id'" in refused({"cmd": "RETRYDLQ", "queue": "q", "id": "33"})


def test_queue_settings() -> None:
    assert parse({"cmd": "PAUSE", "queue": "q"}) == c.Pause("q")
    assert parse({"cmd": "RESUME", "queue": "q"}) == c.Resume("q")
    assert parse({"cmd": "RATELIMIT", "queue": "q", "limit": 100}) == c.RateLimit("q", 100)
    assert parse({"cmd": "RATELIMITCLEAR", "queue": "q"}) == c.RateLimitClear("q")
    assert parse({"cmd": "SETCONCURRENCY", "queue": "q", "limit": 2}) == c.SetConcurrency("q", 2)
    assert parse({"cmd": "CLEARCONCURRENCY", "queue": "q"}) == c.ClearConcurrency("q")
    for name in ("RATELIMIT", "SETCONCURRENCY"):
        assert "missing field 'limit'" in refused({"cmd": name, "queue": "q"})
        assert "field 'limit'" in refused({"cmd": name, "queue": "q", "limit": 0})
        assert "field 'limit'" in refused({"cmd": name, "queue": "q", "limit": 10**7})
        assert "field 'limit'" in refused({"cmd": name, "queue": "q", "limit": True})


def test_gathered_commands() -> None:
    for name, cls in [
        ("LISTQUEUES", c.ListQueues),
        ("CRONLIST", c.CronList),
        ("STATS", c.Stats),
        ("METRICS", c.Metrics),
    ]:
        cmd = parse({"cmd": name})
        assert type(cmd) is cls
        assert cmd.route == "all"


def test_cron() -> None:
    cmd = parse(
        {"cmd": "CRON", "name": "nightly", "queue": "q", "data": {"x": 1}, "schedule": " */60 "}
    )
    assert cmd == c.Cron("nightly", "q", b'{"x":1}', "*/60", 0)
    assert cmd.route == "name"
    cmd = parse(
        {
            "cmd": "CRON",
            "name": "n",
            "queue": "q",
            "data": None,
            "schedule": "0 30 9 * * MON-FRI",
            "priority": 100,
        }
    )
    assert cmd == c.Cron("n", "q", b"null", "0 30 9 * * MON-FRI", 100)
    assert parse({"cmd": "CRONDELETE", "name": "n"}) == c.CronDelete("n")
    assert "field 'name'" in refused({"cmd": "CRONDELETE", "name": ""})
    assert "missing field 'schedule'" in refused(
        {"cmd": "CRON", "name": "n", "queue": "q", "data": 1}
    )
    assert "field 'priority'" in refused(
        {"cmd": "CRON", "name": "n", "queue": "q", "data": 1, "schedule": "*/5", "priority": 1.0}
    )


def test_cron_data_is_required() -> None:
    assert "missing field 'data'" in refused(
        {"cmd": "CRON", "name": "n", "queue": "q", "schedule": "*/5"}
    )


def test_auth() -> None:
    cmd = parse({"cmd": "AUTH", "token": "secret"})
    assert cmd == c.Auth("secret")
    assert cmd.route == "conn"
    assert "missing field 'token'" in refused({"cmd": "AUTH"})


# ---------------------------------------------------------------- refusals


def test_not_an_object() -> None:
    for value in ([], "PUSH", 1, None, True):
        assert refused(value) == "Invalid: request must be a JSON object"


def test_missing_or_bad_cmd() -> None:
    assert refused({"queue": "q"}) == "Invalid: missing field 'cmd'"
    assert refused({"cmd": 5}) == "Invalid: field 'cmd' must be a string"
    assert refused({"cmd": None}) == "Invalid: field 'cmd' must be a string"
    assert refused({"cmd": "FROB"}) == "Invalid: unknown cmd 'FROB'"
    assert refused({"cmd": "push", "queue": "q", "data": 1}) == "Invalid: unknown cmd 'push'"
    long = refused({"cmd": "X" * 500})
    assert long == "Invalid: unknown cmd '" + "X" * 64 + "...'"


@pytest.mark.parametrize("name", ["LISTJOBS", "HEARTBEAT", "WORKERS", "HISTOGRAMS"])
def test_internal_commands_are_refused_unless_internal(name: str) -> None:
    obj = {"cmd": name, "worker_id": "w"}
    assert refused(obj) == f"Invalid: unknown cmd '{name}'"
    cmd = parse(obj, internal=True)
    assert cmd.name == name
    assert cmd.internal


def test_internal_commands_parse() -> None:
    assert parse({"cmd": "LISTJOBS"}, internal=True) == c.ListJobs(None, None, 100, 0)
    assert parse(
        {"cmd": "LISTJOBS", "queue": "q", "state": "waitingchildren", "limit": 5, "offset": 2},
        internal=True,
    ) == c.ListJobs("q", "waiting-children", 5, 2)
    assert "field 'state'" in refused({"cmd": "LISTJOBS", "state": "completed"}, internal=True)
    assert parse(
        {"cmd": "HEARTBEAT", "worker_id": "w1", "queues": ["a", "b"], "concurrency": 4},
        internal=True,
    ) == c.Heartbeat("w1", ["a", "b"], 4)
    assert parse({"cmd": "HEARTBEAT", "worker_id": "w1"}, internal=True) == c.Heartbeat("w1", [], 1)
    assert "field 'queues'" in refused(
        {"cmd": "HEARTBEAT", "worker_id": "w1", "queues": "a"}, internal=True
    )


def test_public_commands_are_all_documented_ones() -> None:
    assert {
        "PUSH", "PUSHB", "PULL", "PULLB", "ACK", "ACKB", "FAIL", "GETJOB", "GETSTATE",
        "GETRESULT", "CANCEL", "PROGRESS", "GETPROGRESS", "DLQ", "RETRYDLQ", "PAUSE", "RESUME",
        "RATELIMIT", "RATELIMITCLEAR", "SETCONCURRENCY", "CLEARCONCURRENCY", "LISTQUEUES",
        "CRON", "CRONDELETE", "CRONLIST", "STATS", "METRICS", "AUTH",
    } == c.PUBLIC_COMMANDS  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"cmd": "PUSH", "data": 1}, "missing field 'queue'"),
        ({"cmd": "PUSH", "queue": "q"}, "missing field 'data'"),
        ({"cmd": "PUSH", "queue": 5, "data": 1}, "field 'queue'"),
        ({"cmd": "PUSH", "queue": None, "data": 1}, "field 'queue'"),
        ({"cmd": "PULL"}, "missing field 'queue'"),
        ({"cmd": "PULLB", "queue": "q"}, "missing field 'count'"),
        ({"cmd": "ACK"}, "missing field 'id'"),
        ({"cmd": "ACKB"}, "missing field 'ids'"),
        ({"cmd": "FAIL"}, "missing field 'id'"),
        ({"cmd": "PUSHB", "queue": "q"}, "missing field 'jobs'"),
        ({"cmd": "DLQ"}, "missing field 'queue'"),
        ({"cmd": "PAUSE"}, "missing field 'queue'"),
        ({"cmd": "CRON", "queue": "q", "data": 1, "schedule": "*/5"}, "missing field 'name'"),
    ],
)
def test_missing_fields(obj: dict[str, Any], field: str) -> None:
    assert field in refused(obj)


INT_FIELDS = [
    ("priority", I32_MIN, I32_MAX),
    ("delay", 0, MAX_DURATION_MS),
    ("ttl", 0, MAX_DURATION_MS),
    ("timeout", 0, MAX_DURATION_MS),
    ("backoff", 0, MAX_DURATION_MS),
    ("max_attempts", 0, U32_MAX),
]


@pytest.mark.parametrize(("name", "lo", "hi"), INT_FIELDS)
def test_push_integer_fields_type_and_range(name: str, lo: int, hi: int) -> None:
    base = {"cmd": "PUSH", "queue": "q", "data": 1}
    assert getattr(push_spec({**base, name: lo}), name) == lo
    assert getattr(push_spec({**base, name: hi}), name) == hi
    expected = f"Invalid: field '{name}' must be an integer in [{lo}, {hi}]"
    for bad in (lo - 1, hi + 1, True, False, 1.0, 2.5, "1", [1], {"v": 1}):
        assert refused({**base, name: bad}) == expected, bad


def test_job_ids_must_be_unsigned_integers() -> None:
    assert "field 'ids[1]'" in refused({"cmd": "ACKB", "ids": [1, -2]})
    assert "field 'ids[0]'" in refused({"cmd": "ACKB", "ids": [True]})
    assert "field 'ids'" in refused({"cmd": "ACKB", "ids": 5})
    assert "field 'id'" in refused({"cmd": "ACK", "id": 1.0})
    assert "field 'id'" in refused({"cmd": "ACK", "id": True})
    assert "field 'id'" in refused({"cmd": "ACK", "id": U64_MAX + 1})


def test_pull_count_and_timeout_ranges() -> None:
    assert "field 'count'" in refused({"cmd": "PULLB", "queue": "q", "count": 0})
    assert "field 'count'" in refused({"cmd": "PULLB", "queue": "q", "count": 10_001})
    assert "field 'count'" in refused({"cmd": "PULLB", "queue": "q", "count": 4}, SMALL)
    assert "field 'count'" in refused({"cmd": "PULLB", "queue": "q", "count": True})
    assert "field 'timeout'" in refused({"cmd": "PULL", "queue": "q", "timeout": -1})
    assert "field 'timeout'" in refused({"cmd": "PULL", "queue": "q", "timeout": 1.5})
    assert "field 'timeout'" in refused({"cmd": "PULLB", "queue": "q", "count": 1, "timeout": "1"})


def test_unique_key_depends_on_tags_types() -> None:
    base = {"cmd": "PUSH", "queue": "q", "data": 1}
    assert "field 'unique_key'" in refused({**base, "unique_key": 5})
    assert "field 'unique_key'" in refused({**base, "unique_key": "k" * (MAX_KEY_BYTES + 1)})
    assert "field 'depends_on'" in refused({**base, "depends_on": 5})
    assert "field 'depends_on[1]'" in refused({**base, "depends_on": [1, "2"]})
    assert "field 'depends_on[0]'" in refused({**base, "depends_on": [-1]})
    assert "field 'depends_on'" in refused(
        {**base, "depends_on": list(range(MAX_DEPENDENCIES + 1))}
    )
    assert "field 'tags'" in refused({**base, "tags": "urgent"})
    assert "field 'tags[1]'" in refused({**base, "tags": ["a", 2]})
    assert "field 'tags'" in refused({**base, "tags": ["t"] * (MAX_TAGS + 1)})
    assert push_spec({**base, "tags": []}).tags == ()


def test_error_and_worker_types() -> None:
    assert "field 'error'" in refused({"cmd": "FAIL", "id": 1, "error": 5})
    assert "field 'worker'" in refused({"cmd": "ACK", "id": 1, "worker": 5})


def test_batch_element_errors_name_the_element() -> None:
    assert refused({"cmd": "PUSHB", "queue": "q", "jobs": {"data": 1}}) == (
        "Invalid: field 'jobs' must be an array of jobs"
    )
    assert refused({"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, 5]}) == (
        "Invalid: field 'jobs[1]' must be an object"
    )
    assert refused({"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, {"priority": 1}]}) == (
        "Invalid: missing field 'jobs[1].data'"
    )
    msg = refused(
        {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, {"data": 1}, {"data": 1, "ttl": -5}]}
    )
    assert msg == f"Invalid: field 'jobs[2].ttl' must be an integer in [0, {MAX_DURATION_MS}]"
    assert "field 'jobs[0].priority'" in refused(
        {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1, "priority": True}]}
    )
    assert "field 'jobs[0].tags[0]'" in refused(
        {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1, "tags": [1]}]}
    )
    assert "field 'jobs[0].depends_on[0]'" in refused(
        {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1, "depends_on": [1.0]}]}
    )


def test_batch_size_limit() -> None:
    jobs = [{"data": i} for i in range(3)]
    assert parse({"cmd": "PUSHB", "queue": "q", "jobs": jobs}, SMALL) == c.PushBatch(
        "q", [JobSpec(b"0"), JobSpec(b"1"), JobSpec(b"2")]
    )
    assert refused({"cmd": "PUSHB", "queue": "q", "jobs": [*jobs, {"data": 3}]}, SMALL) == (
        "Invalid: field 'jobs' exceeds 3 jobs"
    )
    assert refused({"cmd": "ACKB", "ids": [1, 2, 3, 4]}, SMALL) == (
        "Invalid: field 'ids' exceeds 3 ids"
    )
    big = [{"data": 0}] * 10_001
    assert "field 'jobs'" in refused({"cmd": "PUSHB", "queue": "q", "jobs": big})


def test_data_and_result_size_limit() -> None:
    # SMALL allows 20 bytes of compact JSON: '"' + 18 chars + '"' is exactly 20
    ok = "x" * 18
    assert (
        push_spec({"cmd": "PUSH", "queue": "q", "data": ok}, SMALL).data
        == b'"' + ok.encode() + b'"'
    )
    assert refused({"cmd": "PUSH", "queue": "q", "data": ok + "x"}, SMALL) == (
        "Invalid: data exceeds 20 bytes"
    )
    assert refused({"cmd": "ACK", "id": 1, "result": ok + "x"}, SMALL) == (
        "Invalid: result exceeds 20 bytes"
    )
    assert "data exceeds 20 bytes" in refused(
        {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, {"data": ok + "x"}]}, SMALL
    )
    assert "data exceeds 20 bytes" in refused(
        {"cmd": "CRON", "name": "n", "queue": "q", "data": ok + "x", "schedule": "*/5"}, SMALL
    )
    # measured as compact JSON: whitespace in the request does not count
    obj = orjson.loads(b'{"cmd":"PUSH","queue":"q","data":[1,    2,    3,    4,    5]}')
    assert push_spec(obj, SMALL).data == b"[1,2,3,4,5]"


def test_data_limit_default_is_one_mebibyte() -> None:
    s = "y" * (1024 * 1024 - 2)
    assert len(push_spec({"cmd": "PUSH", "queue": "q", "data": s}).data) == 1024 * 1024
    assert refused({"cmd": "PUSH", "queue": "q", "data": s + "y"}) == (
        "Invalid: data exceeds 1048576 bytes"
    )


def test_queue_name_limit_counts_bytes_not_characters() -> None:
    assert queue_of({"cmd": "PUSH", "queue": "q" * 256, "data": 1}) == "q" * 256
    assert refused({"cmd": "PUSH", "queue": "q" * 257, "data": 1}) == (
        "Invalid: field 'queue' exceeds 256 bytes"
    )
    # "é" is 2 bytes in UTF-8: 128 of them are 256 bytes, 129 are 258 bytes (129 characters)
    assert queue_of({"cmd": "PULL", "queue": "é" * 128}) == "é" * 128
    assert refused({"cmd": "PULL", "queue": "é" * 129}) == (
        "Invalid: field 'queue' exceeds 256 bytes"
    )
    # 65 four-byte characters: 260 bytes although only 65 characters
    assert refused({"cmd": "PULL", "queue": "🚀" * 65}) == (
        "Invalid: field 'queue' exceeds 256 bytes"
    )
    assert queue_of({"cmd": "PULL", "queue": "🚀" * 64}) == "🚀" * 64
    assert "field 'queue'" in refused({"cmd": "PULL", "queue": "abcdefghi"}, SMALL)


def test_queue_names_of_any_shape_are_accepted() -> None:
    for name in ("", "a/b", "a:b", 'a"b', "a\\b", "队列名称", "queue.with.dots"):
        assert queue_of({"cmd": "PUSH", "queue": name, "data": 1}) == name


def test_parse_job_prefix() -> None:
    with pytest.raises(InvalidRequest) as ei:
        parse_job({"data": 1, "backoff": "1"}, LIM, "jobs[7].")
    assert ei.value.message.startswith("Invalid: field 'jobs[7].backoff'")


def test_unencodable_payload_is_invalid() -> None:
    assert "field 'data'" in refused({"cmd": "PUSH", "queue": "q", "data": 2**70})


# ---------------------------------------------------------------- decode_line


def test_decode_line_valid() -> None:
    assert decode_line(b'{"cmd":"STATS","reqId":7}') == {"cmd": "STATS", "reqId": 7}


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b'{"cmd":"PUSH"',
        b"",
        b'{"cmd":"PUSH"}}',
        b"\xff\xfe\xfd",
        b'{"cmd":"\xc3\x28"}',  # invalid UTF-8 inside a string
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
)
def test_decode_line_refusals(line: bytes) -> None:
    with pytest.raises(InvalidRequest) as ei:
        decode_line(line)
    assert ei.value.message.startswith("Invalid: malformed JSON")
