"""The REST API against the real cluster (WORKERS=2, HTTP=1), every request on a fresh connection.

Queues are chosen so that both workers own some; since the kernel spreads connections, most
tests see requests served locally and forwarded to the other worker, and
`test_requests_cross_workers` checks that both kinds really happened.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Cluster
from tests.integration.conftest import Names, owner_of_queue
from tests.integration.http_support import Http, job_owner, q

MAX_FRAME = 262_144
MAX_JOB = 131_072


@pytest.fixture(scope="module")
def http_cluster() -> Iterator[Cluster]:
    c = Cluster(
        workers=2, HTTP="1", MAX_FRAME_BYTES=str(MAX_FRAME), MAX_JOB_BYTES=str(MAX_JOB)
    ).start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


@pytest.fixture
def http(http_cluster: Cluster) -> Http:
    return Http(http_cluster)


def both_owners(names: Names, tag: str = "q") -> list[str]:
    return [names.queue(tag, worker=0), names.queue(tag, worker=1)]


def test_push_pull_ack_on_both_workers(http: Http, names: Names) -> None:
    for queue in both_owners(names):
        path = f"/queues/{q(queue)}/jobs"
        job = http.ok("POST", path, {"data": {"n": 1}, "priority": 5, "tags": ["t"]})
        assert list(job)[:3] == ["id", "queue", "data"]
        assert job["queue"] == queue and job["data"] == {"n": 1} and job["priority"] == 5
        assert job["tags"] == ["t"] and job["started_at"] == 0 and job["progress_msg"] is None
        assert job_owner(job["id"]) == owner_of_queue(queue)
        pulled = http.ok("GET", path)
        assert [j["id"] for j in pulled] == [job["id"]] and pulled[0]["started_at"] > 0
        assert http.ok("GET", f"/jobs/{job['id']}/state") == {"id": job["id"], "state": "active"}
        assert http.ok("POST", f"/jobs/{job['id']}/ack", {"result": {"done": True}}) is None
        full = http.ok("GET", f"/jobs/{job['id']}")
        assert full == {"id": job["id"], "state": "completed", "result": {"done": True}}
        assert http.ok("GET", f"/jobs/{job['id']}/result") == {"done": True}


def test_requests_cross_workers(http: Http, names: Names) -> None:
    """Fresh connections land on both workers, and each reaches queues of both owners."""
    queues = both_owners(names)
    seen: set[tuple[int, int]] = set()  # (worker that took the connection, owner of the queue)
    for i in range(60):
        queue = queues[i % 2]
        http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": i})
        seen.add((http.served_by[-1], owner_of_queue(queue)))
        if len(seen) == 4:
            break
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_get_job_has_fields_state_and_result(http: Http, names: Names) -> None:
    queue = names.queue()
    job = http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": [1, 2], "unique_key": "k1"})
    full = http.ok("GET", f"/jobs/{job['id']}")
    assert full["state"] == "waiting" and full["result"] is None
    assert {k: full[k] for k in job} == job
    assert http.error("GET", "/jobs/987654321", 404) == "Job 987654321 not found"
    assert http.ok("GET", "/jobs/987654321/state") == {"id": 987654321, "state": "unknown"}
    assert http.ok("GET", "/jobs/987654321/result") is None
    assert "field 'id'" in http.error("GET", "/jobs/abc", 400)
    assert "field 'id'" in http.error("GET", "/jobs/-3", 400)


def test_queue_names_any_utf8_and_empty(http: Http) -> None:
    for name in [
        "",
        "a/b",
        'quote"back\\slash',
        "new\nline",
        "sp ace+plus?&#",
        "ümlaut-日本",
        "%41",
    ]:
        path = f"/queues/{q(name)}/jobs"
        job = http.ok("POST", path, {"data": name})
        assert job["queue"] == name
        got = http.ok("GET", path + "?count=10&timeout=0")
        assert [j["data"] for j in got] == [name]
        http.ok("POST", f"/jobs/{got[0]['id']}/ack")
    names = {x["name"] for x in http.ok("GET", "/queues")}
    assert {"", "a/b", "new\nline", "ümlaut-日本", "%41"} <= names
    # the empty name, addressed by the empty segment
    assert http.ok("GET", "/queues//jobs?timeout=0") == []
    assert "not valid UTF-8" in http.error("GET", "/queues/%FF/jobs", 400)


def test_pull_count_and_timeout(http: Http, names: Names) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}/jobs"
    assert http.ok("GET", path + "?timeout=0") == []
    assert http.ok("GET", path + "?timeout=50") == []
    for i in range(5):
        http.ok("POST", path, {"data": i})
    got = http.ok("GET", path + "?count=3")
    assert [j["data"] for j in got] == [0, 1, 2]
    got = http.ok("GET", path + "?count=10&timeout=1000")
    assert [j["data"] for j in got] == [3, 4]
    assert "field 'count'" in http.error("GET", path + "?count=0", 400)
    assert "field 'count'" in http.error("GET", path + "?count=many", 400)
    assert "field 'timeout'" in http.error("GET", path + "?timeout=-1", 400)


@pytest.mark.parametrize("with_timeout", [True, False])
def test_blocking_pull_gets_a_later_push(http: Http, names: Names, with_timeout: bool) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}/jobs" + ("?timeout=20000" if with_timeout else "")
    out: list[Any] = []
    started = threading.Event()

    def pull() -> None:
        started.set()
        out.append(http.ok("GET", path, timeout=30))

    t = threading.Thread(target=pull)
    t.start()
    started.wait()
    # The pull may or may not be parked yet; either way it gets the job exactly once.
    pushed = http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": "late"})
    t.join(30)
    assert not t.is_alive()
    assert [j["id"] for j in out[0]] == [pushed["id"]]


def test_pause_resume_and_queue_listing(http: Http, names: Names) -> None:
    for queue in both_owners(names):
        path = f"/queues/{q(queue)}"
        http.ok("POST", path + "/jobs", {"data": 1})
        http.ok("POST", path + "/jobs", {"data": 2, "delay": 60_000})
        assert http.ok("POST", path + "/pause") is None
        info = {x["name"]: x for x in http.ok("GET", "/queues")}[queue]
        assert info["paused"] is True
        assert info["pending"] == 2 and info["waiting"] == 1 and info["delayed"] == 1
        assert http.ok("GET", path + "/jobs?timeout=0") == []
        assert http.ok("POST", path + "/resume") is None
        assert len(http.ok("GET", path + "/jobs?timeout=0")) == 1
        info = {x["name"]: x for x in http.ok("GET", "/queues")}[queue]
        assert info["paused"] is False and info["processing"] == 1 and info["active"] == 1


def test_rate_limit_and_concurrency(http: Http, names: Names) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}"
    assert http.ok("POST", path + "/rate-limit", {"limit": 7}) is None
    assert http.ok("POST", path + "/concurrency", {"limit": 2}) is None
    info = {x["name"]: x for x in http.ok("GET", "/queues")}[queue]
    assert info["rate_limit"] == 7 and info["concurrency_limit"] == 2
    for i in range(3):
        http.ok("POST", path + "/jobs", {"data": i})
    assert len(http.ok("GET", path + "/jobs?count=3&timeout=0")) == 2  # concurrency 2
    assert http.ok("DELETE", path + "/rate-limit") is None
    assert http.ok("DELETE", path + "/concurrency") is None
    info = {x["name"]: x for x in http.ok("GET", "/queues")}[queue]
    assert info["rate_limit"] is None and info["concurrency_limit"] is None
    assert "field 'limit'" in http.error("POST", path + "/rate-limit", 400, {"limit": 0})
    assert "field 'limit'" in http.error("POST", path + "/concurrency", 400, {})


def test_fail_dlq_and_retry(http: Http, names: Names) -> None:
    for queue in both_owners(names):
        path = f"/queues/{q(queue)}"
        ids = [
            http.ok("POST", path + "/jobs", {"data": i, "max_attempts": 1})["id"] for i in range(2)
        ]
        for j in http.ok("GET", path + "/jobs?count=2"):
            assert http.ok("POST", f"/jobs/{j['id']}/fail", {"error": "boom"}) is None
        dlq = http.ok("GET", path + "/dlq")
        assert [j["id"] for j in dlq] == ids and dlq[0]["progress_msg"] == "boom"
        assert [j["id"] for j in http.ok("GET", path + "/dlq?count=1")] == ids[:1]
        assert http.ok("GET", f"/jobs/{ids[0]}")["state"] == "failed"
        assert http.ok("POST", path + "/dlq/retry", {"id": ids[0]}) == 1
        assert http.ok("POST", path + "/dlq/retry") == 1
        assert http.ok("GET", path + "/dlq") == []
        assert http.ok("GET", f"/jobs/{ids[1]}/state")["state"] == "waiting"


def test_progress_and_cancel(http: Http, names: Names) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}/jobs"
    jid = http.ok("POST", path, {"data": 1})["id"]
    assert http.error("POST", f"/jobs/{jid}/progress", 404, {"progress": 5})
    assert http.error("GET", f"/jobs/{jid}/progress", 404)
    http.ok("GET", path)
    assert http.ok("POST", f"/jobs/{jid}/progress", {"progress": 40, "message": "m"}) is None
    assert http.ok("GET", f"/jobs/{jid}/progress") == {"progress": 40, "message": "m"}
    assert http.ok("POST", f"/jobs/{jid}/progress", {"progress": 250}) is None
    assert http.ok("GET", f"/jobs/{jid}/progress")["progress"] == 100
    assert "field 'progress'" in http.error("POST", f"/jobs/{jid}/progress", 400, {"progress": -1})
    assert "field 'progress'" in http.error("POST", f"/jobs/{jid}/progress", 400, {})
    http.ok("POST", f"/jobs/{jid}/ack")
    assert http.error("POST", f"/jobs/{jid}/cancel", 409)  # completed
    other = http.ok("POST", path, {"data": 2})["id"]
    assert http.ok("POST", f"/jobs/{other}/cancel") is None
    assert http.ok("GET", f"/jobs/{other}/state")["state"] == "unknown"
    assert http.error("POST", f"/jobs/{other}/cancel", 404) == f"Job {other} not found"
    for verb in ("ack", "fail"):
        assert http.error("POST", f"/jobs/{other}/{verb}", 404) == f"Job {other} not found"


def test_list_jobs_by_queue_state_and_paging(http: Http, names: Names) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}/jobs"
    ids = [http.ok("POST", path, {"data": i})["id"] for i in range(6)]
    http.ok("POST", path, {"data": "later", "delay": 60_000})
    listed = http.ok("GET", f"/jobs?queue={q(queue)}&state=waiting")
    assert [j["id"] for j in listed] == ids[::-1]  # newest first
    assert all(j["state"] == "waiting" and j["queue"] == queue for j in listed)
    page = http.ok("GET", f"/jobs?queue={q(queue)}&state=waiting&limit=2&offset=1")
    assert [j["id"] for j in page] == ids[::-1][1:3]
    delayed = http.ok("GET", f"/jobs?queue={q(queue)}&state=delayed")
    assert [j["data"] for j in delayed] == ["later"]
    assert len(http.ok("GET", f"/jobs?queue={q(queue)}")) == 7
    everywhere = http.ok("GET", "/jobs?limit=1000")
    assert set(ids) <= {j["id"] for j in everywhere}
    times = [(j["created_at"], j["id"]) for j in everywhere]
    assert times == sorted(times, reverse=True)
    assert "field 'state'" in http.error("GET", "/jobs?state=completed", 400)
    assert "field 'limit'" in http.error("GET", "/jobs?limit=x", 400)


def test_crons(http: Http, names: Names) -> None:
    name = names.queue("cron")
    target = names.queue("target")
    body = {"queue": target, "data": {"c": 1}, "schedule": "*/3600", "priority": 2}
    assert http.ok("POST", f"/crons/{q(name)}", body) is None
    crons = {c["name"]: c for c in http.ok("GET", "/crons")}
    assert crons[name]["queue"] == target and crons[name]["data"] == {"c": 1}
    assert crons[name]["priority"] == 2 and crons[name]["next_run"] > 0
    assert http.ok("DELETE", f"/crons/{q(name)}") is None
    assert http.error("DELETE", f"/crons/{q(name)}", 404) == "Cron job not found"
    assert "schedule" in http.error("POST", f"/crons/{q(name)}", 400, {**body, "schedule": 5})


def test_stats_and_metrics(http: Http, names: Names) -> None:
    queue = names.queue()
    http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": 1})
    stats = http.ok("GET", "/stats")
    assert set(stats) == {"queued", "processing", "delayed", "dlq", "waiting_children"}
    assert stats["queued"] >= 1
    metrics = http.ok("GET", "/metrics")
    assert metrics["total_pushed"] >= 1
    assert queue in {x["name"] for x in metrics["queues"]}


def test_workers_heartbeat_and_processed(http: Http, names: Names) -> None:
    wid = names.queue("worker")
    assert http.ok("POST", f"/workers/{q(wid)}/heartbeat", {"queues": ["a", "b"]}) is None
    me = {w["id"]: w for w in http.ok("GET", "/workers")}[wid]
    assert me["queues"] == ["a", "b"] and me["concurrency"] == 1 and me["jobs_processed"] == 0
    assert me["last_heartbeat"] > 1_600_000_000_000
    http.ok("POST", f"/workers/{q(wid)}/heartbeat", {"queues": ["c"], "concurrency": 4})
    for queue in both_owners(names):
        http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": 1})
        job = http.ok("GET", f"/queues/{q(queue)}/jobs")[0]
        http.ok("POST", f"/jobs/{job['id']}/ack?worker={q(wid)}")
    me = {w["id"]: w for w in http.ok("GET", "/workers")}[wid]
    assert me["queues"] == ["c"] and me["concurrency"] == 4 and me["jobs_processed"] == 2
    assert "field 'queues'" in http.error("POST", "/workers/x/heartbeat", 400, {"queues": "a"})


def test_incoming_webhook_pushes_any_json(http: Http, names: Names) -> None:
    for queue in both_owners(names):
        for body in ({"event": "x"}, [1, 2], "text", None):
            job = http.ok("POST", f"/webhooks/incoming/{q(queue)}", content=_json(body))
            assert job["queue"] == queue and job["data"] == body
        assert "malformed JSON" in http.error(
            "POST", f"/webhooks/incoming/{q(queue)}", 400, content=b"{"
        )
        assert "body" in http.error("POST", f"/webhooks/incoming/{q(queue)}", 400, content=b"")


def _json(v: Any) -> bytes:
    import json

    return json.dumps(v).encode()


def test_bad_input_statuses(http: Http, names: Names) -> None:
    queue = names.queue()
    path = f"/queues/{q(queue)}/jobs"
    assert http.error("POST", path, 400, content=b"{not json").startswith("Invalid: malformed JSON")
    assert (
        http.error("POST", path, 400, content=b"[1]")
        == "Invalid: request body must be a JSON object"
    )
    assert http.error("POST", path, 400, {}) == "Invalid: missing field 'data'"
    msg = http.error("POST", path, 400, {"data": 1, "priority": "high"})
    assert msg.startswith("Invalid: ") and "'priority'" in msg
    assert "'delay'" in http.error("POST", path, 400, {"data": 1, "delay": -5})
    assert "'depends_on'" in http.error("POST", path, 400, {"data": 1, "depends_on": "x"})
    assert http.error("POST", path, 400, {"data": 1, "depends_on": [999999]}).startswith(
        "Unknown dependency"
    )
    http.ok("POST", path, {"data": 1, "unique_key": "once"})
    assert http.error("POST", path, 409, {"data": 2, "unique_key": "once"}) == (
        "Duplicate job with key: once"
    )
    assert http.error("POST", path, 400, {"data": "x" * (MAX_JOB + 10)}) == (
        f"Invalid: data exceeds {MAX_JOB} bytes"
    )
    big = b'{"data":"' + b"x" * (MAX_FRAME + 100) + b'"}'
    assert http.error("POST", path, 413, content=big) == f"Invalid: frame exceeds {MAX_FRAME} bytes"
    assert http.error("GET", "/nothing/here", 404).startswith("Not found")
    assert "not allowed" in http.error("PUT", path, 405)
    assert http.error("GET", "/ws", 426)
    # nothing of the refused requests was applied
    assert len(http.ok("GET", f"/jobs?queue={q(queue)}")) == 1


def test_dashboard_page_is_served(http: Http) -> None:
    r = http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in r.headers
    for src in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', r.text):
        assert http.get(src).status_code == 200, src
    assert http.get("/dashboard/missing.js").status_code == 404


def test_no_cors_headers_when_cors_is_off(http: Http) -> None:
    r = http.get("/stats", headers={"Origin": "http://app.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


PROM_LINE = re.compile(
    r'^[a-z_]+(\{[a-z_]+="(?:[^"\\\n]|\\["\\n])*"(?:,[a-z_]+="(?:[^"\\\n]|\\["\\n])*")*\})? \S+$'
)


def test_prometheus_exposition(http: Http, names: Names) -> None:
    queue = names.queue('pro"m\\etheus\nq')
    path = f"/queues/{q(queue)}"
    for i in range(3):
        http.ok("POST", path + "/jobs", {"data": i})
    for job in http.ok("GET", path + "/jobs?count=2"):
        http.ok("POST", f"/jobs/{job['id']}/ack")
    http.ok("POST", path + "/pause")
    r = http.get("/metrics/prometheus")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    typed: set[str] = set()
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line and not line.startswith("# HELP "):
            assert PROM_LINE.match(line), line
            base = re.sub(r"_(bucket|sum|count)$", "", line.split("{")[0].split(" ")[0])
            assert base in typed or line.split("{")[0].split(" ")[0] in typed, line
    label = 'queue="' + queue.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    for gauge, value in [("waiting", 1), ("active", 0), ("dlq", 0), ("paused", 1)]:
        assert f"magicqueue_queue_{gauge}{{{label}}} {value}" in r.text, gauge
    for hist in ("queue_wait_seconds", "processing_seconds"):
        assert f"magicqueue_{hist}_count{{{label}}} 2" in r.text
        assert f'magicqueue_{hist}_bucket{{{label},le="+Inf"}} 2' in r.text
    total = re.search(r"^magicqueue_jobs_pushed_total (\d+)$", r.text, re.M)
    assert total and int(total.group(1)) >= 3
