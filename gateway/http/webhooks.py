"""Webhooks: a registry every worker holds in full, and background delivery of this worker's events.

Registry. A webhook is `{id, url, events, queue, secret, created_at}`; listings never show the
secret, nor the password of a `user:password@` URL (sent as HTTP Basic auth). Each worker
delivers the events of its *own* shards (an `EventBus` local sink), so every worker must know
every webhook.
`POST /webhooks` and `DELETE /webhooks/{id}` apply the change on the worker that took the
request and on every peer (a `webhooks` PART over the links) before they answer; that is what
makes "a webhook receives the events that happen after its creation reply, and none after its
deletion reply" true cluster-wide. A worker that starts (or restarts) asks its peers for their
lists and merges them in. Deleted ids are remembered as tombstones, so a snapshot that raced with
a deletion cannot bring a webhook back; ids are random, so a tombstone never hides a new hook.

Delivery. The sink runs inside shard operations, so it only matches and enqueues: the body is
encoded once per event (`proto.wire.event_to_webhook`) and put on a bounded queue. A few sender
tasks POST it (HTTP/1.1 over trio sockets with h11, TLS for https URLs); `X-MagicQueue-Signature`
is the lowercase hex HMAC-SHA256 of the exact body when the hook has a secret. A delivery that
fails (connection error, timeout, non-2xx) is retried after 1 s, 2 s, 4 s, 8 s, 16 s (5 retries),
then dropped and counted. Retries wait in a heap, not in a sender, so a dead receiver never holds
up the others, and nothing here can ever block a command: when the queue is full (deliveries
queued plus waiting retries), new deliveries are dropped and counted. Deliveries of one hook may
arrive out of order (several senders, retries); receivers order by `timestamp` if they care.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import logging
import secrets
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
import orjson
import trio

from proto.errors import InvalidRequest
from proto.limits import MAX_KEY_BYTES, MAX_QUEUE_NAME_BYTES
from proto.wire import EVENT_TYPES, Event, event_to_webhook

log = logging.getLogger("magicqueue.webhooks")

# Webhooks one cluster holds: each is checked against every event of every worker.
MAX_WEBHOOKS = 1000
MAX_URL_BYTES = 2048
# Deliveries waiting on one worker (queued + waiting for a retry); beyond it new ones are dropped.
DELIVERY_QUEUE_LIMIT = 10_000
# Concurrent POSTs per worker: a slow receiver occupies one sender, the others carry on.
SENDERS = 4
# One attempt (connect, TLS, request, response head) may take this long.
ATTEMPT_TIMEOUT_S = 10.0
# Retries after the first attempt, and the first backoff (doubling: 1 s, 2 s, 4 s, 8 s, 16 s).
MAX_RETRIES = 5
FIRST_BACKOFF_S = 1.0
SIGNATURE_HEADER = "X-MagicQueue-Signature"
USER_AGENT = "MagicQueue-Webhook/1"


def sign(secret: str, body: bytes) -> str:
    """The signature header value: lowercase hex HMAC-SHA256 of the exact body, no prefix."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def normalize_event(name: str) -> str | None:
    """`job.pushed` and `pushed` name the same event; `*` (or `job.*`) is every event."""
    if name.startswith("job."):
        name = name[4:]
    if name == "*":
        return "*"
    return name if name in EVENT_TYPES else None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]  # as the client gave them (listed back unchanged)
    queue: str | None
    secret: str | None
    created_at: int

    @property
    def kinds(self) -> frozenset[str] | None:
        """Normalized event types; None means every type."""
        out = {normalize_event(e) for e in self.events}
        return None if "*" in out else frozenset(k for k in out if k is not None)

    def public(self) -> dict[str, Any]:
        """What GET /webhooks shows: never the secret, nor a password in the URL."""
        return {
            "id": self.id,
            "url": _redact(self.url),
            "events": list(self.events),
            "queue": self.queue,
            "created_at": self.created_at,
        }

    def to_wire(self) -> list[Any]:
        """The form peers exchange over the links (secret included: it is needed to sign)."""
        return [self.id, self.url, list(self.events), self.queue, self.secret, self.created_at]

    @classmethod
    def from_wire(cls, w: list[Any]) -> Webhook:
        return cls(str(w[0]), str(w[1]), tuple(w[2]), w[3], w[4], int(w[5]))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def parse_webhook(obj: Any) -> Webhook:
    """Validate a `POST /webhooks` body; the new hook gets a fresh random id."""
    if type(obj) is not dict:
        raise InvalidRequest("request body must be a JSON object")
    url = obj.get("url")
    if type(url) is not str:
        raise InvalidRequest("field 'url' must be a string")
    if len(url.encode()) > MAX_URL_BYTES:
        raise InvalidRequest(f"field 'url' exceeds {MAX_URL_BYTES} bytes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidRequest(f"field 'url' is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("field 'url' must be an http:// or https:// URL with a host")
    if port == 0:
        raise InvalidRequest("field 'url' has port 0")
    events = obj.get("events")
    if type(events) is not list or not events:
        raise InvalidRequest("field 'events' must be a non-empty array of event types")
    for i, name in enumerate(events):
        if type(name) is not str or normalize_event(name) is None:
            raise InvalidRequest(
                f"field 'events[{i}]' must be '*' or one of {', '.join(EVENT_TYPES)}"
                " (optionally prefixed 'job.')"
            )
    queue = obj.get("queue")
    if queue is not None:
        if type(queue) is not str:
            raise InvalidRequest("field 'queue' must be a string")
        if len(queue.encode()) > MAX_QUEUE_NAME_BYTES:
            raise InvalidRequest(f"field 'queue' exceeds {MAX_QUEUE_NAME_BYTES} bytes")
    secret = obj.get("secret")
    if secret is not None:
        if type(secret) is not str or not secret:
            raise InvalidRequest("field 'secret' must be a non-empty string")
        if len(secret.encode()) > MAX_KEY_BYTES:
            raise InvalidRequest(f"field 'secret' exceeds {MAX_KEY_BYTES} bytes")
    return Webhook(
        "wh_" + secrets.token_hex(8),
        url,
        tuple(events),
        queue,
        secret,
        time.time_ns() // 1_000_000,
    )


class WebhookRegistry:
    """Every webhook of the cluster, as this worker knows it."""

    def __init__(self) -> None:
        self.hooks: dict[str, Webhook] = {}
        self.deleted: set[str] = set()
        # Per hook: its normalized filter, computed once (the sink checks it per event).
        self._match: list[tuple[Webhook, frozenset[str] | None, str | None]] = []

    def __len__(self) -> int:
        return len(self.hooks)

    def add(self, hook: Webhook) -> None:
        if hook.id in self.deleted:
            return
        self.hooks[hook.id] = hook
        self._rebuild()

    def delete(self, hook_id: str) -> bool:
        self.deleted.add(hook_id)
        existed = self.hooks.pop(hook_id, None) is not None
        if existed:
            self._rebuild()
        return existed

    def snapshot(self) -> list[list[Any]]:
        return [h.to_wire() for h in self.hooks.values()]

    def merge(self, wires: Iterable[list[Any]]) -> None:
        for w in wires:
            hook = Webhook.from_wire(w)
            if hook.id not in self.deleted and hook.id not in self.hooks:
                self.hooks[hook.id] = hook
        self._rebuild()

    def listing(self) -> list[dict[str, Any]]:
        hooks = sorted(self.hooks.values(), key=lambda h: (h.created_at, h.id))
        return [h.public() for h in hooks]

    def _rebuild(self) -> None:
        self._match = [(h, h.kinds, h.queue) for h in self.hooks.values()]

    def matching(self, kind: str, queue: str) -> list[Webhook]:
        return [
            h
            for h, kinds, q in self._match
            if (kinds is None or kind in kinds) and (q is None or q == queue)
        ]


@dataclass(slots=True)
class Delivery:
    hook_id: str
    kind: str
    body: bytes
    attempt: int = 0  # attempts made so far


@dataclass(slots=True)
class DeliveryStats:
    delivered: int = 0
    failed_attempts: int = 0
    dropped_exhausted: int = 0  # gave up after the last retry
    dropped_overflow: int = 0  # the delivery queue was full

    def as_list(self) -> list[int]:
        return [
            self.delivered,
            self.failed_attempts,
            self.dropped_exhausted,
            self.dropped_overflow,
        ]


class DeliveryError(Exception):
    """A delivery attempt failed (connection error or non-2xx): it will be retried."""


class WebhookDispatcher:
    """Matches this worker's events against the registry and delivers them in the background."""

    def __init__(
        self,
        registry: WebhookRegistry,
        *,
        limit: int = DELIVERY_QUEUE_LIMIT,
        senders: int = SENDERS,
        timeout_s: float = ATTEMPT_TIMEOUT_S,
        first_backoff_s: float = FIRST_BACKOFF_S,
    ) -> None:
        self.registry = registry
        self.limit = limit
        self.senders = senders
        self.timeout_s = timeout_s
        self.first_backoff_s = first_backoff_s
        self.stats = DeliveryStats()
        self.queued = 0  # deliveries in the channel or waiting for a retry
        self._send, self._recv = trio.open_memory_channel[Delivery](limit)
        self._retries: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._retry_scope: trio.CancelScope | None = None
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------ producing (sync, hot path)

    def sink(self, events: list[Event]) -> None:
        """EventBus local sink: called inside shard operations, so it never blocks or raises."""
        reg = self.registry
        if not reg.hooks:
            return
        for ev in events:
            hooks = reg.matching(ev[0], ev[1])
            if not hooks:
                continue
            body = orjson.dumps(event_to_webhook(ev))
            for h in hooks:
                self._enqueue(Delivery(h.id, ev[0], body))

    def _enqueue(self, d: Delivery) -> None:
        if self.queued >= self.limit:
            self.stats.dropped_overflow += 1
            return
        try:
            self._send.send_nowait(d)
        except trio.WouldBlock:
            self.stats.dropped_overflow += 1
            return
        self.queued += 1

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.senders):
                nursery.start_soon(self._sender)
            nursery.start_soon(self._retry_loop)
            task_status.started()

    async def _sender(self) -> None:
        async for d in self._recv.clone():
            self.queued -= 1
            hook = self.registry.hooks.get(d.hook_id)
            if hook is None:
                continue  # deleted since the event: deliver nothing more
            d.attempt += 1
            try:
                with trio.fail_after(self.timeout_s):
                    status = await self._post(hook, d)
                if not 200 <= status < 300:
                    raise DeliveryError(f"HTTP {status}")
            except (
                OSError,
                trio.TooSlowError,
                trio.BrokenResourceError,
                DeliveryError,
                h11.ProtocolError,
            ) as e:
                self._failed(hook, d, e)
            except Exception as e:  # a bug must not kill the sender; it is logged
                log.exception("webhook %s: delivery failed unexpectedly", hook.id)
                self._failed(hook, d, e)
            else:
                self.stats.delivered += 1

    def _failed(self, hook: Webhook, d: Delivery, err: BaseException) -> None:
        self.stats.failed_attempts += 1
        if d.attempt > MAX_RETRIES:
            self.stats.dropped_exhausted += 1
            log.warning(
                "webhook %s (%s): %s event dropped after %d attempts: %s",
                hook.id,
                hook.url,
                d.kind,
                d.attempt,
                str(err) or type(err).__name__,
            )
            return
        if self.queued >= self.limit:
            self.stats.dropped_overflow += 1
            return
        due = trio.current_time() + self.first_backoff_s * (2 ** (d.attempt - 1))
        heapq.heappush(self._retries, (due, next(self._seq), d))
        self.queued += 1
        scope = self._retry_scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due

    async def _retry_loop(self) -> None:
        """Move due retries back to the senders; sleeps until the earliest one is due."""
        heap = self._retries
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, d = heapq.heappop(heap)
                self.queued -= 1
                self._enqueue(d)
            with trio.CancelScope(deadline=heap[0][0] if heap else float("inf")) as scope:
                self._retry_scope = scope
                await trio.sleep_forever()
            self._retry_scope = None

    # ------------------------------------------------------------ one HTTP/1.1 POST

    async def _post(self, hook: Webhook, d: Delivery) -> int:
        """POST the body; returns the response status (the response body is not read)."""
        u = urlsplit(hook.url)
        https = u.scheme == "https"
        host = u.hostname or ""
        port = u.port or (443 if https else 80)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        headers = [
            ("Host", u.netloc.rpartition("@")[2]),
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(d.body))),
            ("Connection", "close"),
            ("X-MagicQueue-Event", d.kind),
        ]
        if hook.secret:
            headers.append((SIGNATURE_HEADER, sign(hook.secret, d.body)))
        if u.username is not None:  # http://user:pass@host/ means HTTP Basic auth
            cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            headers.append(("Authorization", "Basic " + base64.b64encode(cred).decode()))
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        try:
            if https:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                tls = trio.SSLStream(stream, self._ssl, server_hostname=host)
                await tls.do_handshake()
                stream = tls
            conn = h11.Connection(h11.CLIENT)
            out = conn.send(h11.Request(method="POST", target=target, headers=headers))
            out += conn.send(h11.Data(data=d.body))
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(ev, h11.Response):
                    return ev.status_code
                elif isinstance(ev, h11.ConnectionClosed):
                    raise DeliveryError("connection closed before a response")
                # an InformationalResponse (100 Continue) is skipped
        finally:
            await trio.aclose_forcefully(stream)
