"""`magicqueue.QueueService`: the RPC handlers. They run on the gRPC thread's asyncio loop.

Each handler checks the caller's token, turns its request into the TCP command
(`gateway.grpc.convert`), runs it through the `Bridge` and turns the reply into the response
message. A `QueueError` ends the call with the status code its class names (`.grpc_code`) and
the message a TCP client would read; anything else is a bug, logged by grpcio, and the caller
gets UNKNOWN.

Auth: when `AUTH_TOKENS` is set, every call must carry `authorization: Bearer <token>` metadata
(compared in constant time, like TCP's AUTH). fix: the original's gRPC API had no auth.

The two streaming consumers each run two asyncio tasks side by side, ended together:
- StreamJobs: a *puller* takes up to `batch_size` jobs per PULLB while fewer than `prefetch`
  jobs wait to be written, and a *writer* writes them to the stream (HTTP/2 flow control makes
  it wait for a slow reader, which in turn stops the puller).
- ProcessJobs: a *feeder* pulls as many jobs as there is room for (`prefetch` minus the jobs in
  hand) and writes them; a *reader* applies each JobResult (ACK or FAIL) and makes room.
When the call ends for any reason (client cancel or disconnect, keepalive timeout, error,
server stop), `Bridge.close` cancels the consumer's parked pull and sends every job still in its
hand back to the queue (failed with `Worker connection lost`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import grpc

from gateway.grpc import convert
from gateway.grpc.bridge import Bridge, Consumer
from gateway.tcp import check_token
from proto.errors import (
    AuthenticationRequired,
    InvalidRequest,
    InvalidToken,
    JobNotFound,
    QueueError,
)

log = logging.getLogger("magicqueue.grpc")

QUEUE_METADATA = "x-queue"
PREFETCH_METADATA = "x-prefetch"
PROCESS_DEFAULT_PREFETCH = 1  # ProcessJobs: jobs in hand at once unless the client asks more


async def abort(context: Any, e: QueueError) -> NoReturn:
    """End the call with the status code of the error's class and its wire message."""
    await context.abort(grpc.StatusCode[e.grpc_code], e.message)
    raise AssertionError("unreachable: abort() raises")  # pragma: no cover


def _window(value: int, name: str, limit: int) -> int:
    if not 1 <= value <= limit:
        raise InvalidRequest(f"field '{name}' must be an integer in [1, {limit}]")
    return value


