"""Live events over SSE and WebSocket, from both workers, against the real cluster.

A subscriber lives on whichever worker took its connection; the jobs below live on queues of
both workers, so half the events reach it over the link from the other worker. The stream's
`: subscribed` line (SSE) and the completed handshake (WebSocket) promise that the subscription
is live everywhere, so the test acts only after them and then expects every event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.harness import Client, Cluster
from tests.integration.conftest import Names
from tests.integration.http_support import Http, job_owner, q, sse_events, wait_subscribed


@pytest.fixture(scope="module")
def http_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, HTTP="1").start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


def lifecycle(cl: Client, queues: list[str]) -> dict[int, list[str]]:
    """On each queue: a job that completes, one that fails into the DLQ, and a PUSHB of 3.

    Returns the events expected per job id (in order)."""
    expect: dict[int, list[str]] = {}
    for queue in queues:
        ok = cl.ok("PUSH", queue=queue, data={"k": "ok"})["id"]
        bad = cl.ok("PUSH", queue=queue, data={"k": "bad"}, max_attempts=1)["id"]
        batch = cl.ok("PUSHB", queue=queue, jobs=[{"data": i} for i in range(3)])["ids"]
        jobs = cl.ok("PULLB", queue=queue, count=2)["jobs"]
        assert [j["id"] for j in jobs] == [ok, bad]
        cl.ok("ACK", id=ok, result={"r": 1})
        cl.ok("FAIL", id=bad, error="nope")
        expect[ok] = ["pushed", "active", "completed"]
        expect[bad] = ["pushed", "active", "failed"]
        for i in batch:
            expect[i] = ["pushed"]
    return expect


def collect(
    events: Iterator[tuple[str, dict[str, Any]]], expect: dict[int, list[str]]
) -> dict[int, list[dict[str, Any]]]:
    got: dict[int, list[dict[str, Any]]] = {}
    want = sum(len(v) for v in expect.values())
    n = 0
    for name, ev in events:
        assert name == ev["event_type"]
        if ev["job_id"] in expect:
            got.setdefault(ev["job_id"], []).append(ev)
            n += 1
            if n == want:
                break
    return got


def check(
    got: dict[int, list[dict[str, Any]]], expect: dict[int, list[str]], queues: list[str]
) -> None:
    assert {j: [e["event_type"] for e in evs] for j, evs in got.items()} == expect
    for evs in got.values():
        for ev in evs:
            assert ev["queue"] in queues and ev["timestamp"] > 1_600_000_000_000
            if ev["event_type"] == "completed":
                assert ev["data"] == {"r": 1}
            if ev["event_type"] == "failed":
                assert ev["error"] == "nope"
    assert {job_owner(j) for j in got} == {0, 1}  # events came from both workers


def test_sse_all_events_from_both_workers(http_cluster: Cluster, names: Names) -> None:
    queues = [names.queue(worker=0), names.queue(worker=1)]
    http = Http(http_cluster)
    with (
        httpx.stream("GET", http.base + "/events", timeout=20.0) as resp,
        http_cluster.client() as cl,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        wait_subscribed(lines)
        expect = lifecycle(cl, queues)
        got = collect(sse_events(lines), expect)
    check(got, expect, queues)


def test_sse_queue_filter_and_http_pushes(http_cluster: Cluster, names: Names) -> None:
    mine, other = names.queue(worker=1), names.queue(worker=0)
    http = Http(http_cluster)
    with httpx.stream("GET", f"{http.base}/events/{q(mine)}", timeout=20.0) as resp:
        lines = resp.iter_lines()
        wait_subscribed(lines)
        http.ok("POST", f"/queues/{q(other)}/jobs", {"data": "not for me"})
        jid = http.ok("POST", f"/queues/{q(mine)}/jobs", {"data": "mine"})["id"]
        job = http.ok("GET", f"/queues/{q(mine)}/jobs")[0]
        http.ok("POST", f"/jobs/{jid}/progress", {"progress": 30})
        http.ok("POST", f"/jobs/{jid}/ack")
        seen = []
        for name, ev in sse_events(lines):
            assert ev["queue"] == mine, ev
            seen.append((name, ev.get("progress")))
            if name == "completed":
                break
    assert job["id"] == jid
    assert seen == [("pushed", None), ("active", None), ("progress", 30), ("completed", None)]


def test_websocket_all_events_from_both_workers(http_cluster: Cluster, names: Names) -> None:
    queues = [names.queue(worker=0), names.queue(worker=1)]
    url = f"ws://127.0.0.1:{http_cluster.http_port}/ws"
    with ws_connect(url, open_timeout=10) as ws, http_cluster.client() as cl:
        expect = lifecycle(cl, queues)

        def frames() -> Iterator[tuple[str, dict[str, Any]]]:
            while True:
                ev = json.loads(ws.recv(timeout=20))
                yield ev["event_type"], ev

        got = collect(frames(), expect)
    check(got, expect, queues)


def test_websocket_queue_filter_including_the_empty_name(
    http_cluster: Cluster, names: Names
) -> None:
    other = names.queue()
    for queue in ("", names.queue("w/slash")):
        url = f"ws://127.0.0.1:{http_cluster.http_port}/ws/{q(queue)}"
        with ws_connect(url, open_timeout=10) as ws, http_cluster.client() as cl:
            cl.ok("PUSH", queue=other, data=0)
            jid = cl.ok("PUSH", queue=queue, data=1)["id"]
            ev = json.loads(ws.recv(timeout=20))
            assert (ev["event_type"], ev["queue"], ev["job_id"]) == ("pushed", queue, jid)
            cl.ok("CANCEL", id=jid)
            ev = json.loads(ws.recv(timeout=20))
            assert (ev["event_type"], ev["job_id"]) == ("cancelled", jid)


def test_many_subscribers_and_disconnects_leave_no_trace(
    http_cluster: Cluster, names: Names
) -> None:
    """Subscribers come and go; later subscribers still get everything."""
    http = Http(http_cluster)
    for _ in range(5):
        with httpx.stream("GET", http.base + "/events", timeout=20.0) as resp:
            wait_subscribed(resp.iter_lines())
        with ws_connect(f"ws://127.0.0.1:{http_cluster.http_port}/ws", open_timeout=10):
            pass
    test_sse_all_events_from_both_workers(http_cluster, names)
