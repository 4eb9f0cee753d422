"""SIGTERM with HTTP requests in flight: they are answered, not cut off."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx

from tests.harness import Cluster


def _parked(base: str, queue: str) -> int:
    text = httpx.get(f"{base}/metrics/prometheus", timeout=5).text
    m = re.search(rf'^magicqueue_queue_parked_pulls{{queue="{queue}"}} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


def test_parked_http_pull_is_answered_on_sigterm() -> None:
    c = Cluster(workers=2, HTTP="1").start()
    base = f"http://127.0.0.1:{c.http_port}"
    queue = "http-shutdown"
    httpx.post(f"{base}/queues/{queue}/pause", timeout=5)  # makes the queue known everywhere
    httpx.post(f"{base}/queues/{queue}/resume", timeout=5)
    out: dict[str, Any] = {}

    def pull() -> None:
        try:
            r = httpx.get(f"{base}/queues/{queue}/jobs", params={"timeout": 60000}, timeout=30)
            out["reply"] = (r.status_code, r.json())
        except httpx.HTTPError as e:
            out["reply"] = repr(e)

    t = threading.Thread(target=pull)
    t.start()
    deadline = time.monotonic() + 10
    while _parked(base, queue) < 1:  # probe until the pull is really parked on its owner
        assert time.monotonic() < deadline, "the pull never parked"
        time.sleep(0.01)
    assert c.stop() == 0
    t.join(15)
    assert out["reply"] == (200, {"ok": True, "data": []})
