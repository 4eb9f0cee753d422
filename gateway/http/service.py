"""The HTTP gateway as a worker service: hypercorn runs the quart-trio app in the worker's nursery.

With `HTTP=1` every worker runs one `HttpService` (attached in `cluster.worker`). `start()`:
1. asks its peers for the webhooks they know (a restarted worker must not miss any), bounded by
   the link wait: a peer that stays down must not keep this worker from serving;
2. registers the webhook dispatcher as the event bus's local sink and starts its senders;
3. binds its own SO_REUSEPORT listener on `HTTP_PORT` (hypercorn's `serve()` cannot do that
   itself) and hands the socket to hypercorn as `fd://N`. The socket object is detached first,
   or its finalizer would close the fd under hypercorn.
The kernel spreads HTTP connections over the workers like TCP ones; any worker answers any
route, forwarding to the owning worker through the router.

Webhook changes are replicated here: the worker that takes `POST/DELETE /webhooks` applies the
change locally and on every peer (the `webhooks` PART) and answers only when all have answered
(or been found unreachable: a worker that is down learns the list when it restarts).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from gateway.http.app import create_app
from gateway.http.events import PING_PART
from gateway.http.webhooks import (
    MAX_WEBHOOKS,
    Webhook,
    WebhookDispatcher,
    WebhookRegistry,
)
from gateway.links import PART
from gateway.tcp import bind_tcp
from proto.errors import InvalidRequest, QueueError
from shard.pending import Pending

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.http")

WEBHOOK_PART = "webhooks"
# hypercorn: an idle keep-alive connection is closed after this long; a connection serves at
# most this many requests (its default of 1000 makes load generators reconnect constantly).
KEEP_ALIVE_S = 30.0
KEEP_ALIVE_MAX_REQUESTS = 1_000_000
WS_PING_INTERVAL_S = 15.0
LISTEN_BACKLOG = 4096
GRACEFUL_TIMEOUT_S = 1.0


class HttpService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = WebhookRegistry()
        self.dispatcher = WebhookDispatcher(self.registry)
        self.port = 0
        self._stopping = trio.Event()
        self._served = trio.Event()  # hypercorn has finished its graceful shutdown
        # Registered now, before the links start: peers may ask as soon as they connect.
        node.part_handlers[WEBHOOK_PART] = self._webhook_part
        node.part_handlers[PING_PART] = lambda _args: True
        self.app = create_app(self)

    # ------------------------------------------------------------ lifecycle

    async def start(self, nursery: trio.Nursery) -> None:
        await self._sync_webhooks()
        self.node.bus.add_local_sink(self.dispatcher.sink)
        await nursery.start(self.dispatcher.run)
        cfg = self.node.config
        sock = bind_tcp(cfg.bind, cfg.http_port)
        self.port = sock.getsockname()[1]
        self.node.bound_ports["http"] = self.port
        hc = HyperConfig()
        hc.bind = [f"fd://{sock.detach()}"]
        hc.backlog = LISTEN_BACKLOG
        hc.accesslog = None
        hc.errorlog = logging.getLogger("magicqueue.http.server")
        hc.keep_alive_timeout = KEEP_ALIVE_S
        hc.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
        hc.websocket_ping_interval = WS_PING_INTERVAL_S
        hc.graceful_timeout = GRACEFUL_TIMEOUT_S
        # On SIGTERM hypercorn stops accepting and gives requests in flight GRACEFUL_TIMEOUT_S.
        await nursery.start(self._serve, hc)

    async def _serve(self, hc: HyperConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve(self.app, hc, shutdown_trigger=self._stopping.wait, task_status=task_status)
        finally:
            self._served.set()

    def begin_shutdown(self) -> None:
        self._stopping.set()

    async def drained(self) -> None:
        await self._served.wait()

    async def stop(self) -> None:
        """Nothing to flush: hypercorn and the senders die with the worker's front nursery.
        Webhook deliveries still queued are lost (they are best effort by design)."""
        s = self.dispatcher.stats
        if s.dropped_exhausted or s.dropped_overflow:
            log.warning(
                "webhooks on worker %d: %d deliveries dropped after retries, %d on overflow",
                self.node.index,
                s.dropped_exhausted,
                s.dropped_overflow,
            )

    # ------------------------------------------------------------ talking to peers

    def _peers(self) -> list[int]:
        return [p for p in range(self.node.workers) if p != self.node.index]

    async def _ask_peers(self, args: list[Any]) -> list[Any]:
        """Send one `webhooks` PART to every peer; their answers (or QueueErrors)."""
        pendings: list[Pending[Any]] = []
        for peer in self._peers():
            p: Pending[Any] = Pending()
            self.node.hub.call(peer, PART, WEBHOOK_PART, args, p.resolve)
            pendings.append(p)
        return [await p.wait() for p in pendings]

    async def _sync_webhooks(self) -> None:
        if not self._peers():
            return
        with trio.move_on_after(self.node.config.link_wait_ms / 1000 + 1):
            for answer in await self._ask_peers(["list"]):
                if isinstance(answer, QueueError):
                    log.warning("webhooks: a peer could not send its list: %s", answer.message)
                else:
                    self.registry.merge(answer)

    def _webhook_part(self, args: Any) -> Any:
        op = args[0]
        if op == "add":
            self.registry.add(Webhook.from_wire(args[1]))
            return True
        if op == "del":
            return self.registry.delete(str(args[1]))
        if op == "list":
            return self.registry.snapshot()
        if op == "stats":
            return self.dispatcher.stats.as_list()
        raise InvalidRequest(f"unknown webhooks operation {op!r}")

    # ------------------------------------------------------------ what the routes call

    async def add_webhook(self, hook: Webhook) -> None:
        if len(self.registry) >= MAX_WEBHOOKS:
            raise InvalidRequest(f"too many webhooks (limit {MAX_WEBHOOKS})")
        self.registry.add(hook)
        for answer in await self._ask_peers(["add", hook.to_wire()]):
            if isinstance(answer, QueueError):
                log.warning("webhook %s: a peer is unreachable: %s", hook.id, answer.message)

    async def delete_webhook(self, hook_id: str) -> bool:
        existed = self.registry.delete(hook_id)
        for answer in await self._ask_peers(["del", hook_id]):
            if answer is True:
                existed = True
            elif isinstance(answer, QueueError):
                log.warning("webhook %s: a peer is unreachable: %s", hook_id, answer.message)
        return existed

    async def webhook_stats(self) -> list[int]:
        """Delivery counters summed over every reachable worker."""
        total = self.dispatcher.stats.as_list()
        for answer in await self._ask_peers(["stats"]):
            if isinstance(answer, list):
                total = [a + int(b) for a, b in zip(total, answer, strict=True)]
        return total
