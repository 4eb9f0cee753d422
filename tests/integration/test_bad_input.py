"""Bad input over the wire: each refusal is a clear `Invalid: ` error and leaves everything intact.

For every kind of bad line (not JSON, not an object, unknown command, missing or mistyped fields,
numbers out of range, invalid UTF-8, absurd nesting, oversized frames, payloads, batches and
queue names) the test checks the exact refusal, then that
- the same connection still serves a valid command (except after an oversized frame, where the
  server must close it: it cannot find the next line boundary),
- a new connection does too,
- no worker crashed or restarted (same pids, still alive: the supervisor's output is read first,
  so a restart in between would show as a new pid), and
- STATS is what it was before the bad line (nothing half-applied).
The valid follow-up is a push, pull and ack, which leaves STATS unchanged too.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.harness import Client, Cluster
from tests.integration.conftest import Names

Connect = Callable[..., Client]
MAX_FRAME = 16 * 1024 * 1024
MAX_JOB = 1024 * 1024


class Intact:
    """What must not change across a bad request: worker pids and the cluster's STATS."""

    def __init__(self, cluster: Cluster, connect: Connect, names: Names) -> None:
        self.cluster = cluster
        self.connect = connect
        self.queue = names.queue()
        cluster.drain_output()
        self.pids = dict(cluster.worker_pids)
        assert len(self.pids) == 2
        with connect() as c:
            self.stats = c.ok("STATS")

    def works(self, c: Client) -> None:
        """A valid command sequence on `c`: push, pull and ack on this test's queue."""
        jid = c.ok("PUSH", queue=self.queue, data={"after": "bad input"})["id"]
        job = c.ok("PULL", queue=self.queue, timeout=5000)["job"]
        assert job is not None and job["id"] == jid
        c.ok("ACK", id=jid)

    def check(self, same: Client | None) -> None:
        if same is not None:
            self.works(same)
        with self.connect() as fresh:
            self.works(fresh)
            assert fresh.ok("STATS") == self.stats
        self.cluster.drain_output()
        assert self.cluster.worker_pids == self.pids, self.cluster.log()
        for pid in self.pids.values():
            os.kill(pid, 0)  # raises if the worker is gone
        assert not any("died" in line for line in self.cluster.output), self.cluster.log()


@pytest.fixture
def intact(cluster: Cluster, connect: Connect, names: Names) -> Iterator[Intact]:
    yield Intact(cluster, connect, names)


def send_line(c: Client, line: bytes) -> dict[str, Any]:
    c.send_raw(line + b"\n")
    return c.recv()


def assert_invalid(reply: dict[str, Any], *words: str) -> None:
    assert reply["ok"] is False, reply
    assert set(reply) == {"ok", "error"}, reply
    assert reply["error"].startswith("Invalid: "), reply
    for w in words:
        assert w in reply["error"], (w, reply)


# ---------------------------------------------------------------- malformed lines


