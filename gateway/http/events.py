"""Live job events over Server-Sent Events (`/events[/{queue}]`) and WebSocket (`/ws[/{queue}]`).

Both are thin shells over `node.bus.subscribe(queue)`: the bus fans the events of every worker
in to this one (peers forward theirs once we have a subscriber), into the subscriber's bounded
buffer. Each event is `proto.wire.event_to_wire` JSON; an SSE message's `event:` name is its
`event_type`, a WebSocket text frame carries one event.

"Live from when?" A subscription is live on every worker once each peer has processed our
`SUB` message. Links deliver frames in order, so after subscribing we send each peer a no-op
PART (`http.ping`) and wait for its answer (bounded: a peer that is restarting must not keep the
stream from starting). Only then does the SSE stream send its first line (`: subscribed`) and
the WebSocket handshake complete, so a client that waits for either misses nothing that happens
afterwards.

A subscriber that falls behind by more than SUBSCRIBER_BUFFER events is dropped by the bus (the
queue is never slowed down): the SSE stream ends after a `: dropped` comment and the WebSocket is
closed with code 1008; clients reconnect. SSE sends a keep-alive comment every 15 s so proxies
keep the stream open, and the response opts out of Quart's RESPONSE_TIMEOUT (which would cut
any stream after 60 s). WebSocket keep-alive is hypercorn's ping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
import trio
from quart import Response, websocket

from gateway.links import PART
from proto.errors import QueueError
from proto.wire import event_to_wire
from shard.pending import Pending

if TYPE_CHECKING:
    from gateway.events import Subscriber
    from gateway.node import Node

KEEPALIVE_S = 15.0
# How long a new subscription waits for the peers to confirm they forward their events.
PEER_SYNC_TIMEOUT_S = 2.0
SSE_RETRY_MS = 2000
PING_PART = "http.ping"
_dumps = orjson.dumps


class Forbidden(QueueError):
    http_status = 403


async def sync_peers(node: Node) -> None:
    """Wait until every reachable peer has seen our SUB (a round trip on each link)."""
    peers = [p for p in range(node.workers) if p != node.index]
    if not peers:
        return
    pendings: list[Pending[object]] = []
    for peer in peers:
        p: Pending[object] = Pending()
        node.hub.call(peer, PART, PING_PART, None, p.resolve)
        pendings.append(p)
    with trio.move_on_after(PEER_SYNC_TIMEOUT_S):
        for p in pendings:
            await p.wait()


def sse_message(ev: tuple[str, str, int, int, object]) -> bytes:
    return b"event: " + ev[0].encode() + b"\ndata: " + _dumps(event_to_wire(ev)) + b"\n\n"


async def _sse_stream(node: Node, queue: str | None) -> AsyncIterator[bytes]:
    sub: Subscriber = node.bus.subscribe(queue)
    try:
        await sync_peers(node)
        yield f"retry: {SSE_RETRY_MS}\n: subscribed\n\n".encode()
        while True:
            batch = await sub.next_batch(KEEPALIVE_S)
            if batch is None:
                yield b": dropped (subscriber too slow)\n\n"
                return
            if not batch:
                yield b": keep-alive\n\n"
                continue
            yield b"".join([sse_message(ev) for ev in batch])
    finally:
        sub.close()


def sse_response(node: Node, queue: str | None) -> Response:
    # The subscription starts when the body is first iterated, so a client that disconnects
    # before that leaves nothing behind.
    resp = Response(_sse_stream(node, queue), status=200, content_type="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    resp.timeout = None  # never cut by RESPONSE_TIMEOUT
    return resp


def check_origin(allowed: tuple[str, ...]) -> None:
    """A browser's WebSocket must come from our own origin or one listed in WS_ORIGINS.

    Non-browser clients send no Origin and are judged by their token alone."""
    origin = websocket.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return
    host = websocket.headers.get("Host", "")
    try:
        same = urlsplit(origin).netloc.lower() == host.lower() and bool(host)
    except ValueError:
        same = False
    if not same:
        raise Forbidden(f"Origin not allowed: {origin}")


async def serve_websocket(node: Node, queue: str | None) -> None:
    sub = node.bus.subscribe(queue)
    try:
        await sync_peers(node)
        await websocket.accept()
        async with trio.open_nursery() as nursery:
            # Read (and ignore) what the client sends, so its close frame is noticed at once.
            nursery.start_soon(_drain_incoming)
            while True:
                batch = await sub.next_batch(KEEPALIVE_S)
                if batch is None:
                    await websocket.close(1008, "subscriber too slow")
                    break
                for ev in batch:
                    await websocket.send(_dumps(event_to_wire(ev)).decode())
            nursery.cancel_scope.cancel()
    finally:
        sub.close()


async def _drain_incoming() -> None:
    while True:
        await websocket.receive()
