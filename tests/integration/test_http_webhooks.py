"""Webhooks against the real cluster: registration replicated to both workers, signed deliveries,
queue and event filters, retries while a receiver is down, and a receiver that hangs never
slowing the queue. Receivers are HTTP servers started here on 127.0.0.1 (free ports)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.harness import Cluster, free_port
from tests.integration.conftest import Names
from tests.integration.http_support import Http, job_owner

WAIT_S = 30.0


class Receiver:
    """Records every POST: (path, headers, raw body). Answers 200."""

    def __init__(self, port: int = 0) -> None:
        self.hits: list[tuple[str, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.cond:
                    outer.hits.append((self.path, dict(self.headers.items()), body))
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(b) for p, _, b in self.hits if p == path]

    def wait(self, path: str, pred: Any, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """Block until `pred(bodies)` holds for the deliveries to `path`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [json.loads(b) for p, _, b in self.hits if p == path]
                if pred(got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"deliveries to {path} never matched: {got}")
                self.cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def http_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, HTTP="1").start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


@pytest.fixture
def http(http_cluster: Cluster) -> Http:
    return Http(http_cluster)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def prometheus_value(http: Http, name: str) -> float:
    text = http.get("/metrics/prometheus").text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_signed_deliveries_from_both_workers(
    http: Http, http_cluster: Cluster, receiver: Receiver, names: Names
) -> None:
    secret = "s3cr3t-ü"
    body = {"url": receiver.url("/hook"), "events": ["job.pushed", "completed"], "secret": secret}
    hook_id = http.ok("POST", "/webhooks", body)
    assert isinstance(hook_id, str) and hook_id
    listed = {h["id"]: h for h in http.ok("GET", "/webhooks")}[hook_id]
    assert listed["url"] == body["url"] and listed["events"] == body["events"]
    assert listed["queue"] is None and listed["created_at"] > 1_600_000_000_000
    assert "secret" not in listed

    queues = [names.queue(worker=0), names.queue(worker=1)]
    with http_cluster.client() as cl:
        ids = []
        for queue in queues:
            ids.append(cl.ok("PUSH", queue=queue, data={"q": queue})["id"])
            cl.ok("PULL", queue=queue)
            cl.ok("ACK", id=ids[-1], result={"done": 1})
        batch = cl.ok("PUSHB", queue=queues[1], jobs=[{"data": i} for i in range(3)])["ids"]
    want = {(i, "pushed") for i in ids + batch} | {(i, "completed") for i in ids}
    got = receiver.wait("/hook", lambda b: {(x["job_id"], x["event"]) for x in b} >= want)
    assert {(x["job_id"], x["event"]) for x in got} == want  # no "active": not subscribed
    assert {job_owner(i) for i in ids} == {0, 1}
    for _, headers, raw in receiver.hits:
        assert headers["Content-Type"] == "application/json"
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-MagicQueue-Signature"] == expected
    for x in got:
        assert list(x)[:4] == ["event", "queue", "job_id", "timestamp"]
        if x["event"] == "completed":
            assert x["data"] == {"done": 1}

    # After the deletion reply nothing more arrives; a sentinel hook shows events still flow.
    assert http.ok("DELETE", f"/webhooks/{hook_id}") is True
    assert hook_id not in {h["id"] for h in http.ok("GET", "/webhooks")}
    http.error("DELETE", f"/webhooks/{hook_id}", 404)
    sentinel = http.ok("POST", "/webhooks", {"url": receiver.url("/sentinel"), "events": ["*"]})
    before = len(receiver.bodies("/hook"))
    with http_cluster.client() as cl:
        later = [cl.ok("PUSH", queue=queue, data=0)["id"] for queue in queues]
    receiver.wait("/sentinel", lambda b: {x["job_id"] for x in b} >= set(later))
    assert len(receiver.bodies("/hook")) == before
    assert not any(p == "/sentinel" and "X-MagicQueue-Signature" in h for p, h, _ in receiver.hits)
    http.ok("DELETE", f"/webhooks/{sentinel}")


def test_queue_filter(http: Http, http_cluster: Cluster, receiver: Receiver, names: Names) -> None:
    mine, other = names.queue(worker=0), names.queue(worker=1)
    url = f"http://us%40er:p%3Ass@127.0.0.1:{receiver.port}/q"  # with HTTP Basic credentials
    hook = http.ok("POST", "/webhooks", {"url": url, "events": ["*"], "queue": mine})
    listed = {h["id"]: h for h in http.ok("GET", "/webhooks")}[hook]
    assert listed["url"] == f"http://us%40er:***@127.0.0.1:{receiver.port}/q"  # no password
    with http_cluster.client() as cl:
        cl.ok("PUSH", queue=other, data=1)
        jid = cl.ok("PUSH", queue=mine, data=2, max_attempts=1)["id"]
        cl.ok("PULL", queue=mine)
        cl.ok("PROGRESS", id=jid, progress=50)
        cl.ok("FAIL", id=jid, error="bad")
    got = receiver.wait("/q", lambda b: len(b) >= 4)
    # Deliveries run in parallel and may arrive out of order; each carries its own timestamp.
    by_event = {x["event"]: x for x in got}
    assert len(got) == 4 and set(by_event) == {"pushed", "active", "progress", "failed"}
    assert {x["queue"] for x in got} == {mine} and {x["job_id"] for x in got} == {jid}
    assert by_event["progress"]["progress"] == 50 and by_event["failed"]["error"] == "bad"
    assert by_event["pushed"]["timestamp"] <= by_event["failed"]["timestamp"]
    basic = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert all(h["Authorization"] == basic for p, h, _ in receiver.hits if p == "/q")
    http.ok("DELETE", f"/webhooks/{hook}")