@pytest.mark.parametrize(
    ("line", "words"),
    [
        pytest.param(b"{not json", ["JSON"], id="invalid-json"),
        pytest.param(b'{"cmd":"PUSH","queue":"q","data":1', ["JSON"], id="truncated-json"),
        pytest.param(b"[1,2,3]", ["object"], id="array"),
        pytest.param(b"42", ["object"], id="number"),
        pytest.param(b'"PUSH"', ["object"], id="string"),
        pytest.param(b"null", ["object"], id="null"),
        pytest.param(b"{}", ["cmd"], id="no-cmd"),
        pytest.param(b'{"cmd":"NOPE"}', ["unknown cmd", "NOPE"], id="unknown-cmd"),
        pytest.param(b'{"cmd":"push","queue":"q","data":1}', ["unknown cmd"], id="lowercase-cmd"),
        pytest.param(b'{"cmd":7}', ["cmd"], id="cmd-not-string"),
        pytest.param(b'{"cmd":"LISTJOBS"}', ["unknown cmd"], id="internal-cmd"),
        pytest.param(b'{"cmd":"PUSH","queue":"\xff\xfe","data":1}', [], id="invalid-utf8-in-str"),
        pytest.param(b"\xff\xfe\xfd", [], id="invalid-utf8-bytes"),
        pytest.param(b'{"cmd":"PUSH","queue":"q","data":"\\ud800"}', [], id="lone-surrogate"),
        pytest.param(b'{"cmd":"PUSH","queue":"q","data":1e400}', [], id="infinite-number"),
        # Parsable, but deeper than a job's data may be: refused naming the field.
        pytest.param(
            b'{"cmd":"PUSH","queue":"q","data":' + b"[" * 300 + b"]" * 300 + b"}",
            ["data"],
            id="data-nested-300",
        ),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, [], id="nesting-10000-arrays"),
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, [], id="nesting-10000-objects"),
        pytest.param(
            b'{"cmd":"PUSH","queue":"q","data":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            [],
            id="nesting-10000-in-data",
        ),
    ],
)
def test_malformed_line(connect: Connect, intact: Intact, line: bytes, words: list[str]) -> None:
    c = connect()
    assert_invalid(send_line(c, line), *words)
    intact.check(c)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        pytest.param({"cmd": "PUSH", "queue": "q"}, "data", id="push-no-data"),
        pytest.param({"cmd": "PUSH", "data": 1}, "queue", id="push-no-queue"),
        pytest.param({"cmd": "ACK"}, "id", id="ack-no-id"),
        pytest.param({"cmd": "PULLB", "queue": "q"}, "count", id="pullb-no-count"),
        pytest.param({"cmd": "PUSHB", "queue": "q"}, "jobs", id="pushb-no-jobs"),
        pytest.param({"cmd": "AUTH"}, "token", id="auth-no-token"),
        pytest.param(
            {"cmd": "CRON", "queue": "q", "data": 1, "schedule": "*/5"}, "name", id="cron-no-name"
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "priority": True},
            "priority",
            id="bool-for-int",
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "priority": "1"}, "priority", id="str-for-int"
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "priority": 1.5},
            "priority",
            id="float-for-int",
        ),
        pytest.param({"cmd": "ACK", "id": 1.0}, "id", id="float-id"),
        pytest.param({"cmd": "ACK", "id": "12"}, "id", id="string-id"),
        pytest.param({"cmd": "PUSH", "queue": 5, "data": 1}, "queue", id="number-queue"),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "tags": "t"}, "tags", id="tags-not-list"
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "tags": [1]}, "tags", id="tag-not-string"
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "depends_on": 3},
            "depends_on",
            id="deps-not-list",
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "priority": 2**31},
            "priority",
            id="priority-2^31",
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "priority": -(2**31) - 1},
            "priority",
            id="priority-below-i32",
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "delay": -1}, "delay", id="negative-delay"
        ),
        pytest.param({"cmd": "PUSH", "queue": "q", "data": 1, "ttl": -5}, "ttl", id="negative-ttl"),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "max_attempts": -1},
            "max_attempts",
            id="negative-max-attempts",
        ),
        pytest.param(
            {"cmd": "PUSH", "queue": "q", "data": 1, "delay": 2**70}, "delay", id="huge-delay"
        ),
        pytest.param({"cmd": "ACK", "id": -1}, "id", id="negative-id"),
        pytest.param({"cmd": "PULLB", "queue": "q", "count": 0}, "count", id="pullb-count-0"),
        pytest.param(
            {"cmd": "PULLB", "queue": "q", "count": 10_001}, "count", id="pullb-count-over-max"
        ),
        pytest.param(
            {"cmd": "PULL", "queue": "q", "timeout": -1}, "timeout", id="pull-negative-timeout"
        ),
        pytest.param(
            {"cmd": "PROGRESS", "id": 1, "progress": -1}, "progress", id="negative-progress"
        ),
        pytest.param({"cmd": "RATELIMIT", "queue": "q", "limit": 0}, "limit", id="ratelimit-0"),
        pytest.param(
            {"cmd": "SETCONCURRENCY", "queue": "q", "limit": "x"}, "limit", id="concurrency-str"
        ),
        pytest.param(
            {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, 2]},
            "jobs[1]",
            id="pushb-job-not-object",
        ),
        pytest.param(
            {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, {"data": 2, "priority": "x"}]},
            "jobs[1].priority",
            id="pushb-bad-field",
        ),
        pytest.param(
            {"cmd": "PUSHB", "queue": "q", "jobs": [{"data": 1}, {}]},
            "jobs[1].data",
            id="pushb-missing-data",
        ),
    ],
)
def test_bad_field(connect: Connect, intact: Intact, request_: dict[str, Any], field: str) -> None:
    c = connect()
    assert_invalid(send_line(c, json.dumps(request_).encode()), field)
    # The same with a reqId: the error carries it.
    r = c.call(**{"reqId": "bad", **request_})
    assert r["reqId"] == "bad" and r["error"].startswith("Invalid: ") and field in r["error"]
    intact.check(c)


