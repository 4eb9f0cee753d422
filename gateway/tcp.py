"""Client connections over TCP and Unix sockets: newline-delimited JSON.

One `ClientConn` per connection, one trio task reading it (plus a writer task that only works
when the kernel's send buffer is full). For each complete line: decode, validate, check auth,
hand to the router, and write the reply.

Reply order: a request without `reqId` is answered strictly in order, so its reply takes a slot
in `order` and goes out once every earlier slot has; a request with `reqId` is answered the
moment its result exists (a blocking PULL then never holds back the rest of the connection).
Replies produced while a read batch is processed are coalesced into one write.

Requests are executed as they arrive, even while an earlier one is still waiting (a parked
PULL, a forwarded request): that is what lets a pipelining client keep every worker busy.
Effects stay in request order because local commands run synchronously and each owner receives
this connection's forwarded requests in order over one link.

When the connection ends, parked pulls are cancelled (never handed a job) and every job it
pulled and did not finish is failed with `Worker connection lost`, on this worker and on each
worker it pulled from through a link. A fresh connection whose first routable request belongs
to another worker is handed over to that worker instead (see gateway.handoff).
"""

from __future__ import annotations

import errno
import hmac
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import trio

from gateway.router import ClientCtx, Result, release_client, to_bytes
from gateway.sockio import Wire
from proto import commands as c
from proto.errors import AuthenticationRequired, InvalidRequest, InvalidToken, QueueError
from proto.framing import LineFramer
from shard.pending import Pending

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.tcp")

_MISSING: Any = object()
_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError
_Pending = Pending
_parse = c.parse_command
_PULLS = (c.Pull, c.PullBatch)
_EOF_GRACE_S = 5.0


def _with_req_id(reply: bytes, req_id: Any) -> bytes:
    return reply[:-1] + b',"reqId":' + _dumps(req_id) + b"}\n"


def check_token(token: str, tokens: tuple[str, ...]) -> bool:
    """Constant-time check against every configured token (no early exit)."""
    given = token.encode()
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(given, t.encode())
    return ok


