"""The one crossing between the gRPC server's asyncio thread and the worker's trio thread.

grpcio's asyncio server cannot run inside trio, so each worker runs it on a thread of its own
(see `gateway.grpc.service`). Everything the gRPC side asks of the cluster goes through a
`Bridge`, and nothing else on that side touches trio or the node:

- **asyncio -> trio**: `TrioToken.run_sync_soon(fn, ...)` queues a plain function on the trio
  thread. It never blocks the asyncio loop (unlike `trio.from_thread.run`), and calls run in the
  order they were queued, so one consumer's requests keep their order exactly like the lines of
  one TCP connection.
- **trio -> asyncio**: the trio side resolves an asyncio future with
  `loop.call_soon_threadsafe`. The value is a router `Result` (a reply dict, reply JSON bytes
  from another worker, or a QueueError); the asyncio side turns it into a dict or raises it.
- Both directions go through a `_Mailbox`: calls queue up under a lock and at most one wake-up
  of the other thread is in flight, so a burst of concurrent RPCs (or of replies) costs one
  wake-up of the other loop, not one per call. Order is kept: a mailbox is a FIFO.

A request is routed exactly like a TCP line: the asyncio side builds the TCP-style JSON object,
validates it with `proto.commands.parse_command` (pure, so it runs there and bad input never
costs the trio thread anything) and encodes the raw line only when the owner is another worker
(the line is what travels over the link); on the trio thread `Router.submit` runs it locally or
forwards it, and a `Pending` answer is resolved back to the future with `.then()`.

Ownership of pulled jobs (the lost-worker rule of PROTOCOL.md):
- A **consumer** (a StreamJobs or ProcessJobs call) has one owner token from `Node.new_token()`
  in a `ClientCtx`, created on the trio thread on first use. When the call ends, `close()`
  cancels its parked pulls and fails every job it holds with `Worker connection lost`, on this
  worker and on each worker it pulled from (`gateway.router.release_client`, shared with TCP).
- A **unary Pull/PullBatch** gets a fresh token of its own, so that if its caller goes away
  (cancel, deadline) before the answer is delivered, the parked pull is cancelled and any job
  already handed to it goes back to the queue instead of staying active until its timeout.
- Every other unary call runs with an anonymous context (it pulls nothing).

If the trio run is already over (the worker is exiting), requests fail with `ShuttingDown`, and
new pulls are refused the same way once the node has begun to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import trio

from gateway.router import ClientCtx, Result, release_client, route_shard, to_obj
from proto import commands as c
from proto.errors import ShuttingDown
from shard.pending import Pending
from shard.routing import owner_of
from shard.runtime import Ctx

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.grpc")

_PULLS = (c.Pull, c.PullBatch)


class Consumer:
    """One streaming consumer. Opaque to the asyncio side; its fields live on the trio thread."""

    __slots__ = ("closed", "ctx", "parked")

    def __init__(self) -> None:
        self.ctx: ClientCtx | None = None
        self.parked: set[Pending[Result]] = set()
        self.closed = False


class _Op:
    """One request in flight. `fut` belongs to the asyncio side, the rest to the trio side."""

    __slots__ = ("ctx", "fut", "pending")

    def __init__(self, fut: asyncio.Future[Result]) -> None:
        self.fut = fut
        self.pending: Pending[Result] | None = None
        self.ctx: ClientCtx | None = None  # the per-call owner of a unary pull


Call = tuple[Callable[..., None], tuple[Any, ...]]


class _Mailbox:
    """Calls from one thread to run on another, in order, with at most one wake-up in flight.

    `wake(drain)` asks the other thread to run `drain` (`TrioToken.run_sync_soon` or
    `loop.call_soon_threadsafe`); `drain` takes everything queued so far. A call queued while a
    wake-up is pending rides along with it. If the other side is gone (`wake` raises), what is
    queued can never run: it is dropped and the error is raised to the caller.
    """

    __slots__ = ("_armed", "_calls", "_lock", "_wake")

    def __init__(self, wake: Callable[[Callable[[], None]], object]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._armed = False

    def put(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._calls.append((fn, args))
            if self._armed:
                return
            self._armed = True
        try:
            self._wake(self.drain)
        except BaseException:
            with self._lock:
                self._calls.clear()
                self._armed = False
            raise

    def drain(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
            self._armed = False
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:  # never let one call break the loop that drains (trio's run)
                log.exception("bridged call %s failed", getattr(fn, "__name__", fn))


def _settle(fut: asyncio.Future[Result], value: Result) -> None:
    if not fut.done():  # a cancelled caller has stopped caring
        fut.set_result(value)


def _settle_exc(fut: asyncio.Future[Result], exc: Exception) -> None:
    if not fut.done():
        fut.set_exception(exc)


class Bridge:
    """Built on the trio thread (it captures the trio token); used from the asyncio thread."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._token = trio.lowlevel.current_trio_token()
        # Immutable facts the asyncio side may read: the limits and the shard map.
        self.limits = node.config.limits
        self._index = node.index
        self._workers = node.workers
        self._anon = Ctx()
        self._to_trio = _Mailbox(self._token.run_sync_soon)
        self._to_asyncio: _Mailbox | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The gRPC thread's loop, where answers are delivered. Called before serving."""
        self._to_asyncio = _Mailbox(loop.call_soon_threadsafe)

    # ------------------------------------------------------------ asyncio side

    async def call(self, obj: dict[str, Any], consumer: Consumer | None = None) -> dict[str, Any]:
        """Run one TCP-style command; its reply dict, or raise its QueueError."""
        cmd = c.parse_command(obj, self.limits)
        shard = route_shard(cmd)
        remote = shard is not None and owner_of(shard, self._workers) != self._index
        raw = orjson.dumps(obj) if remote else b""
        op = _Op(asyncio.get_running_loop().create_future())
        self._soon(self._start, cmd, raw, op, consumer)
        try:
            res = await op.fut
        except asyncio.CancelledError:
            with contextlib.suppress(ShuttingDown):
                self._soon(self._abandon, op)
            raise
        return to_obj(res)

    def consumer(self) -> Consumer:
        return Consumer()

    def close(self, consumer: Consumer) -> None:
        """The consumer's call is over: give back what it holds (fire and forget)."""
        with contextlib.suppress(ShuttingDown):
            self._soon(self._close, consumer)

    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._to_trio.put(fn, *args)
        except trio.RunFinishedError:
            raise ShuttingDown() from None

    # ------------------------------------------------------------ trio side
    #
    # These run from the trio mailbox's drain, a `run_sync_soon` callback: an exception escaping
    # one would crash the whole trio run (the worker), so each catches everything, logs it and
    # answers what it can.

    def _deliver(self, op: _Op, value: Result) -> None:
        """Hand a result to the asyncio side."""
        self._post(_settle, op.fut, value)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        box = self._to_asyncio
        if box is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                box.put(fn, *args)

    def _start(self, cmd: c.Command, raw: bytes, op: _Op, consumer: Consumer | None) -> None:
        try:
            self._submit(cmd, raw, op, consumer)
        except Exception as e:
            log.exception("gRPC request %s failed", cmd.name)
            self._post(_settle_exc, op.fut, e)

    def _submit(self, cmd: c.Command, raw: bytes, op: _Op, consumer: Consumer | None) -> None:
        node = self._node
        pull = type(cmd) in _PULLS
        if pull and (node.stopping or (consumer is not None and consumer.closed)):
            self._deliver(op, ShuttingDown())
            return
        ctx: Ctx
        if consumer is not None:
            if consumer.ctx is None:
                consumer.ctx = ClientCtx(node.new_token())
            ctx = consumer.ctx
        elif pull:
            ctx = op.ctx = ClientCtx(node.new_token())
        else:
            ctx = self._anon
        res = node.router.submit(cmd, raw, ctx)
        if type(res) is Pending:
            pend: Pending[Result] = res
            op.pending = pend
            if consumer is not None and pull:
                consumer.parked.add(pend)

                def done(v: Result) -> None:
                    consumer.parked.discard(pend)
                    self._deliver(op, v)

            else:

                def done(v: Result) -> None:
                    self._deliver(op, v)

            pend.then(done)
        else:
            self._deliver(op, res)  # type: ignore[arg-type]  # not a Pending here

    def _abandon(self, op: _Op) -> None:
        """The caller went away before its answer arrived (or before it read it)."""
        try:
            if op.pending is not None:
                op.pending.cancel()
            if op.ctx is not None:  # a unary pull: jobs handed to it never reached anybody
                release_client(self._node, op.ctx, ())
        except Exception:
            log.exception("releasing an abandoned gRPC pull failed")

    def _close(self, consumer: Consumer) -> None:
        consumer.closed = True
        try:
            if consumer.ctx is not None:
                release_client(self._node, consumer.ctx, consumer.parked)
        except Exception:
            log.exception("releasing a gRPC consumer's jobs failed")
        consumer.parked.clear()
