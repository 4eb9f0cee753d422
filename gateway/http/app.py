"""The REST API of PROTOCOL.md ("HTTP"), as a quart-trio app.

Every REST request becomes the same JSON object a TCP client would send (`{"cmd": "PUSH",
"queue": ..., ...}`), is validated by `proto.commands.parse_command` (so HTTP and TCP refuse the
same inputs with the same `Invalid: ` messages naming the field), and goes to
`node.router.submit` exactly like a TCP request: run on a local shard, or forwarded as that JSON
to the worker that owns the queue or job. The reply becomes `{"ok":true,"data":...}`, or
`{"ok":false,"error":...}` with the error's own HTTP status (400 bad input, 401, 404, 409, 413
for a body over MAX_FRAME_BYTES, 503 when a worker is unavailable).

Routing is done here on the raw request path, not by werkzeug: queue names may contain any
character (`/` included, percent-encoded as `%2F`) and may be empty, and a decoded path cannot
tell `a%2Fb` from `a/b`. So the app has one catch-all rule per protocol (HTTP and WebSocket), the
raw path is split on `/`, and each segment is percent-decoded on its own. The empty queue name
is the empty segment: `/queues//jobs`, `/events/`, `/ws/`. In query strings (`/jobs?queue=`) a
name is form-encoded as usual (`+` is a space; send `%2B` for a plus).

HTTP pulls are not tied to a connection (`Ctx(owner=None)`): a job pulled over HTTP stays active
until it is acked, failed, or its `timeout` runs out. A blocking pull whose client disconnects
is cancelled and never handed a job.

Auth: with AUTH_TOKENS set, every route but the dashboard page (and its static files, which are
code, not data) needs `Authorization: Bearer <token>`; `/events` and `/ws` also accept
`?token=`. Tokens are compared in constant time. CORS headers are sent only for origins listed
in CORS_ORIGINS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_to_bytes

import orjson
import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection, TrioASGIWebsocketConnection
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from gateway.http import events, prometheus
from gateway.http.webhooks import parse_webhook
from gateway.router import to_obj
from gateway.tcp import check_token
from proto import commands as c
from proto.errors import (
    AuthenticationRequired,
    FrameTooLarge,
    InvalidRequest,
    InvalidToken,
    JobNotFound,
    NotFound,
    QueueError,
)
from proto.wire import Fragment
from shard.pending import Pending
from shard.runtime import Ctx

if TYPE_CHECKING:
    from gateway.http.service import HttpService

log = logging.getLogger("magicqueue.http")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_JSON = "application/json"
_OK_PREFIX = b'{"ok":true,"data":'
_dumps = orjson.dumps
_METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
_CORS_MAX_AGE = "600"
_DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


class MethodNotAllowed(QueueError):
    http_status = 405


class UpgradeRequired(QueueError):
    http_status = 426


class AnyPathConverter(PathConverter):
    """Matches every decoded path, even one with newlines or `//` (werkzeug's `path` does not):
    the catch-all rule must catch all, since the real routing happens on the raw path."""

    regex = r"[\s\S]*"
    part_isolating = False  # werkzeug would infer True: the regex has no literal "/"


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type=_JSON, headers=headers)


def ok_response(data: Any) -> Response:
    return json_response(200, _OK_PREFIX + _dumps(data) + b"}")


def error_response(e: QueueError) -> Response:
    body = _dumps({"ok": False, "error": e.message})
    headers = {"WWW-Authenticate": "Bearer"} if e.http_status == 401 else None
    return json_response(e.http_status, body, headers)


def split_path(raw: bytes) -> list[str]:
    """The percent-decoded segments of a raw request path (`/a/b%2Fc` -> ["a", "b/c"])."""
    if not raw.startswith(b"/"):
        raise InvalidRequest("request path must start with '/'")
    out = []
    for seg in raw[1:].split(b"/"):
        try:
            out.append(unquote_to_bytes(seg).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest("path segment is not valid UTF-8") from None
    return out


def parse_job_id(seg: str) -> int:
    if not seg.isdigit() or not seg.isascii():
        raise InvalidRequest("field 'id' must be a job id (a non-negative integer)")
    return int(seg)


def query_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    s = raw.strip()
    if not (s.lstrip("-").isdigit() and s.isascii()) or len(s) > 30:
        raise InvalidRequest(f"field '{name}' must be an integer")
    return int(s)


def parse_json(body: bytes, *, required: bool = False) -> Any:
    if not body.strip():
        if required:
            raise InvalidRequest("request body must be JSON")
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"malformed JSON: {e}") from None


def body_object(body: bytes) -> dict[str, Any]:
    """A JSON object body (an empty body counts as `{}`)."""
    obj = parse_json(body)
    if obj is None:
        return {}
    if type(obj) is not dict:
        raise InvalidRequest("request body must be a JSON object")
    return obj


def _spec_to_wire(job_id: int, queue: str, spec: c.JobSpec) -> dict[str, Any]:
    """A pushed job's wire shape, for the rare case it is gone before we could read it back
    (pulled and acked by another client between our PUSH and GETJOB)."""
    now = time.time_ns() // 1_000_000
    return {
        "id": job_id,
        "queue": queue,
        "data": Fragment(spec.data),
        "priority": spec.priority,
        "created_at": now,
        "run_at": now + spec.delay,
        "started_at": 0,
        "attempts": 0,
        "max_attempts": spec.max_attempts,
        "backoff": spec.backoff,
        "ttl": spec.ttl,
        "timeout": spec.timeout,
        "unique_key": spec.unique_key,
        "depends_on": list(spec.depends_on),
        "progress": 0,
        "progress_msg": None,
        "tags": list(spec.tags),
    }


Handler = Callable[[list[str]], Awaitable[Any]]


class Api:
    """The route table and its handlers. One per worker."""

    def __init__(self, service: HttpService) -> None:
        self.service = service
        self.node = service.node
        self.config = service.node.config
        self.limits = self.config.limits
        self.tokens = self.config.auth_tokens
        self.cors = self.config.cors_origins
        self.static = _load_static()
        self.worker_index = str(self.node.index)
        # (method, pattern) with None for a path parameter; indexed by (first segment, length).
        table: list[tuple[str, tuple[str | None, ...], Handler]] = [
            ("GET", ("queues",), self.list_queues),
            ("POST", ("queues", None, "jobs"), self.push),
            ("GET", ("queues", None, "jobs"), self.pull),
            ("POST", ("queues", None, "pause"), self.pause),
            ("POST", ("queues", None, "resume"), self.resume),
            ("GET", ("queues", None, "dlq"), self.dlq),
            ("POST", ("queues", None, "dlq", "retry"), self.retry_dlq),
            ("POST", ("queues", None, "rate-limit"), self.set_rate_limit),
            ("DELETE", ("queues", None, "rate-limit"), self.clear_rate_limit),
            ("POST", ("queues", None, "concurrency"), self.set_concurrency),
            ("DELETE", ("queues", None, "concurrency"), self.clear_concurrency),
            ("GET", ("jobs",), self.list_jobs),
            ("GET", ("jobs", None), self.get_job),
            ("GET", ("jobs", None, "state"), self.get_state),
            ("POST", ("jobs", None, "ack"), self.ack),
            ("POST", ("jobs", None, "fail"), self.fail),
            ("POST", ("jobs", None, "cancel"), self.cancel),
            ("POST", ("jobs", None, "progress"), self.set_progress),
            ("GET", ("jobs", None, "progress"), self.get_progress),
            ("GET", ("jobs", None, "result"), self.get_result),
            ("GET", ("crons",), self.list_crons),
            ("POST", ("crons", None), self.add_cron),
            ("DELETE", ("crons", None), self.delete_cron),
            ("GET", ("stats",), self.stats),
            ("GET", ("metrics",), self.metrics),
            ("GET", ("metrics", "prometheus"), self.prometheus),
            ("GET", ("events",), self.sse),
            ("GET", ("events", None), self.sse),
            ("GET", ("ws",), self.ws_without_upgrade),
            ("GET", ("ws", None), self.ws_without_upgrade),
            ("GET", ("workers",), self.list_workers),
            ("POST", ("workers", None, "heartbeat"), self.heartbeat),
            ("GET", ("webhooks",), self.list_webhooks),
            ("POST", ("webhooks",), self.add_webhook),
            ("DELETE", ("webhooks", None), self.delete_webhook),
            ("POST", ("webhooks", "incoming", None), self.incoming),
        ]
        self.routes: dict[tuple[str, int], list[tuple[str, tuple[str | None, ...], Handler]]] = {}
        for method, pattern, handler in table:
            self.routes.setdefault((pattern[0] or "", len(pattern)), []).append(
                (method, pattern, handler)
            )
        # Routes where the token may come as ?token= (EventSource cannot send headers).
        self.query_token_ok = {self.sse}

    # ------------------------------------------------------------ plumbing

    def match(self, method: str, segs: list[str]) -> tuple[Handler, list[str]]:
        allowed: list[str] = []
        for m, pattern, handler in self.routes.get((segs[0], len(segs)), ()):
            params: list[str] = []
            for want, got in zip(pattern, segs, strict=True):
                if want is None:
                    params.append(got)
                elif want != got:
                    break
            else:
                if m == method:
                    return handler, params
                allowed.append(m)
        if allowed:
            raise MethodNotAllowed(f"Method {method} not allowed here (use {', '.join(allowed)})")
        raise NotFound(f"Not found: {method} /{'/'.join(segs)}")

    def check_auth(self, allow_query: bool) -> None:
        if not self.tokens:
            return
        header = request.headers.get("Authorization", "")
        token: str | None = None
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
        elif allow_query:
            token = request.args.get("token")
        if not token:
            raise AuthenticationRequired()
        if not check_token(token, self.tokens):
            raise InvalidToken()

    def cors_headers(self, response: Response) -> None:
        origin = request.headers.get("Origin")
        if origin is None or not self.cors:
            return
        if "*" in self.cors:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in self.cors:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    def preflight(self) -> Response | None:
        """An allowed CORS preflight gets 204; anything else is left to the route table."""
        if not self.cors or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = request.headers.get("Origin")
        if origin is None or ("*" not in self.cors and origin not in self.cors):
            return None
        resp = Response(b"", status=204)
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Max-Age"] = _CORS_MAX_AGE
        return resp

    async def dispatch(self) -> Response:
        """The one HTTP view: route on the raw path, authenticate, run, wrap the answer."""
        try:
            resp = await self._dispatch()
        except QueueError as e:
            resp = error_response(e)
        except RequestEntityTooLarge:
            resp = error_response(FrameTooLarge(self.limits.max_frame_bytes))
        except HTTPException as e:
            resp = json_response(
                e.code or 500, _dumps({"ok": False, "error": e.description or e.name})
            )
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            resp = json_response(500, b'{"ok":false,"error":"Internal error"}')
        self.cors_headers(resp)
        # Which worker answered: lets clients and tests see the request cross workers.
        resp.headers["X-MagicQueue-Worker"] = self.worker_index
        return resp

    async def _dispatch(self) -> Response:
        method = request.method
        if method == "OPTIONS":
            pre = self.preflight()
            if pre is not None:
                return pre
        raw = request.scope.get("raw_path") or request.path.encode()
        segs = split_path(raw)
        if method in ("GET", "HEAD") and (
            segs == [""] or (len(segs) == 2 and segs[0] == "dashboard")
        ):
            return self.serve_static("index.html" if segs == [""] else segs[1])
        try:
            handler, params = self.match(method, segs)
        except QueueError:
            self.check_auth(False)  # a stranger learns nothing, not even which routes exist
            raise
        self.check_auth(handler in self.query_token_ok)
        result = await handler(params)
        if isinstance(result, Response):
            return result
        return ok_response(result)

    def serve_static(self, name: str) -> Response:
        item = self.static.get(name)
        if item is None:
            raise NotFound(f"Not found: /dashboard/{name}")
        body, ctype = item
        resp = Response(body, status=200, content_type=ctype)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = "no-cache"
        if name == "index.html":
            resp.headers["Content-Security-Policy"] = _DASHBOARD_CSP
            resp.headers["X-Frame-Options"] = "DENY"
            resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    async def body(self) -> bytes:
        data = await request.get_data(cache=False)
        return data if isinstance(data, bytes) else data.encode()

    async def call(self, obj: dict[str, Any], worker: str | None = None) -> dict[str, Any]:
        """Validate and run one command as TCP would; the reply object, or raise its error."""
        cmd = c.parse_command(obj, self.limits, internal=True)
        return await self.submit(cmd, obj, worker)

    async def submit(
        self, cmd: c.Command, obj: dict[str, Any], worker: str | None = None
    ) -> dict[str, Any]:
        res = self.node.router.submit(cmd, _dumps(obj), Ctx(None, worker))
        if isinstance(res, Pending):
            res = await res.wait()
        return to_obj(res)

    async def call_many(self, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several independent commands at once (e.g. scatter commands for one page).

        A refusal is re-raised as itself (not wrapped in an ExceptionGroup), so it becomes its
        usual status code."""
        out: list[Any] = [None] * len(objs)

        async def one(i: int) -> None:
            try:
                out[i] = await self.call(objs[i])
            except QueueError as e:
                out[i] = e

        async with trio.open_nursery() as nursery:
            for i in range(len(objs)):
                nursery.start_soon(one, i)
        for v in out:
            if isinstance(v, QueueError):
                raise v
        return out

    async def push_job(self, obj: dict[str, Any]) -> Any:
        """PUSH, then read the job back so the reply is the job as stored."""
        cmd = c.parse_command(obj, self.limits, internal=True)
        assert isinstance(cmd, c.Push)
        jid = (await self.submit(cmd, obj))["id"]
        got = await self.call({"cmd": "GETJOB", "id": jid})
        if got.get("job") is not None:
            return got["job"]
        return _spec_to_wire(jid, cmd.queue, cmd.job)

    # ------------------------------------------------------------ queues

    async def list_queues(self, p: list[str]) -> Any:
        queues, hist = await self.call_many([{"cmd": "LISTQUEUES"}, {"cmd": "HISTOGRAMS"}])
        counts = {h["name"]: h for h in hist["queues"]}
        out = []
        for q in queues["queues"]:
            h = counts.get(q["name"])
            if h is not None:
                for k in ("waiting", "delayed", "active", "waiting_children"):
                    q[k] = h[k]
            out.append(q)
        return out

    async def push(self, p: list[str]) -> Any:
        obj = body_object(await self.body())
        obj["cmd"] = "PUSH"
        obj["queue"] = p[0]
        return await self.push_job(obj)

    async def pull(self, p: list[str]) -> Any:
        count = query_int("count")
        obj: dict[str, Any] = {"cmd": "PULLB", "queue": p[0]}
        obj["count"] = 1 if count is None else count
        timeout = query_int("timeout")
        if timeout is not None:
            obj["timeout"] = timeout
        return (await self.call(obj))["jobs"]

    async def pause(self, p: list[str]) -> Any:
        await self.call({"cmd": "PAUSE", "queue": p[0]})
        return None

    async def resume(self, p: list[str]) -> Any:
        await self.call({"cmd": "RESUME", "queue": p[0]})
        return None

    async def dlq(self, p: list[str]) -> Any:
        obj: dict[str, Any] = {"cmd": "DLQ", "queue": p[0]}
        count = query_int("count")
        if count is not None:
            obj["count"] = count
        return (await self.call(obj))["jobs"]

    async def retry_dlq(self, p: list[str]) -> Any:
        body = body_object(await self.body())
        obj: dict[str, Any] = {"cmd": "RETRYDLQ", "queue": p[0]}
        if body.get("id") is not None:
            obj["id"] = body["id"]
        return (await self.call(obj))["ids"][0]

    async def _limit(self, cmd: str, p: list[str]) -> Any:
        body = body_object(await self.body())
        await self.call({"cmd": cmd, "queue": p[0], "limit": body.get("limit")})
        return None

    async def set_rate_limit(self, p: list[str]) -> Any:
        return await self._limit("RATELIMIT", p)

    async def clear_rate_limit(self, p: list[str]) -> Any:
        await self.call({"cmd": "RATELIMITCLEAR", "queue": p[0]})
        return None

    async def set_concurrency(self, p: list[str]) -> Any:
        return await self._limit("SETCONCURRENCY", p)

    async def clear_concurrency(self, p: list[str]) -> Any:
        await self.call({"cmd": "CLEARCONCURRENCY", "queue": p[0]})
        return None

    # ------------------------------------------------------------ jobs

    async def list_jobs(self, p: list[str]) -> Any:
        obj: dict[str, Any] = {"cmd": "LISTJOBS"}
        queue = request.args.get("queue")
        if queue is not None:
            obj["queue"] = queue
        state = request.args.get("state")
        if state:
            obj["state"] = state
        for name in ("limit", "offset"):
            v = query_int(name)
            if v is not None:
                obj[name] = v
        return (await self.call(obj))["jobs"]

    async def get_job(self, p: list[str]) -> Any:
        jid = parse_job_id(p[0])
        got = await self.call({"cmd": "GETJOB", "id": jid})
        state = got["state"]
        if state == "unknown":
            raise JobNotFound(jid)
        job = got.get("job")
        out: dict[str, Any] = {"id": jid} if job is None else dict(job)
        out["state"] = state
        out["result"] = None
        if state == "completed":
            out["result"] = (await self.call({"cmd": "GETRESULT", "id": jid}))["result"]
        return out

    async def get_state(self, p: list[str]) -> Any:
        r = await self.call({"cmd": "GETSTATE", "id": parse_job_id(p[0])})
        return {"id": r["id"], "state": r["state"]}

    async def ack(self, p: list[str]) -> Any:
        body = body_object(await self.body())
        obj: dict[str, Any] = {"cmd": "ACK", "id": parse_job_id(p[0])}
        if "result" in body:
            obj["result"] = body["result"]
        worker = request.args.get("worker")
        if worker:
            obj["worker"] = worker
        await self.call(obj)
        return None

    async def fail(self, p: list[str]) -> Any:
        body = body_object(await self.body())
        obj: dict[str, Any] = {"cmd": "FAIL", "id": parse_job_id(p[0])}
        if "error" in body:
            obj["error"] = body["error"]
        await self.call(obj)
        return None

    async def cancel(self, p: list[str]) -> Any:
        await self.call({"cmd": "CANCEL", "id": parse_job_id(p[0])})
        return None

    async def set_progress(self, p: list[str]) -> Any:
        body = body_object(await self.body())
        obj: dict[str, Any] = {
            "cmd": "PROGRESS",
            "id": parse_job_id(p[0]),
            "progress": body.get("progress"),
        }
        if "progress" not in body:
            raise InvalidRequest("missing field 'progress'")
        if body.get("message") is not None:
            obj["message"] = body["message"]
        await self.call(obj)
        return None

    async def get_progress(self, p: list[str]) -> Any:
        r = (await self.call({"cmd": "GETPROGRESS", "id": parse_job_id(p[0])}))["progress"]
        return {"progress": r["progress"], "message": r["message"]}

    async def get_result(self, p: list[str]) -> Any:
        return (await self.call({"cmd": "GETRESULT", "id": parse_job_id(p[0])}))["result"]

    # ------------------------------------------------------------ cron, stats, workers

    async def list_crons(self, p: list[str]) -> Any:
        return (await self.call({"cmd": "CRONLIST"}))["crons"]

    async def add_cron(self, p: list[str]) -> Any:
        obj = body_object(await self.body())
        obj["cmd"] = "CRON"
        obj["name"] = p[0]
        await self.call(obj)
        return None

    async def delete_cron(self, p: list[str]) -> Any:
        await self.call({"cmd": "CRONDELETE", "name": p[0]})
        return None

    async def stats(self, p: list[str]) -> Any:
        r = await self.call({"cmd": "STATS"})
        r.pop("ok", None)
        return r

    async def metrics(self, p: list[str]) -> Any:
        return (await self.call({"cmd": "METRICS"}))["metrics"]

    async def prometheus(self, p: list[str]) -> Any:
        box: dict[str, Any] = {}

        async def hooks() -> None:  # never raises: an unreachable peer just adds nothing
            box["webhooks"] = await self.service.webhook_stats()

        async def gauges() -> None:
            try:
                box["parts"] = await self.call_many([{"cmd": "METRICS"}, {"cmd": "HISTOGRAMS"}])
            except QueueError as e:
                box["parts"] = e

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hooks)
            nursery.start_soon(gauges)
        if isinstance(box["parts"], QueueError):
            raise box["parts"]
        metrics, hist = box["parts"]
        text = prometheus.render(
            metrics["metrics"], hist["queues"], box["webhooks"], self.node.workers
        )
        return Response(text.encode(), status=200, content_type=prometheus.CONTENT_TYPE)

    async def list_workers(self, p: list[str]) -> Any:
        return (await self.call({"cmd": "WORKERS"}))["workers"]

    async def heartbeat(self, p: list[str]) -> Any:
        obj = body_object(await self.body())
        obj["cmd"] = "HEARTBEAT"
        obj["worker_id"] = p[0]
        await self.call(obj)
        return None

    # ------------------------------------------------------------ webhooks

    async def list_webhooks(self, p: list[str]) -> Any:
        return self.service.registry.listing()

    async def add_webhook(self, p: list[str]) -> Any:
        hook = parse_webhook(parse_json(await self.body(), required=True))
        await self.service.add_webhook(hook)
        return hook.id

    async def delete_webhook(self, p: list[str]) -> Any:
        if not await self.service.delete_webhook(p[0]):
            raise NotFound(f"Webhook {p[0]} not found")
        return True

    async def incoming(self, p: list[str]) -> Any:
        data = parse_json(await self.body(), required=True)
        return await self.push_job({"cmd": "PUSH", "queue": p[0], "data": data})

    # ------------------------------------------------------------ live events

    async def sse(self, p: list[str]) -> Any:
        return events.sse_response(self.node, p[0] if p else None)

    async def ws_without_upgrade(self, p: list[str]) -> Any:
        raise UpgradeRequired("This route is a WebSocket: send an Upgrade request")

    async def ws(self) -> Response | None:
        """The one WebSocket view: `/ws` or `/ws/{queue}`; 401/403/404 before the upgrade."""
        try:
            raw = websocket.scope.get("raw_path") or websocket.path.encode()
            segs = split_path(raw)
            if segs[0] != "ws" or len(segs) > 2:
                raise NotFound(f"Not found: /{'/'.join(segs)}")
            self.check_ws_auth()
            events.check_origin(self.config.ws_origins)
        except QueueError as e:
            return error_response(e)
        await events.serve_websocket(self.node, segs[1] if len(segs) == 2 else None)
        return None

    def check_ws_auth(self) -> None:
        if not self.tokens:
            return
        header = websocket.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        token = token or websocket.args.get("token")
        if not token:
            raise AuthenticationRequired()
        if not check_token(token, self.tokens):
            raise InvalidToken()


