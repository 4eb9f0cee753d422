"""The dashboard in a real browser: Debian's headless Chromium driven by playwright-core.

The cluster runs with AUTH_TOKENS, so the page must ask for the token and then use it for REST
and for its live event stream. `tests/browser/dashboard.mjs` opens the page, pushes a job to a new
queue, waits for the queue to appear, pauses it from the page and waits for the row to say so;
this test then checks through the API that the queue really is paused. Traffic runs in the
background meanwhile so the charts have something to draw, and the page is saved as a
screenshot: to a temporary file, or to `docs/dashboard.png` (the README's picture) when the
environment sets `UPDATE_SCREENSHOT=1`, so an ordinary test run leaves the checkout untouched.

Needs `/usr/bin/chromium` and `tests/browser/node_modules` (`make browser-deps` installs both;
`make test` depends on it). Nothing downloads a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, Cluster
from tests.integration.http_support import Http, q

TOKEN = "dashboard-test-token"
CHROMIUM = "/usr/bin/chromium"
BROWSER_DIR = ROOT / "tests" / "browser"
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"


@pytest.fixture
def screenshot(tmp_path: Path) -> Path:
    return README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "d.png"


@pytest.fixture(scope="module")
def http_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, HTTP="1", AUTH_TOKENS=TOKEN).start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


def seed(http: Http) -> None:
    """A little of everything the page shows: backlog, delays, DLQ, limits, cron, workers."""
    for i in range(12):
        http.ok("POST", f"/queues/{q('emails')}/jobs", {"data": {"to": f"user{i}@example.com"}})
    for i in range(4):
        http.ok("POST", "/queues/reports/jobs", {"data": {"report": i}, "delay": 3_600_000})
    for i in range(3):
        http.ok("POST", "/queues/reports/jobs", {"data": {"report": 100 + i}, "max_attempts": 1})
    for job in http.ok("GET", "/queues/reports/jobs?count=3"):
        http.ok("POST", f"/jobs/{job['id']}/fail", {"error": "renderer crashed"})
    http.ok("POST", "/queues/reports/rate-limit", {"limit": 50})
    for i in range(5):
        http.ok(
            "POST", "/queues/thumbnails/jobs", {"data": {"image": f"img-{i}.png"}, "priority": i}
        )
    http.ok("POST", "/queues/thumbnails/concurrency", {"limit": 4})
    for job in http.ok("GET", "/queues/thumbnails/jobs?count=2"):
        http.ok("POST", f"/jobs/{job['id']}/progress", {"progress": 65, "message": "resizing"})
    http.ok(
        "POST",
        "/crons/nightly-report",
        {"queue": "reports", "data": {"kind": "nightly"}, "schedule": "0 0 2 * * *"},
    )
    http.ok("POST", "/crons/heartbeat", {"queue": "emails", "data": None, "schedule": "*/30"})
    for wid, queues in [("mailer-1", ["emails"]), ("render-7", ["reports", "thumbnails"])]:
        http.ok("POST", f"/workers/{wid}/heartbeat", {"queues": queues, "concurrency": 8})


def traffic(http: Http, stop: threading.Event) -> None:
    """Bounded background load on one queue: push a few, pull and ack them, repeat."""
    for round_ in range(2000):
        if stop.is_set():
            return
        for i in range(3):
            http.ok("POST", "/queues/live-traffic/jobs", {"data": {"round": round_, "i": i}})
        for job in http.ok("GET", "/queues/live-traffic/jobs?count=3&timeout=0"):
            http.ok("POST", f"/jobs/{job['id']}/ack?worker=mailer-1", {"result": {"ok": True}})
        stop.wait(0.05)


@pytest.mark.timeout(180)
def test_dashboard_in_headless_chromium(http_cluster: Cluster, screenshot: Path) -> None:
    node = shutil.which("node")
    assert node, "node is missing: run `make browser-deps`"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser-deps`"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), (
        "tests/browser/node_modules is missing: run `make browser-deps`"
    )
    http = Http(http_cluster, token=TOKEN)
    seed(http)
    screenshot.parent.mkdir(exist_ok=True)
    stop = threading.Event()
    loader = threading.Thread(target=traffic, args=(Http(http_cluster, token=TOKEN), stop))
    loader.start()
    try:
        run = subprocess.run(
            [
                node,
                str(BROWSER_DIR / "dashboard.mjs"),
                "--base",
                http.base,
                "--queue",
                "video-transcode",
                "--token",
                TOKEN,
                "--detail-queue",
                "thumbnails",
                "--screenshot",
                str(screenshot),
            ],
            cwd=BROWSER_DIR,
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        stop.set()
        loader.join(30)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [json.loads(line)["step"] for line in run.stdout.splitlines() if line.startswith("{")]
    assert steps == [
        "opened",
        "token accepted",
        "live",
        "queue appeared",
        "paused on the page",
        "job detail shown",
        "screenshot",
        "done",
    ]
    paused = {x["name"]: x["paused"] for x in http.ok("GET", "/queues")}
    assert paused["video-transcode"] is True  # the click reached the server
    assert paused["emails"] is False
    assert screenshot.stat().st_size > 10_000
