"""Connection handoff: give a client socket to the worker that owns its queue.

SO_REUSEPORT lands a connection on a random worker, so with N workers (N-1)/N of a client's
requests would cross a link (two more process wake-ups each: measured +75 us and 3x the CPU of a
local request). Most connections talk to one queue, so when a fresh connection's first routable
request belongs to another worker, the accepting worker passes the socket itself to the owner
(`SCM_RIGHTS`), together with every byte it has read and not answered, and forgets it. The owner
serves it from then on at local speed; later requests for other workers are forwarded as usual.

Rules (each from a measured trap, see the handoff notes):
- One SEQPACKET connection per target worker, so one message carries exactly one fd and its
  bytes; sends are serialised by a lock (trio allows one waiting writer per fd).
- Only while the connection owes no reply and holds nothing (its first routable request).
- The acceptor closes its copy with close(), never shutdown(): shutdown acts on the shared
  socket and would cut the client off.
- Any failure (owner down, message too big for the socket buffer, owner not accepting) falls
  back to forwarding; the receiver closes every fd of a truncated or unexpected message.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import msgpack
import trio

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.handoff")

# A SEQPACKET message is bounded by the socket send buffer (~208 KiB here); stay well below.
MAX_HANDOFF_BYTES = 128 * 1024
_SEND_TIMEOUT_S = 0.5


class Handoff:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.out: dict[int, socket.socket] = {}
        self.locks: dict[int, trio.Lock] = {}

    def path(self, i: int) -> str:
        return os.path.join(self.node.config.run_dir, f"hand-{i}.sock")

    # ------------------------------------------------------------ sending

    async def send(self, target: int, sock: socket.socket, buffered: bytes, authed: bool) -> bool:
        """Try to hand `sock` to `target`; False means keep it and forward instead."""
        if len(buffered) > MAX_HANDOFF_BYTES or target not in self.node.hub.links:
            return False
        lock = self.locks.setdefault(target, trio.Lock())
        async with lock:
            out = self.out.get(target)
            if out is None:
                out = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    out.connect(self.path(target))
                except OSError:
                    out.close()
                    return False
                out.setblocking(False)
                self.out[target] = out
            msg = msgpack.packb([buffered, authed], use_bin_type=True)
            fds = array.array("i", [sock.fileno()])
            with trio.move_on_after(_SEND_TIMEOUT_S):
                while True:
                    try:
                        out.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                        return True
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(out)
                    except OSError as e:
                        log.info("handoff to worker %d failed (%s); forwarding", target, e)
                        self._drop(target)
                        break
            return False

    def _drop(self, target: int) -> None:
        out = self.out.pop(target, None)
        if out is not None:
            trio.lowlevel.notify_closing(out)
            out.close()

    def link_down(self, target: int) -> None:
        self._drop(target)

    # ------------------------------------------------------------ receiving

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        path = self.path(self.node.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lsock.bind(path)
        lsock.listen(64)
        lsock.setblocking(False)
        async with trio.open_nursery() as nursery:
            task_status.started()
            try:
                while True:
                    try:
                        conn, _ = lsock.accept()
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(lsock)
                        continue
                    conn.setblocking(False)
                    nursery.start_soon(self._receive, conn)
            finally:
                trio.lowlevel.notify_closing(lsock)
                lsock.close()
                for t in list(self.out):
                    self._drop(t)

    async def _receive(self, conn: socket.socket) -> None:
        space = socket.CMSG_SPACE(array.array("i").itemsize)
        try:
            while True:
                try:
                    msg, anc, flags, _ = conn.recvmsg(
                        MAX_HANDOFF_BYTES * 2, space, socket.MSG_CMSG_CLOEXEC
                    )
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(conn)
                    continue
                except OSError:
                    return
                fds = array.array("i")
                for level, typ, data in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                if not msg and not fds:
                    return  # the sender closed its end
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    log.error("handoff: dropped a malformed message (flags %x)", flags)
                    continue
                try:
                    buffered, authed = msgpack.unpackb(msg, raw=False)
                except Exception:
                    os.close(fds[0])
                    log.error("handoff: undecodable message")
                    continue
                client = socket.socket(fileno=fds[0])
                self.node.spawn_client(client, bytes(buffered), bool(authed))
        finally:
            trio.lowlevel.notify_closing(conn)
            conn.close()