def test_blank_lines_get_no_reply_and_crlf_is_accepted(connect: Connect, intact: Intact) -> None:
    c = connect()
    c.send_raw(b"\n\r\n   \n" + orjson.dumps({"cmd": "STATS", "reqId": "after-blanks"}) + b"\r\n")
    assert c.recv()["reqId"] == "after-blanks"
    intact.check(c)


def test_errors_in_a_pipelined_burst_keep_their_place(
    connect: Connect, intact: Intact, names: Names
) -> None:
    c = connect()
    q = names.queue()
    burst = [
        orjson.dumps({"cmd": "PUSH", "queue": q, "data": 1}),
        b"{oops",
        orjson.dumps({"cmd": "PUSH", "queue": q, "data": 1, "priority": "x"}),
        b"[]",
        orjson.dumps({"cmd": "PULL", "queue": q, "timeout": 0}),
    ]
    c.send_raw(b"\n".join(burst) + b"\n")
    jid = c.recv()["id"]
    assert_invalid(c.recv(), "JSON")
    assert_invalid(c.recv(), "priority")
    assert_invalid(c.recv(), "object")
    assert c.recv()["job"]["id"] == jid
    c.ok("ACK", id=jid)
    intact.check(c)


# ---------------------------------------------------------------- limits


def test_queue_name_of_257_bytes_is_refused(connect: Connect, intact: Intact) -> None:
    c = connect()
    assert_invalid(c.call("PUSH", queue="q" * 257, data=1), "queue", "256")
    assert_invalid(c.call("PULL", queue="q" * 257, timeout=0), "queue")
    # Bytes, not characters: 86 three-byte characters are 258 bytes.
    assert_invalid(c.call("PUSH", queue="队" * 86, data=1), "queue")
    # 256 bytes is fine.
    q = intact.queue[:20] + "x" * (256 - len(intact.queue[:20]))
    jid = c.ok("PUSH", queue=q, data=1)["id"]
    assert c.ok("PULL", queue=q, timeout=5000)["job"]["queue"] == q
    c.ok("ACK", id=jid)
    intact.check(c)


def test_data_over_1_mib_is_refused_and_the_connection_stays(
    connect: Connect, intact: Intact
) -> None:
    c = connect()
    big = "x" * (2 * 1024 * 1024)
    assert c.call("PUSH", queue=intact.queue, data=big) == {
        "ok": False,
        "error": f"Invalid: data exceeds {MAX_JOB} bytes",
    }
    r = c.call("PUSHB", queue=intact.queue, jobs=[{"data": 1}, {"data": big}])
    assert r == {"ok": False, "error": f"Invalid: data exceeds {MAX_JOB} bytes"}
    # The limit is on the encoded data: just under it is accepted.
    fits = "y" * (MAX_JOB - 2)  # the two quotes make it exactly MAX_JOB bytes
    jid = c.ok("PUSH", queue=intact.queue, data=fits)["id"]
    job = c.ok("PULL", queue=intact.queue, timeout=5000)["job"]
    assert job["id"] == jid and job["data"] == fits
    c.ok("ACK", id=jid)
    assert c.call("PUSH", queue=intact.queue, data=fits + "y")["error"].startswith("Invalid: ")
    intact.check(c)


