"""The client's pure parts: error mapping, framing, batch splitting, and its import boundary."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import orjson
import pytest

from magicqueue_client import (
    AuthenticationFailed,
    CronNotFound,
    DuplicateJob,
    InvalidRequest,
    JobFinished,
    JobNotActive,
    JobNotFound,
    JobSpec,
    MagicQueueError,
    PersistenceUnavailable,
    ServerUnavailable,
    UnknownDependency,
    error_from_message,
)
from magicqueue_client import _protocol as P
from magicqueue_client.worker import MAX_ERROR_BYTES, format_error

PACKAGE = Path(__file__).resolve().parents[2] / "magicqueue_client"


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("Invalid: field 'queue' must be a string", InvalidRequest),
        ("Invalid: frame exceeds 16777216 bytes", InvalidRequest),
        ("Job 12 not found", JobNotFound),
        ("Job 12 is not active", JobNotActive),
        ("Job 12 cannot be cancelled: it is completed", JobFinished),
        ("Duplicate job with key: abc", DuplicateJob),
        ("Unknown dependency: 99", UnknownDependency),
        ("Cron job not found", CronNotFound),
        ("Authentication required", AuthenticationFailed),
        ("Invalid token", AuthenticationFailed),
        ("Persistence unavailable", PersistenceUnavailable),
        ("Worker 1 unavailable, retry", ServerUnavailable),
        ("Server shutting down", ServerUnavailable),
        ("Something new", MagicQueueError),
    ],
)
def test_error_mapping(message: str, cls: type[MagicQueueError]) -> None:
    e = error_from_message(message)
    assert type(e) is cls
    assert e.message == message and str(e) == message


def test_error_details() -> None:
    nf = error_from_message("Job 12 not found")
    assert isinstance(nf, JobNotFound) and nf.job_id == 12
    dup = error_from_message("Duplicate job with key: a: b")
    assert isinstance(dup, DuplicateJob) and dup.key == "a: b"
    dep = error_from_message("Unknown dependency: 99")
    assert isinstance(dep, UnknownDependency) and dep.job_id == 99
    assert isinstance(error_from_message("Persistence unavailable"), ServerUnavailable)
    with pytest.raises(JobNotFound):
        P.check({"ok": False, "error": "Job 5 not found", "reqId": 3})
    with pytest.raises(MagicQueueError, match="Malformed"):
        P.check([1, 2])
    assert P.check({"ok": True, "id": 1}) == {"ok": True, "id": 1}


def test_frame_splices_req_id_and_checks_size() -> None:
    body = P.req("PUSH", queue="q", data={"a": 1}, priority=None)
    line = P.frame(body, 17, 1024)
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {"cmd": "PUSH", "queue": "q", "data": {"a": 1}, "reqId": 17}
    with pytest.raises(InvalidRequest, match="frame exceeds 40 bytes"):
        P.frame(body, 17, 40)
    with pytest.raises(InvalidRequest, match="not JSON-serialisable"):
        P.req_push("q", {1, 2}, {})


def test_line_splitter_joins_partial_lines() -> None:
    s = P.LineSplitter()
    assert s.feed(b'{"a"') == []
    assert s.feed(b":1}\n{") == [b'{"a":1}']
    assert s.feed(b'"b":2}\n\n{"c":3}\n') == [b'{"b":2}', b"", b'{"c":3}']
    assert s.feed(b"") == []


def test_pushb_bodies_split_by_count_and_size() -> None:
    jobs = [JobSpec(i) for i in range(25)]
    bodies = list(P.pushb_bodies("q", jobs, max_batch=10, max_frame=1 << 20))
    assert [n for _, n in bodies] == [10, 10, 5]
    decoded = [orjson.loads(b) for b, _ in bodies]
    assert [j["data"] for d in decoded for j in d["jobs"]] == list(range(25))
    assert all(d["cmd"] == "PUSHB" and d["queue"] == "q" for d in decoded)

    blob = "x" * 1000
    big = [{"data": blob, "priority": 1} for _ in range(50)]
    bodies = list(P.pushb_bodies("q", big, max_batch=10_000, max_frame=8 * 1024))
    assert sum(n for _, n in bodies) == 50 and len(bodies) > 5
    for body, _ in bodies:
        assert len(P.frame(body, 2**40, 8 * 1024)) <= 8 * 1024

    with pytest.raises(InvalidRequest, match=r"jobs\[1\]"):
        list(P.pushb_bodies("q", [{"data": 1}, {"nodata": 2}], 10, 1 << 20))
    with pytest.raises(InvalidRequest, match="unknown fields"):
        list(P.pushb_bodies("q", [{"data": 1, "priorty": 2}], 10, 1 << 20))


def test_format_error_keeps_text_and_traceback_within_limit() -> None:
    try:
        raise ValueError("boom")
    except ValueError as e:
        text = format_error(e)
    assert text.startswith("ValueError: boom\n\nTraceback (most recent call last):")
    assert "test_format_error_keeps_text_and_traceback_within_limit" in text
    try:
        raise RuntimeError("é" * 100_000)
    except RuntimeError as e:
        long = format_error(e)
    assert long.startswith("RuntimeError: éé")
    assert len(long.encode()) <= MAX_ERROR_BYTES and "[... trimmed ...]" in long


def test_package_imports_only_stdlib_anyio_and_orjson() -> None:
    # It must work installed on its own: no import of the server's packages.
    allowed = {"anyio", "orjson", "magicqueue_client", "__future__"}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, (path.name, name)
