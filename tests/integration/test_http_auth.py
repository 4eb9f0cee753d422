"""Auth, CORS and WebSocket origins on a cluster with AUTH_TOKENS, CORS_ORIGINS and WS_ORIGINS set.
(The other HTTP test modules run with auth and CORS off: every route answers without a token
there, and test_http_api checks that no CORS header is sent.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.harness import Cluster
from tests.integration.conftest import Names
from tests.integration.http_support import Http, q, wait_subscribed

TOKENS = ("tok-one", "tok-two")
CORS_OK = "http://app.example"
WS_OK = "http://ws.example"


@pytest.fixture(scope="module")
def http_cluster() -> Iterator[Cluster]:
    c = Cluster(
        workers=2,
        HTTP="1",
        AUTH_TOKENS=",".join(TOKENS),
        CORS_ORIGINS=CORS_OK,
        WS_ORIGINS=WS_OK,
    ).start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


ROUTES = [
    ("GET", "/queues"),
    ("POST", "/queues/x/jobs"),
    ("GET", "/queues/x/jobs?timeout=0"),
    ("GET", "/jobs"),
    ("GET", "/jobs/1"),
    ("GET", "/stats"),
    ("GET", "/metrics"),
    ("GET", "/metrics/prometheus"),
    ("GET", "/crons"),
    ("GET", "/workers"),
    ("GET", "/webhooks"),
    ("POST", "/webhooks/incoming/x"),
    ("GET", "/events"),
    ("GET", "/nothing"),
]


def test_every_route_but_the_dashboard_needs_a_token(http_cluster: Cluster) -> None:
    anon = Http(http_cluster)
    for method, path in ROUTES:
        assert anon.error(method, path, 401) == "Authentication required", path
    r = anon.get("/queues")
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = Http(http_cluster, token="nope")
    for method, path in ROUTES:
        assert wrong.error(method, path, 401) == "Invalid token", path
    page = anon.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_each_configured_token_works(http_cluster: Cluster, names: Names) -> None:
    queue = names.queue()
    for token in TOKENS:
        http = Http(http_cluster, token=token)
        job = http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": token})
        assert http.ok("GET", f"/jobs/{job['id']}")["data"] == token
        assert http.get("/metrics/prometheus").status_code == 200
    # REST routes take the token only as a header; ?token= is for EventSource and WebSocket.
    anon = Http(http_cluster)
    assert anon.error("GET", f"/stats?token={TOKENS[0]}", 401) == "Authentication required"


def test_sse_token_in_query_or_header(http_cluster: Cluster, names: Names) -> None:
    base = Http(http_cluster).base
    queue = names.queue()
    for url, headers in [
        (f"{base}/events/{q(queue)}?token={TOKENS[1]}", {}),
        (f"{base}/events/{q(queue)}", {"Authorization": f"Bearer {TOKENS[0]}"}),
    ]:
        with httpx.stream("GET", url, headers=headers, timeout=20.0) as resp:
            assert resp.status_code == 200
            wait_subscribed(resp.iter_lines())
    bad = httpx.get(f"{base}/events?token=wrong", timeout=10)
    assert bad.status_code == 401 and bad.json() == {"ok": False, "error": "Invalid token"}


def test_websocket_token_checked_before_the_upgrade(http_cluster: Cluster, names: Names) -> None:
    base = f"ws://127.0.0.1:{http_cluster.http_port}/ws"
    for url in (base, f"{base}?token=wrong"):
        with pytest.raises(InvalidStatus) as e, ws_connect(url, open_timeout=10):
            pass
        assert e.value.response.status_code == 401
        assert json.loads(e.value.response.body)["ok"] is False
    queue = names.queue()
    for url, headers in [
        (f"{base}/{q(queue)}?token={TOKENS[0]}", {}),
        (f"{base}/{q(queue)}", {"Authorization": f"Bearer {TOKENS[1]}"}),
    ]:
        with ws_connect(url, additional_headers=headers, open_timeout=10) as ws:
            http = Http(http_cluster, token=TOKENS[0])
            jid = http.ok("POST", f"/queues/{q(queue)}/jobs", {"data": 1})["id"]
            ev = json.loads(ws.recv(timeout=20))
            assert ev["job_id"] == jid and ev["event_type"] == "pushed"


def test_websocket_origin_allowlist(http_cluster: Cluster) -> None:
    port = http_cluster.http_port
    url = f"ws://127.0.0.1:{port}/ws?token={TOKENS[0]}"
    with pytest.raises(InvalidStatus) as e, ws_connect(url, origin="http://evil.example"):
        pass
    assert e.value.response.status_code == 403
    for origin in (WS_OK, f"http://127.0.0.1:{port}"):  # listed, and same-origin
        with ws_connect(url, origin=origin, open_timeout=10):
            pass


def test_cors_only_for_listed_origins(http_cluster: Cluster) -> None:
    http = Http(http_cluster, token=TOKENS[0])
    r = http.get("/stats", headers={"Origin": CORS_OK})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == CORS_OK
    r = http.get("/stats", headers={"Origin": "http://other.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        http.base + "/queues/x/jobs",
        headers={
            "Origin": CORS_OK,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == CORS_OK
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    denied = httpx.options(
        http.base + "/queues/x/jobs",
        headers={"Origin": "http://other.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in denied.headers