async def _together(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines as tasks until the first one ends; cancel the rest; re-raise errors."""
    tasks = [asyncio.ensure_future(co) for co in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]  # checked just above


class QueueServicer:
    """The handlers, which grpcio finds by method name (CamelCase, as in the .proto)."""

    def __init__(self, bridge: Bridge, pb2: Any, auth_tokens: tuple[str, ...]) -> None:
        self._bridge = bridge
        self._pb = pb2
        self._tokens = auth_tokens

    # ------------------------------------------------------------ plumbing

    def _auth_error(self, context: Any) -> QueueError | None:
        if not self._tokens:
            return None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, token = str(value).strip().partition(" ")
                if scheme.lower() == "bearer" and check_token(token.strip(), self._tokens):
                    return None
                return InvalidToken()
        return AuthenticationRequired()

    async def _unary(
        self,
        context: Any,
        make: Callable[[], dict[str, Any]],
        build: Callable[[dict[str, Any]], Any],
    ) -> Any:
        err = self._auth_error(context)
        if err is None:
            try:
                return build(await self._bridge.call(make()))
            except QueueError as e:
                err = e
        await abort(context, err)

    def _job(self, j: dict[str, Any]) -> Any:
        return convert.job_message(self._pb, j)

    # ------------------------------------------------------------ unary

    async def Push(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: convert.push(request),
            lambda r: self._pb.PushResponse(ok=True, id=r["id"]),
        )

    async def PushBatch(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: convert.push_batch(request),
            lambda r: self._pb.PushBatchResponse(ok=True, ids=r["ids"]),
        )

    async def Pull(self, request: Any, context: Any) -> Any:
        def build(r: dict[str, Any]) -> Any:
            job = r["job"]
            return self._pb.Job() if job is None else self._job(job)  # id 0: no job

        return await self._unary(context, lambda: convert.pull(request), build)

    async def PullBatch(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: convert.pull_batch(request),
            lambda r: self._pb.PullBatchResponse(jobs=[self._job(j) for j in r["jobs"]]),
        )

    async def Ack(self, request: Any, context: Any) -> Any:
        result = request.result if request.HasField("result") else None
        return await self._unary(
            context,
            lambda: convert.ack(request.id, result),
            lambda r: self._pb.AckResponse(ok=True),
        )

    async def AckBatch(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: {"cmd": "ACKB", "ids": list(request.ids)},
            lambda r: self._pb.AckBatchResponse(ok=True, acked=r["ids"][0]),
        )

    async def Fail(self, request: Any, context: Any) -> Any:
        error = request.error if request.HasField("error") else None
        return await self._unary(
            context,
            lambda: convert.fail(request.id, error),
            lambda r: self._pb.FailResponse(ok=True),
        )

    async def GetJob(self, request: Any, context: Any) -> Any:
        def build(r: dict[str, Any]) -> Any:
            job, state = r["job"], r["state"]
            if job is None and state == "unknown":
                raise JobNotFound(request.id)
            return self._pb.GetJobResponse(
                job=None if job is None else self._job(job), state=convert.state_number(state)
            )

        return await self._unary(context, lambda: {"cmd": "GETJOB", "id": request.id}, build)

    async def GetState(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: {"cmd": "GETSTATE", "id": request.id},
            lambda r: self._pb.GetStateResponse(id=r["id"], state=convert.state_number(r["state"])),
        )

    async def Stats(self, request: Any, context: Any) -> Any:
        return await self._unary(
            context,
            lambda: {"cmd": "STATS"},
            lambda r: self._pb.StatsResponse(
                queued=r["queued"],
                processing=r["processing"],
                delayed=r["delayed"],
                dlq=r["dlq"],
                waiting_children=r.get("waiting_children", 0),
            ),
        )

    # ------------------------------------------------------------ streaming consumers

    async def StreamJobs(self, request: Any, context: Any) -> None:
        err = self._auth_error(context)
        if err is not None:
            await abort(context, err)
        limit = self._bridge.limits.max_batch
        try:
            batch = _window(request.batch_size or 1, "batch_size", limit)
            prefetch = _window(request.prefetch or batch, "prefetch", limit)
        except QueueError as e:
            await abort(context, e)
        queue = request.queue
        bridge = self._bridge
        consumer = bridge.consumer()
        out: asyncio.Queue[Any] = asyncio.Queue()
        room = asyncio.Event()
        room.set()
        buffered = 0  # pulled, not yet handed to the transport

        async def puller() -> None:
            nonlocal buffered
            while True:
                await room.wait()
                n = min(batch, prefetch - buffered)
                reply = await bridge.call({"cmd": "PULLB", "queue": queue, "count": n}, consumer)
                jobs = reply["jobs"]
                buffered += len(jobs)
                if buffered >= prefetch:
                    room.clear()
                for j in jobs:
                    out.put_nowait(self._job(j))

        async def writer() -> None:
            nonlocal buffered
            while True:
                msg = await out.get()
                await context.write(msg)
                buffered -= 1
                if buffered < prefetch:
                    room.set()

        await self._consume(context, consumer, puller(), writer())

    async def ProcessJobs(self, request_iterator: Any, context: Any) -> None:
        # Only context.read() is used: grpcio forbids mixing it with iterating request_iterator.
        err = self._auth_error(context)
        if err is not None:
            await abort(context, err)
        try:
            queue, prefetch = await self._subscription(context)
        except QueueError as e:
            await abort(context, e)
        if queue is None:  # the client closed its side before subscribing
            return
        bridge = self._bridge
        consumer = bridge.consumer()
        in_hand: set[int] = set()
        room = asyncio.Event()
        room.set()

        async def feeder() -> None:
            while True:
                await room.wait()
                n = prefetch - len(in_hand)
                reply = await bridge.call({"cmd": "PULLB", "queue": queue, "count": n}, consumer)
                jobs = reply["jobs"]
                in_hand.update(j["id"] for j in jobs)
                if len(in_hand) >= prefetch:
                    room.clear()
                for j in jobs:
                    await context.write(self._job(j))

        async def reader() -> None:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    return  # the client is done: the call ends, unfinished jobs go back
                if msg.HasField("queue"):
                    raise InvalidRequest("only the first ProcessJobs message may name a queue")
                if msg.success:
                    res = msg.result if msg.HasField("result") else None
                    obj = convert.ack(msg.id, res)
                else:
                    obj = convert.fail(msg.id, msg.error if msg.HasField("error") else None)
                try:
                    await bridge.call(obj)
                except QueueError as e:
                    # A result for a job that is no longer active (timed out, already
                    # answered): nothing to do, like a late ACK over TCP. Other errors
                    # (bad input, persistence down) end the call so the client knows.
                    if e.grpc_code != "NOT_FOUND":
                        raise
                    log.debug("ProcessJobs result for job %d ignored: %s", msg.id, e.message)
                if msg.id in in_hand:
                    in_hand.discard(msg.id)
                    if len(in_hand) < prefetch:
                        room.set()

        await self._consume(context, consumer, feeder(), reader())

    async def _subscription(self, context: Any) -> tuple[str | None, int]:
        """ProcessJobs' queue and prefetch: from the metadata, else from the first message."""
        limit = self._bridge.limits.max_batch
        md = {k: v for k, v in context.invocation_metadata() or ()}
        queue: str | None = md.get(QUEUE_METADATA)
        prefetch = PROCESS_DEFAULT_PREFETCH
        raw = md.get(PREFETCH_METADATA)
        if raw is not None:
            try:
                prefetch = int(raw)
            except ValueError:
                raise InvalidRequest(f"metadata '{PREFETCH_METADATA}' must be an integer") from None
            _window(prefetch, PREFETCH_METADATA, limit)
        if queue is not None:
            return queue, prefetch
        first = await context.read()
        if first is grpc.aio.EOF:
            return None, prefetch
        if not first.HasField("queue"):
            raise InvalidRequest(
                f"ProcessJobs needs a queue: send '{QUEUE_METADATA}' metadata or a first "
                "message with 'queue' set"
            )
        if first.HasField("prefetch"):
            prefetch = _window(first.prefetch, "prefetch", limit)
        return first.queue, prefetch

    async def _consume(
        self,
        context: Any,
        consumer: Consumer,
        a: Coroutine[Any, Any, None],
        b: Coroutine[Any, Any, None],
    ) -> None:
        try:
            await _together(a, b)
        except QueueError as e:
            await abort(context, e)
        finally:
            self._bridge.close(consumer)