def test_registration_is_validated(http: Http) -> None:
    cases = [
        ({"events": ["*"]}, "'url'"),
        ({"url": "ftp://x/", "events": ["*"]}, "'url'"),
        ({"url": "http:///nohost", "events": ["*"]}, "'url'"),
        ({"url": "http://127.0.0.1:1/", "events": []}, "'events'"),
        ({"url": "http://127.0.0.1:1/", "events": ["exploded"]}, "'events[0]'"),
        ({"url": "http://127.0.0.1:1/", "events": ["*"], "queue": 5}, "'queue'"),
        ({"url": "http://127.0.0.1:1/", "events": ["*"], "secret": 5}, "'secret'"),
    ]
    for body, field in cases:
        msg = http.error("POST", "/webhooks", 400, body)
        assert msg.startswith("Invalid: ") and field in msg, (body, msg)
    assert http.error("POST", "/webhooks", 400, content=b"nope").startswith("Invalid: malformed")


def test_a_receiver_that_is_down_is_retried(
    http: Http, http_cluster: Cluster, names: Names
) -> None:
    port = free_port()  # nothing listens here yet: connections are refused
    hook = http.ok(
        "POST", "/webhooks", {"url": f"http://127.0.0.1:{port}/late", "events": ["pushed"]}
    )
    failed_before = prometheus_value(http, "magicqueue_webhook_failed_attempts_total")
    queue = names.queue()
    with http_cluster.client() as cl:
        jid = cl.ok("PUSH", queue=queue, data="retry me")["id"]
    deadline = time.monotonic() + WAIT_S
    while prometheus_value(http, "magicqueue_webhook_failed_attempts_total") <= failed_before:
        assert time.monotonic() < deadline, "the first delivery attempt never failed"
        time.sleep(0.05)
    late = Receiver(port)  # the receiver comes up; a retry (after 1 s, 2 s, ...) reaches it
    try:
        got = late.wait("/late", lambda b: any(x["job_id"] == jid for x in b))
        assert got[0]["event"] == "pushed" and got[0]["queue"] == queue
    finally:
        late.close()
        http.ok("DELETE", f"/webhooks/{hook}")


def test_a_hanging_receiver_never_slows_pushes(
    http: Http, http_cluster: Cluster, names: Names
) -> None:
    """The receiver accepts connections but never answers: every attempt waits out its timeout
    (10 s). Pushes must not wait for it, and deliveries beyond the queue bound are dropped."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(1)
    url = f"http://127.0.0.1:{blackhole.getsockname()[1]}/never"
    hook = http.ok("POST", "/webhooks", {"url": url, "events": ["*"]})
    try:
        queues = [names.queue(worker=0), names.queue(worker=1)]
        with http_cluster.client() as cl:
            start = time.monotonic()
            for i in range(200):
                cl.ok("PUSH", queue=queues[i % 2], data=i)
            elapsed = time.monotonic() - start
            # Far below one delivery timeout: nothing waited for the receiver.
            assert elapsed < 8.0, elapsed
            dropped = prometheus_value(http, "magicqueue_webhook_dropped_overflow_total")
            cl.ok("PUSHB", queue=queues[0], jobs=[{"data": i} for i in range(10_000)])
            cl.ok("STATS")  # still answering at once
        assert prometheus_value(http, "magicqueue_webhook_dropped_overflow_total") > dropped
    finally:
        http.ok("DELETE", f"/webhooks/{hook}")
        blackhole.close()


def test_a_restarted_worker_learns_the_webhooks(
    http: Http, http_cluster: Cluster, receiver: Receiver, names: Names
) -> None:
    hook = http.ok("POST", "/webhooks", {"url": receiver.url("/restart"), "events": ["pushed"]})
    old = http_cluster.worker_pids[1]
    os.kill(old, signal.SIGKILL)
    http_cluster.wait_for(re.compile(rf"worker 1 ready \(pid (?!{old}\b)\d+"), 30)
    queue = names.queue(worker=1)
    with http_cluster.client() as cl:
        jid = cl.ok("PUSH", queue=queue, data="after restart")["id"]
    assert job_owner(jid) == 1
    receiver.wait("/restart", lambda b: any(x["job_id"] == jid for x in b))
    assert hook in {h["id"] for h in http.ok("GET", "/webhooks")}
    assert http.ok("DELETE", f"/webhooks/{hook}") is True
