"""Helpers for the HTTP gateway tests: a fresh-connection REST client, SSE reading, job owners.

Every request is made on a new connection (`Connection: close`), so the kernel's SO_REUSEPORT
spreads them over the workers and a test exercises both "served locally" and "forwarded to the
owner". Each reply carries `X-MagicQueue-Worker` (the worker that took the connection), so a test
can check that it really did cross workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from tests.harness import Cluster

NUM_SHARDS = 32


def q(name: str) -> str:
    """A queue name as one percent-encoded path segment (`/` included)."""
    return quote(name, safe="")


def job_owner(job_id: int, workers: int = 2) -> int:
    return job_id % NUM_SHARDS % workers


class Http:
    def __init__(self, cluster: Cluster, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{cluster.http_port}"
        self.token = token
        self.served_by: list[int] = []  # X-MagicQueue-Worker of every reply
        # One client (building one per request costs ~0.2 s of TLS set-up), but no keep-alive.
        self.client = httpx.Client(headers={"Connection": "close"}, timeout=15.0)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        kw["headers"] = self.headers(kw.get("headers"))
        r = self.client.request(method, self.base + path, **kw)
        w = r.headers.get("x-magicqueue-worker")
        if w is not None:
            self.served_by.append(int(w))
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["content"] = json.dumps(body).encode()
            kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The `data` of a successful reply (asserts status 200 and the envelope)."""
        if body is not None:
            kw["content"] = json.dumps(body).encode()
            kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
        r = self.request(method, path, **kw)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        env = r.json()
        assert env["ok"] is True and set(env) == {"ok", "data"}, env
        return env["data"]

    def error(self, method: str, path: str, status: int, body: Any = None, **kw: Any) -> str:
        """The error message of a refused request (asserts the status and the envelope)."""
        if body is not None and "content" not in kw:
            kw["content"] = json.dumps(body).encode()
        r = self.request(method, path, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        env = r.json()
        assert env["ok"] is False and set(env) == {"ok", "error"}, env
        message: str = env["error"]
        return message


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE message read from `iter_lines()` (comments skipped)."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def wait_subscribed(lines: Iterator[str]) -> None:
    """Read the stream's preamble up to the `: subscribed` comment (live on every worker)."""
    for line in lines:
        if line.startswith(": subscribed"):
            return
    raise AssertionError("the event stream ended before it was subscribed")
