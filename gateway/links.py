"""Links between workers: one persistent Unix stream socket per pair, msgpack frames.

Worker `i` listens on `<run_dir>/link-<i>.sock`; a worker dials every worker with a lower index,
so after a restart the new process dials its lower peers and the higher ones dial it again. Both
ends then talk symmetrically. Frames are msgpack arrays whose first element is the kind:

  HELLO    [0, index, pid]                 first frame each way
  REQ      [1, rid, owner_token, line]     run one client request line on the owner
  PART     [2, rid, name, args]            this worker's share of a scatter command
  REP      [3, rid, error_kind, payload]   answer to REQ/PART; error_kind None = ok
  CANCEL   [4, rid]                        the client of a parked request went away
  RELEASE  [5, owner_token]                a client connection closed: release its jobs
  DEP      [6, shard, parent, ok]          a dependency outcome for one of your shards
  EVENTS   [7, [event, ...]]               job events for your subscribers
  SUB      [8, interested]                 send me events (or stop)
  CRONPUSH [9, queue, data, priority]      a cron firing for a queue you own

Many requests are in flight per link; replies find their caller by request id. Writes go
straight to the socket when the kernel takes them (`gateway.sockio.Wire`), so a burst of
requests leaves as few large writes. While a peer is down (restarting), requests for it wait in
a backlog for up to `link_wait_ms` and then fail with `WorkerUnavailable`; when a link drops,
the calls in flight on it fail at once and the jobs its connections held are released.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from gateway.sockio import Wire
from proto.errors import QueueError, WorkerUnavailable, rebuild
from proto.framing import MsgpackFramer, packer
from shard.pending import Pending

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.links")

HELLO, REQ, PART, REP, CANCEL, RELEASE, DEP, EVENTS, SUB, CRONPUSH = range(10)

Callback = Callable[[Any], None]
_LINK_BUFFER = 512 * 1024 * 1024  # a single frame may carry a full batch of large jobs


class Link:
    __slots__ = ("_pack", "calls", "peer", "pid", "served", "wire")

    def __init__(self, peer: int, pid: int, wire: Wire) -> None:
        self.peer = peer
        self.pid = pid
        self.wire = wire
        self.calls: dict[int, Callback] = {}  # our requests awaiting a REP
        self.served: dict[int, Pending[Any]] = {}  # their requests we are still working on
        self._pack = packer()

    def send(self, msg: list[Any]) -> None:
        self.wire.write(self._pack.pack(msg))


class LinkHub:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.index = node.index
        self.workers = node.workers
        self.links: dict[int, Link] = {}
        self.backlog: dict[int, list[tuple[list[Any], Callback | None, float]]] = {}
        self._rid = itertools.count(1)
        self._up: dict[int, trio.Event] = {p: trio.Event() for p in self.peers()}
        self.all_up = trio.Event()
        self.closing = False
        self._nursery: trio.Nursery | None = None

    def peers(self) -> list[int]:
        return [p for p in range(self.workers) if p != self.index]

    def path(self, i: int) -> str:
        return os.path.join(self.node.config.run_dir, f"link-{i}.sock")

    # ------------------------------------------------------------ sending

    def call(self, peer: int, kind: int, a: Any, b: Any, cb: Callback) -> int:
        """Send a REQ or PART; `cb` gets the payload, or a QueueError."""
        rid = next(self._rid)
        msg = [kind, rid, a, b]
        link = self.links.get(peer)
        if link is None:
            self._park(peer, msg, cb)
        else:
            link.calls[rid] = cb
            link.send(msg)
        return rid

    def cancel(self, peer: int, rid: int) -> None:
        link = self.links.get(peer)
        if link is not None and link.calls.pop(rid, None) is not None:
            link.send([CANCEL, rid])
        for item in self.backlog.get(peer, ()):
            if item[0][1] == rid and item[0][0] in (REQ, PART):
                self.backlog[peer].remove(item)
                break

    def send(self, peer: int, msg: list[Any], *, buffer: bool = True) -> None:
        """A one-way message. If the peer is down it waits in the backlog (or is dropped)."""
        link = self.links.get(peer)
        if link is not None:
            link.send(msg)
        elif buffer:
            self._park(peer, msg, None)

    def broadcast(self, msg: list[Any]) -> None:
        for link in list(self.links.values()):
            link.send(msg)

    def _park(self, peer: int, msg: list[Any], cb: Callback | None) -> None:
        items = self.backlog.setdefault(peer, [])
        items.append((msg, cb, trio.current_time() + self.node.config.link_wait_ms / 1000))
        if len(items) == 1 and self._nursery is not None:
            self._nursery.start_soon(self._expire_backlog, peer)

    async def _expire_backlog(self, peer: int) -> None:
        """Fail parked requests for a peer that stays down past their deadline."""
        while self.backlog.get(peer):
            first_deadline = min(d for _, _, d in self.backlog[peer])
            with trio.move_on_at(first_deadline):
                await self._up[peer].wait()
                return
            now = trio.current_time()
            keep: list[tuple[list[Any], Callback | None, float]] = []
            dead: list[tuple[list[Any], Callback | None, float]] = []
            for item in self.backlog.get(peer, []):
                (dead if item[2] <= now else keep).append(item)
            self.backlog[peer] = keep
            for msg, cb, _ in dead:
                if cb is not None:
                    cb(WorkerUnavailable(peer))
                elif msg[0] != EVENTS:
                    log.warning("dropped a message for worker %d (down): kind %d", peer, msg[0])

    # ------------------------------------------------------------ connection management

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for higher peers, dial lower ones; runs until cancelled."""
        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(128)
        lsock.setblocking(False)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for p in self.peers():
                if p < self.index:
                    nursery.start_soon(self._dial, p)
            if not self.peers():
                self.all_up.set()
            task_status.started()
            try:
                while True:
                    try:
                        sock, _ = lsock.accept()
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(lsock)
                        continue
                    nursery.start_soon(self._run_link, sock, None)
            finally:
                trio.lowlevel.notify_closing(lsock)
                lsock.close()

    async def _dial(self, peer: int) -> None:
        delay = 0.005
        while not self.closing:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path(peer))
            except OSError:
                sock.close()
                await trio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            delay = 0.005
            await self._run_link(sock, peer)

    async def _run_link(self, sock: socket.socket, expected: int | None) -> None:
        wire = Wire(sock)
        pack = packer()
        wire.write(pack.pack([HELLO, self.index, os.getpid()]))
        framer = MsgpackFramer(_LINK_BUFFER)
        link: Link | None = None
        pending_msgs: list[Any] = []
        try:
            # Handshake: the first frame names the peer.
            while link is None:
                data = await wire.recv()
                if not data:
                    return
                for msg in framer.feed(data):
                    if link is None:
                        if msg[0] != HELLO:
                            log.error("link: expected HELLO, got kind %r", msg[0])
                            return
                        peer, pid = int(msg[1]), int(msg[2])
                        if expected is not None and peer != expected:
                            log.error("link: dialled worker %d, answered by %d", expected, peer)
                            return
                        link = Link(peer, pid, wire)
                    else:
                        pending_msgs.append(msg)
            old = self.links.get(link.peer)
            if old is not None:
                await old.wire.aclose()
            self._attach(link)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wire.writer)
                for msg in pending_msgs:
                    self._dispatch(link, msg)
                while True:
                    data = await wire.recv()
                    if not data:
                        break
                    for msg in framer.feed(data):
                        self._dispatch(link, msg)
                nursery.cancel_scope.cancel()
        except (msgpack.ExtraData, msgpack.BufferFull, ValueError) as e:
            log.error("link to worker %s broken: %s", link.peer if link else "?", e)
        finally:
            if link is not None and self.links.get(link.peer) is link:
                self._detach(link)
            await wire.aclose()

    def _attach(self, link: Link) -> None:
        self.links[link.peer] = link
        self._up[link.peer].set()
        for msg, cb, _ in self.backlog.pop(link.peer, []):
            if cb is not None and msg[0] in (REQ, PART):
                link.calls[msg[1]] = cb
            link.send(msg)
        self.node.link_up(link.peer)
        if all(p in self.links for p in self.peers()):
            self.all_up.set()

    def _detach(self, link: Link) -> None:
        del self.links[link.peer]
        self._up[link.peer] = trio.Event()
        calls, link.calls = link.calls, {}
        for cb in calls.values():
            cb(WorkerUnavailable(link.peer))
        served, link.served = link.served, {}
        for p in served.values():
            p.cancel()
        self.node.link_down(link.peer, link.pid)

    # ------------------------------------------------------------ receiving

    def _dispatch(self, link: Link, msg: list[Any]) -> None:
        try:
            kind = msg[0]
            if kind == REP:
                cb = link.calls.pop(msg[1], None)
                if cb is not None:
                    err = msg[2]
                    cb(msg[3] if err is None else rebuild(err, msg[3]))
            elif kind == REQ:
                self.node.serve_forwarded(link, msg[1], msg[2], msg[3])
            elif kind == PART:
                self.node.serve_part(link, msg[1], msg[2], msg[3])
            elif kind == CANCEL:
                p = link.served.pop(msg[1], None)
                if p is not None:
                    p.cancel()
            elif kind == RELEASE:
                self.node.host.release_owner(msg[1])
            elif kind == DEP:
                self.node.host.resolve_dependency(msg[1], msg[2], msg[3])
            elif kind == EVENTS:
                self.node.bus.publish_remote(msg[1])
            elif kind == SUB:
                self.node.bus.peer_interest(link.peer, bool(msg[1]))
            elif kind == CRONPUSH:
                self.node.cron_push_local(msg[1], msg[2], msg[3])
            else:
                log.error("link: unknown frame kind %r from worker %d", kind, link.peer)
        except QueueError as e:
            log.warning("link frame refused: %s", e.message)
        except Exception:
            log.exception("link frame from worker %d failed", link.peer)

    @staticmethod
    def reply(link: Link, rid: int, value: Any) -> None:
        if isinstance(value, QueueError):
            link.send([REP, rid, type(value).__name__, value.message])
        else:
            link.send([REP, rid, None, value])