class ClientConn:
    __slots__ = (
        "authed",
        "batching",
        "ctx",
        "framer",
        "fresh",
        "inflight",
        "initial",
        "node",
        "order",
        "parked",
        "wbuf",
        "wire",
    )

    def __init__(self, node: Node, sock: socket.socket, initial: bytes, authed: bool) -> None:
        self.node = node
        self.wire = Wire(sock)
        self.framer = LineFramer(node.config.limits.max_frame_bytes)
        self.ctx = ClientCtx(node.new_token())
        self.authed = authed or not node.config.auth_tokens
        self.order: deque[list[bytes | None]] = deque()
        self.parked: set[Pending[Result]] = set()
        self.inflight = 0  # replies owed that are not parked pulls
        self.fresh = node.handoff is not None  # may still be handed to another worker
        self.initial = initial
        self.wbuf: list[bytes] = []
        self.batching = False

    # ------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        handed = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.wire.writer)
                try:
                    handed = await self._read_loop()
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if not handed:
                self._release()
            await self.wire.aclose()

    def owes_replies(self) -> bool:
        return bool(self.order) or self.inflight > 0 or self.wire.pending_bytes > 0

    async def _read_loop(self) -> bool:
        """Read and answer until EOF or a fatal framing error. True if handed off."""
        wire = self.wire
        framer = self.framer
        high = self.node.config.client_write_high_water
        data = self.initial
        self.initial = b""
        while True:
            if data:
                lines = framer.feed(data)
                if lines:
                    if self.fresh:
                        if await self._first_lines(lines):
                            return True
                    else:
                        self.batching = True
                        try:
                            handle = self._handle
                            for line in lines:
                                handle(line)
                        finally:
                            self._flush()
                if framer.overflowed:
                    self._reply(_MISSING, framer.error(), False)
                    await self._settle_before_close()
                    return False
                if wire.pending_bytes > high:
                    await wire.wait_drained(high)
            if self.node.stopping:
                await self._settle_before_close()
                return False
            data = await wire.recv()
            if not data:
                await self._settle_before_close()
                return False

    async def _settle_before_close(self) -> None:
        """The client stopped sending: answer what is in flight (not parked pulls), briefly."""
        for p in list(self.parked):
            p.cancel()
        with trio.move_on_after(_EOF_GRACE_S):
            while (self.inflight or self.wire.pending_bytes) and not self.wire.broken:
                await trio.sleep(0.005)

    async def _first_lines(self, lines: list[bytes]) -> bool:
        """Process lines while the connection may still be handed off. True if it was."""
        for i, line in enumerate(lines):
            if not self.fresh:
                self.batching = True
                try:
                    for rest in lines[i:]:
                        self._handle(rest)
                finally:
                    self._flush()
                return False
            target = self._handle(line, handoff=True)
            self._flush()
            if target is not None:
                ho = self.node.handoff
                assert ho is not None
                remaining = b"\n".join(lines[i:]) + b"\n" + self.framer.buffered()
                if await ho.send(target, self.wire.sock, remaining, self.authed):
                    return True
                self.fresh = False
                self._handle(line)
                self._flush()
        return False

    def _release(self) -> None:
        release_client(self.node, self.ctx, self.parked)
        self.parked.clear()

    # ------------------------------------------------------------ requests

    def _handle(self, line: bytes, handoff: bool = False) -> int | None:
        try:
            obj = _loads(line)
        except _JSONDecodeError as e:
            self._reply(_MISSING, InvalidRequest(f"malformed JSON: {e}"), False)
            return None
        rid = obj.get("reqId", _MISSING) if type(obj) is dict else _MISSING
        node = self.node
        try:
            cmd = _parse(obj, node.config.limits)
        except QueueError as e:
            self._reply(rid, e, False)
            return None
        if type(cmd) is c.Auth:
            self._reply(rid, self._auth(cmd), False)
            return None
        if not self.authed:
            self._reply(rid, AuthenticationRequired(), False)
            return None
        if handoff:
            owner = node.router.owner(cmd)
            if owner is not None and owner != node.index and not self.owes_replies():
                return owner
        if cmd.route != "all":
            # A command over every shard (STATS, LISTQUEUES...) leaves nothing behind on this
            # worker, so the connection may still go to the owner of its first queue.
            self.fresh = False
        res = node.router.submit(cmd, line, self.ctx)
        self._reply(rid, res, type(cmd) in _PULLS)
        return None

    def _auth(self, cmd: c.Auth) -> Result:
        tokens = self.node.config.auth_tokens
        if not tokens or check_token(cmd.token, tokens):
            self.authed = True
            return {"ok": True}
        return InvalidToken()

    # ------------------------------------------------------------ replies

    def _reply(self, rid: Any, res: Result | Pending[Result], pull: bool) -> None:
        if type(res) is _Pending:
            pend: Pending[Result] = res
            if pull:
                self.parked.add(pend)
            else:
                self.inflight += 1
            if rid is _MISSING:
                slot: list[bytes | None] = [None]
                self.order.append(slot)
                pend.then(lambda v: self._fill(slot, v, pend, pull))
            else:
                pend.then(lambda v: self._late(v, rid, pend, pull))
            return
        b = to_bytes(res)  # type: ignore[arg-type]
        if rid is not _MISSING:
            self._emit(_with_req_id(b, rid))
        elif self.order:
            self.order.append([b + b"\n"])
        else:
            self._emit(b + b"\n")

    def _done(self, pend: Pending[Result], pull: bool) -> None:
        if pull:
            self.parked.discard(pend)
        else:
            self.inflight -= 1

    def _fill(self, slot: list[bytes | None], v: Result, pend: Pending[Result], pull: bool) -> None:
        self._done(pend, pull)
        slot[0] = to_bytes(v) + b"\n"
        order = self.order
        while order and order[0][0] is not None:
            b = order.popleft()[0]
            assert b is not None
            self._emit(b)

    def _late(self, v: Result, rid: Any, pend: Pending[Result], pull: bool) -> None:
        self._done(pend, pull)
        self._emit(_with_req_id(to_bytes(v), rid))

    def _emit(self, b: bytes) -> None:
        if self.batching:
            self.wbuf.append(b)
        else:
            self.wire.write(b)

    def _flush(self) -> None:
        self.batching = False
        if self.wbuf:
            buf = self.wbuf
            self.wire.write(buf[0] if len(buf) == 1 else b"".join(buf))
            self.wbuf = []


# ---------------------------------------------------------------- listeners


def bind_tcp(host: str, port: int) -> socket.socket:
    """A SO_REUSEPORT listener: every worker binds its own and the kernel spreads connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(4096)
    s.setblocking(False)
    return s


_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


async def accept_loop(node: Node, lsock: socket.socket, tcp: bool) -> None:
    """Accept until the listener is closed; survive fd exhaustion by pausing."""
    while True:
        try:
            sock, _ = lsock.accept()
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_readable(lsock)
            except trio.ClosedResourceError:
                return
            continue
        except OSError as e:
            if e.errno in _TRANSIENT_ACCEPT:
                log.error("accept: %s; pausing 100 ms", e)
                await trio.sleep(0.1)
                continue
            if node.stopping or e.errno == errno.EBADF:
                return
            raise
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        node.spawn_client(sock, b"", False)