async def _shielded(send: Any, message: Any) -> None:
    with trio.CancelScope(shield=True):
        await send(message)


async def _last_send_shielded(send: Any, message: Any) -> None:
    # Only the last body message triggers hypercorn's end-of-response work (see below); the
    # others need no shield, and a cancel scope per message is measurable at this request rate.
    if message["type"] == "http.response.body" and not message.get("more_body", False):
        with trio.CancelScope(shield=True):
            await send(message)
    else:
        await send(message)


class _HttpConnection(TrioASGIHTTPConnection):
    """quart-trio's HTTP connection with the response's last ASGI `send` shielded.

    Why: hypercorn runs its end-of-response bookkeeping (close the socket after
    `Connection: close`, restart the keep-alive idle timer) *inside* the app's last `send`,
    and that bookkeeping delivers `http.disconnect` to quart-trio, whose message task then
    cancels the request nursery, i.e. the very `send` still running. Unshielded, the close is
    cancelled (the client waits forever for EOF) and the idle timer is never restarted (idle
    keep-alive connections are never closed). hypercorn shields its own socket writes, so
    the shield adds no new way to hang.
    """

    async def __call__(self, receive: Any, send: Any) -> None:
        await super().__call__(receive, partial(_last_send_shielded, send))


class _WebsocketConnection(TrioASGIWebsocketConnection):
    """The same fix for WebSocket connections (the close handshake runs inside `send`)."""

    async def __call__(self, receive: Any, send: Any) -> None:
        await super().__call__(receive, partial(_shielded, send))


class GatewayApp(QuartTrio):
    asgi_http_class = _HttpConnection
    asgi_websocket_class = _WebsocketConnection


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files, read once (they are small and never change while running)."""
    out: dict[str, tuple[bytes, str]] = {}
    if STATIC_DIR.is_dir():
        for f in STATIC_DIR.iterdir():
            ctype = _STATIC_TYPES.get(f.suffix)
            if f.is_file() and ctype is not None:
                out[f.name] = (f.read_bytes(), ctype)
    return out


def create_app(service: HttpService) -> QuartTrio:
    api = Api(service)
    app = GatewayApp("magicqueue", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = api.limits.max_frame_bytes
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.url_map.converters["anypath"] = AnyPathConverter

    async def view(**_: Any) -> Response:
        return await api.dispatch()

    async def ws_view(**_: Any) -> Response | None:
        return await api.ws()

    app.add_url_rule("/<anypath:_rest>", "any", view, methods=_METHODS)
    app.add_url_rule("/<anypath:_rest>", "ws", cast(Any, ws_view), websocket=True)
    app.api = api  # type: ignore[attr-defined]
    return app
