"""One worker of the cluster: its shards, its links, its listeners.

A `Node` owns the `ShardHost` of the shards `s % workers == index`, the links to its peers, the
event bus, the router, and the client-facing listeners (TCP with SO_REUSEPORT, the Unix socket
inherited from the supervisor, HTTP when enabled). Every worker is also a gateway: any client
may connect to any worker.

Lifecycle (`run`): start the timer, links and handoff receiver; bind the listeners; wait for
the links to every peer (bounded: a peer that is restarting must not keep us from serving);
announce readiness to the supervisor *after* the signal handler exists (a signal that arrives
earlier would kill the worker silently). On SIGTERM/SIGINT: stop accepting, answer parked pulls
as timed out, let in-flight replies go out (bounded by the grace period), close connections
(their unfinished jobs go back to the queue), flush persistence, exit.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import trio

from cluster.config import Config
from gateway.events import EventBus
from gateway.handoff import Handoff
from gateway.links import CRONPUSH, DEP, Link, LinkHub
from gateway.router import Router
from gateway.tcp import ClientConn, accept_loop, bind_tcp
from proto.commands import JobSpec, decode_line, parse_command
from proto.errors import QueueError
from shard.core import CoreConfig
from shard.pending import Pending, gather
from shard.persistence.writer import Persistence
from shard.routing import owner_of, shard_of_id, shard_of_name, shards_of_worker
from shard.runtime import Ctx, ShardHost

log = logging.getLogger("magicqueue")

_TOKEN_SHIFT = 40  # owner token = pid << 40 | connection counter
_LINK_READY_TIMEOUT_S = 10.0


async def gc_maintenance(freeze_every_s: float, deep_every_s: float) -> None:
    """Keep the cyclic GC's pauses independent of the backlog.

    A full collection walks every tracked object: with a million waiting jobs that is ~0.5 s
    (measured), and CPython runs one each time the long-lived heap grows by a quarter. So every
    `freeze_every_s` we collect what is young (cheap: older objects are already frozen) and
    freeze the survivors, which takes them out of every later collection. Frozen objects are
    still freed by reference counting, which is how jobs, replies and connections die here;
    only a reference cycle that dies after being frozen would wait, for the deep collection
    every `deep_every_s` (0: never), which unfreezes, collects everything once and freezes.
    """
    last_deep = trio.current_time()
    while True:
        await trio.sleep(freeze_every_s)
        if deep_every_s and trio.current_time() - last_deep >= deep_every_s:
            last_deep = trio.current_time()
            gc.unfreeze()
        gc.collect()
        gc.freeze()


class Service(Protocol):
    """Something a worker runs beside its TCP listeners (HTTP, gRPC, persistence)."""

    async def start(self, nursery: trio.Nursery) -> None:
        """Bind and start serving in `nursery`; return once ready."""

    def begin_shutdown(self) -> None:
        """SIGTERM arrived: stop accepting new requests; those in flight may still finish."""

    async def drained(self) -> None:
        """Return once the requests that were in flight at `begin_shutdown` are answered."""

    async def stop(self) -> None:
        """Called after client connections are closed, before the process exits."""


class Node:
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        self.workers = config.workers
        self.config = config
        self.pid = os.getpid()
        self.host = ShardHost(
            shards_of_worker(index, config.workers),
            CoreConfig(config.completed_keep, config.completed_ttl_ms),
            remote=self,
            track_changes=config.database_url is not None,
            worker_ttl_ms=config.worker_ttl_ms,
            seq_dir=None if config.database_url else (config.run_dir or None),
        )
        self.hub = LinkHub(self)
        self.bus = EventBus(self, config.subscriber_buffer)
        self.router = Router(self)
        self.handoff = Handoff(self) if config.handoff and config.workers > 1 else None
        self.persistence: Persistence | None = None
        if config.database_url:
            self.persistence = Persistence(
                self.host, config.database_url, config.commit_timeout_ms / 1000
            )
        self._tokens = itertools.count(1)
        self.conns: set[ClientConn] = set()
        self.stopping = False
        self._clients: trio.Nursery | None = None
        self._listeners: list[socket.socket] = []
        self.bound_ports: dict[str, int] = {}
        self.services: list[Service] = []
        # Extra PART names a service answers for its peers (e.g. the HTTP gateway's webhooks).
        self.part_handlers: dict[str, Callable[[Any], Any]] = {}

    def new_token(self) -> int:
        return self.pid << _TOKEN_SHIFT | next(self._tokens)

    # ------------------------------------------------------------ what the host asks of us

    def watch(self, parents: list[int], watcher: int) -> Pending[Any]:
        by_owner: dict[int, list[int]] = {}
        for p in parents:
            by_owner.setdefault(owner_of(shard_of_id(p), self.workers), []).append(p)
        parts = [self.router.part_call(w, "watch", [ps, watcher]) for w, ps in by_owner.items()]

        def merge(values: list[Any]) -> Any:
            out: dict[int, str] = {}
            for v in values:
                if isinstance(v, QueueError):
                    return v
                out.update({int(k): s for k, s in v.items()})
            return out

        return gather(parts, merge)

    def dep_outcome(self, shard: int, parent: int, ok: bool) -> None:
        self.hub.send(owner_of(shard, self.workers), [DEP, shard, parent, ok])

    def cron_push(self, queue: str, data: bytes, priority: int) -> None:
        self.hub.send(
            owner_of(shard_of_name(queue), self.workers), [CRONPUSH, queue, data, priority]
        )

    def cron_push_local(self, queue: str, data: bytes, priority: int) -> None:
        self.host.push_local(queue, [JobSpec(data, priority=priority)])

    # ------------------------------------------------------------ what peers ask of us

    def serve_forwarded(self, link: Link, rid: int, token: Any, line: bytes) -> None:
        """Run a client request another worker forwarded (its shard is ours)."""
        try:
            cmd = parse_command(decode_line(line), self.config.limits, internal=True)
            res = self.host.execute(cmd, Ctx(token))
        except QueueError as e:
            LinkHub.reply(link, rid, e)
            return
        if isinstance(res, Pending):
            link.served[rid] = res

            def done(v: Any) -> None:
                link.served.pop(rid, None)
                LinkHub.reply(link, rid, v if isinstance(v, QueueError) else orjson.dumps(v))

            res.then(done)
        else:
            LinkHub.reply(link, rid, orjson.dumps(res))

    def serve_part(self, link: Link, rid: int, name: str, args: Any) -> None:
        try:
            handler = self.part_handlers.get(name)
            value = self.host.part(name, args) if handler is None else handler(args)
        except QueueError as e:
            LinkHub.reply(link, rid, e)
            return
        if isinstance(value, Pending):
            value.then(lambda v: LinkHub.reply(link, rid, v))
        else:
            LinkHub.reply(link, rid, value)

    def link_up(self, peer: int) -> None:
        self.bus.link_up(peer)
        # The peer may have restarted: its watch registrations for our waiting children are gone.
        n = self.workers
        self.host.rewatch(lambda parent: owner_of(shard_of_id(parent), n) == peer)

    def link_down(self, peer: int, pid: int) -> None:
        self.bus.link_down(peer)
        if self.handoff is not None:
            self.handoff.link_down(peer)
        # The peer's client connections died with it: their jobs here go back to the queue.
        n = self.host.release_owners(lambda o: isinstance(o, int) and o >> _TOKEN_SHIFT == pid)
        if n:
            log.warning("worker %d is gone: %d jobs it had handed out were released", peer, n)

    # ------------------------------------------------------------ clients

    def spawn_client(self, sock: socket.socket, initial: bytes, authed: bool) -> None:
        if self._clients is None or self.stopping:
            sock.close()
            return
        if len(self.conns) >= self.config.max_connections:
            with contextlib.suppress(OSError):  # best effort: the refusal is the close
                sock.send(b'{"ok":false,"error":"Too many connections"}\n')
            sock.close()
            return
        self._clients.start_soon(self._serve_client, sock, initial, authed)

    async def _serve_client(self, sock: socket.socket, initial: bytes, authed: bool) -> None:
        conn = ClientConn(self, sock, initial, authed)
        self.conns.add(conn)
        try:
            await conn.serve()
        except Exception:
            # One bad client never disturbs the others: log it and close that connection.
            log.exception("client connection failed")
        finally:
            self.conns.discard(conn)

    # ------------------------------------------------------------ lifecycle

    async def run(self, announce: Callable[[], None], unix_fd: int | None = None) -> None:
        cfg = self.config
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as core:
                await core.start(self.host.run_timer)
                if cfg.gc_freeze_every_s:
                    core.start_soon(gc_maintenance, cfg.gc_freeze_every_s, cfg.gc_deep_every_s)
                if self.persistence is not None:
                    # Recover before anyone (peer or client) can reach these shards.
                    await self.persistence.start(core)
                await core.start(self.hub.run)
                if self.handoff is not None:
                    await core.start(self.handoff.serve)
                async with trio.open_nursery() as front:
                    self._clients = front
                    tcp = bind_tcp(cfg.bind, cfg.port)
                    self.bound_ports["tcp"] = tcp.getsockname()[1]
                    self._listeners.append(tcp)
                    front.start_soon(accept_loop, self, tcp, True)
                    if unix_fd is not None:
                        usock = socket.socket(fileno=os.dup(unix_fd))
                        usock.setblocking(False)
                        self._listeners.append(usock)
                        front.start_soon(accept_loop, self, usock, False)
                    for service in self.services:
                        await service.start(front)
                    with trio.move_on_after(_LINK_READY_TIMEOUT_S):
                        await self.hub.all_up.wait()
                    if not self.hub.all_up.is_set():
                        log.warning(
                            "worker %d: not every peer answered; serving anyway", self.index
                        )
                    announce()
                    async for _ in signals:
                        break
                    await self._shutdown()
                    front.cancel_scope.cancel()
                for service in reversed(self.services):
                    await service.stop()
                if self.persistence is not None:
                    await self.persistence.stop()
                self.hub.closing = True
                core.cancel_scope.cancel()

    async def _shutdown(self) -> None:
        self.stopping = True
        for ls in self._listeners:
            trio.lowlevel.notify_closing(ls)
            ls.close()
        for service in self.services:
            service.begin_shutdown()
        self.host.release_all_waiters()
        with trio.move_on_after(self.config.shutdown_grace_s):
            while any(c.owes_replies() for c in self.conns):
                await trio.sleep(0.01)
            for service in self.services:
                await service.drained()
