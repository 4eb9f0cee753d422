"""Live job events: from every worker's shards to every subscriber.

Each worker publishes the events of its own shards. Subscribers (SSE, WebSocket) live on
whichever worker took their HTTP connection, so a worker with at least one subscriber tells its
peers `SUB true` and they forward their events to it (`EVENTS` frames, one per operation, so a
PUSHB of 1,000 jobs is one frame). With no subscriber and no webhook anywhere, shards drop their
events at once and the hot path pays nothing.

A subscriber has a bounded buffer. One that does not keep up is dropped when the buffer fills
(its stream ends; the client reconnects): a slow reader never slows the queue. Webhook delivery
hooks in as a `local_sink`: it sees only this worker's events, so each event is delivered once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from gateway.links import EVENTS, SUB
from proto.wire import Event

if TYPE_CHECKING:
    from gateway.node import Node


class Subscriber:
    __slots__ = ("_bus", "_wake", "buffer", "dropped", "limit", "queue")

    def __init__(self, bus: EventBus, queue: str | None, limit: int) -> None:
        self._bus = bus
        self.queue = queue
        self.limit = limit
        self.buffer: deque[Any] = deque()
        self.dropped = False
        self._wake = trio.Event()

    def offer(self, events: Iterable[Any]) -> None:
        if self.dropped:
            return
        q = self.queue
        buf = self.buffer
        for ev in events:
            if q is None or ev[1] == q:
                buf.append(ev)
        if len(buf) > self.limit:
            self.dropped = True
            buf.clear()
        if buf or self.dropped:
            self._wake.set()

    async def next_batch(self, timeout: float) -> list[Event] | None:
        """Events since the last call; [] after `timeout` s of silence; None once dropped."""
        if not self.buffer and not self.dropped:
            with trio.move_on_after(timeout):
                await self._wake.wait()
            self._wake = trio.Event()
        if self.dropped:
            return None
        out = list(self.buffer)
        self.buffer.clear()
        return out

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, node: Node, buffer_limit: int) -> None:
        self.node = node
        self.buffer_limit = buffer_limit
        self.subs: set[Subscriber] = set()
        self.interested: set[int] = set()  # peers with subscribers of their own
        self.local_sinks: list[Callable[[list[Event]], None]] = []
        self._refresh()

    # ------------------------------------------------------------ subscribing

    def subscribe(self, queue: str | None = None) -> Subscriber:
        sub = Subscriber(self, queue, self.buffer_limit)
        first = not self.subs
        self.subs.add(sub)
        if first:
            self.node.hub.broadcast([SUB, True])
        self._refresh()
        return sub

    def _unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subs:
            self.subs.discard(sub)
            if not self.subs:
                self.node.hub.broadcast([SUB, False])
            self._refresh()

    def add_local_sink(self, sink: Callable[[list[Event]], None]) -> None:
        self.local_sinks.append(sink)
        self._refresh()

    def peer_interest(self, peer: int, interested: bool) -> None:
        if interested:
            self.interested.add(peer)
        else:
            self.interested.discard(peer)
        self._refresh()

    def link_up(self, peer: int) -> None:
        """A (re)connected peer learns whether we want its events."""
        if self.subs:
            self.node.hub.send(peer, [SUB, True])

    def link_down(self, peer: int) -> None:
        self.interested.discard(peer)
        self._refresh()

    def _refresh(self) -> None:
        active = bool(self.subs or self.interested or self.local_sinks)
        self.node.host.publish = self.publish_local if active else None

    # ------------------------------------------------------------ publishing

    def publish_local(self, events: list[Event]) -> None:
        """Events from this worker's shards."""
        if self.interested:
            msg = [EVENTS, events]
            for peer in self.interested:
                self.node.hub.send(peer, msg, buffer=False)
        for sink in self.local_sinks:
            sink(events)
        if self.subs:
            self._deliver(events)

    def publish_remote(self, events: list[Any]) -> None:
        """Events forwarded by a peer for our subscribers."""
        if self.subs:
            self._deliver(events)

    def _deliver(self, events: list[Any]) -> None:
        for sub in list(self.subs):
            sub.offer(events)
            if sub.dropped:
                self._unsubscribe(sub)