def test_result_over_1_mib_is_refused(connect: Connect, intact: Intact) -> None:
    c = connect()
    jid = c.ok("PUSH", queue=intact.queue, data=1)["id"]
    c.ok("PULL", queue=intact.queue, timeout=5000)
    assert_invalid(c.call("ACK", id=jid, result="r" * (2 * MAX_JOB)), "result")
    assert c.ok("GETSTATE", id=jid)["state"] == "active"  # nothing happened to the job
    c.ok("ACK", id=jid, result="fine")
    intact.check(c)


def test_batch_of_20000_jobs_is_refused(connect: Connect, intact: Intact) -> None:
    c = connect()
    r = c.call("PUSHB", queue=intact.queue, jobs=[{"data": i} for i in range(20_000)])
    assert_invalid(r, "jobs", "10000")
    assert_invalid(c.call("ACKB", ids=list(range(20_000))), "ids")
    # The largest allowed batch goes through whole.
    ids = c.ok("PUSHB", queue=intact.queue, jobs=[{"data": i} for i in range(10_000)])["ids"]
    assert len(ids) == 10_000
    jobs = c.ok("PULLB", queue=intact.queue, count=10_000, timeout=5000)["jobs"]
    assert [j["id"] for j in jobs] == ids
    assert c.ok("ACKB", ids=ids) == {"ok": True, "ids": [10_000]}
    intact.check(c)


def _send_quietly(c: Client, data: bytes) -> threading.Thread:
    """Send in the background: the server stops reading mid-way and closes the connection."""

    def run() -> None:
        try:
            c.sock.sendall(data)
        except OSError:
            pass  # reset or broken pipe: expected once the server gave up on the line

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.timeout(60)
def test_frame_over_16_mib_closes_the_connection(connect: Connect, intact: Intact) -> None:
    c = connect(timeout=30)
    line = b'{"cmd":"PUSH","queue":"q","data":"' + b"z" * (17 * 1024 * 1024) + b'"}\n'
    sender = _send_quietly(c, line)
    try:
        reply = c.recv()
    except ConnectionResetError:
        pytest.fail("the connection was reset before the frame error could be read")
    assert reply == {"ok": False, "error": f"Invalid: frame exceeds {MAX_FRAME} bytes"}
    assert c.closed_by_server(20.0), "the server kept a connection it cannot re-synchronise"
    sender.join(30)
    assert not sender.is_alive()
    intact.check(None)


@pytest.mark.timeout(60)
def test_frame_over_16_mib_after_valid_requests(connect: Connect, intact: Intact) -> None:
    """Requests before the giant line are answered first, in order."""
    c = connect(timeout=30)
    head = orjson.dumps({"cmd": "PUSH", "queue": intact.queue, "data": "before"}) + b"\n"
    head += orjson.dumps({"cmd": "PULL", "queue": intact.queue, "timeout": 0}) + b"\n"
    sender = _send_quietly(c, head + b"[" + b" " * (MAX_FRAME + 1024) + b"]\n")
    jid = c.recv()["id"]
    assert c.recv()["job"]["id"] == jid
    assert c.recv()["error"] == f"Invalid: frame exceeds {MAX_FRAME} bytes"
    assert c.closed_by_server(20.0)
    sender.join(30)
    with intact.connect() as other:
        # The job pulled on the closed connection went back to the queue (lost worker).
        job = other.ok("PULL", queue=intact.queue, timeout=5000)["job"]
        assert (job["id"], job["progress_msg"]) == (jid, "Worker connection lost")
        other.ok("ACK", id=jid)
    intact.check(None)
