"""`Worker`: pull jobs from one queue and run a handler on each, `concurrency` at a time.

Theory of operation
- **One connection.** The worker pulls, acks, fails and reports progress over one
  `AsyncClient` (its own, or one it is given); the client multiplexes, so a pull waiting on the
  server never delays an ack.
- **Three kinds of task.** A *pull loop* asks for as many jobs as there are free slots
  (`PULLB count=free`) with a server-side timeout (`poll_timeout`), so an idle worker still
  looks up regularly to notice a stop, and queues what it gets. `concurrency` long-lived *slot*
  tasks take jobs from that queue and run the handler (long-lived slots rather than a task per
  job: spawning is the biggest per-job cost on this stack). One *settler* sends the outcomes.
- **A pull that has been sent is never cancelled**: its reply may already carry jobs, and a
  cancelled pull could only give them back with FAIL, costing them an attempt. So the pull is
  shielded, and a stop takes effect when it returns (within `poll_timeout`); jobs that arrive
  then are processed like any others.
- **Outcomes.** The handler's return value is the result (it must be JSON-serialisable). An
  exception fails the job with FAIL and the error text `"<Type>: <message>"`, a blank line and
  the traceback, trimmed to fit the server's 64 KiB limit; a result that cannot be encoded
  fails the job too. A slot hands the outcome to the settler and takes the next job at once,
  so the next pull travels while the ACK/FAIL is on its way. The settler sends everything that
  gathered since its last round in one write: one ACKB for all `None` results, plus an ACK per
  other result and a FAIL per failure. At most `concurrency` jobs may be waiting for their
  ACK/FAIL answer on top of the `concurrency` being worked on.
- **Never losing a job.** Every job the worker pulls gets exactly one outcome, and the settler
  sends every outcome it was given before `run()` returns: it runs shielded from cancellation
  (each round bounded by `settle_timeout`). If the connection is gone by then, the server has
  already failed the job with `Worker connection lost` and retries it by its rules: still not
  lost. A refused ACK/FAIL (the job timed out meanwhile) is logged and counted.
- **Stopping.** `stop()`, or SIGTERM/SIGINT when `handle_signals` is on and the worker runs in
  the main thread: no new pulls; jobs in hand get `grace` seconds to finish; then the handlers
  still running are cancelled and their jobs (and any not started) failed back with
  `Worker shut down before the job finished`, so they are retried elsewhere. A second signal
  skips the rest of the grace period. An async handler is cancelled at its next `await`; a
  sync handler's thread cannot be interrupted, so it is abandoned: its job is failed back and
  the thread runs to its end on its own (the interpreter waits for it at exit unless the
  script ends with `os._exit`).
- **Handlers** are `def` or `async def` functions of `(job)` or `(job, ctx)`. Sync handlers run
  in worker threads (`anyio.to_thread.run_sync`, limited to `concurrency` threads) so they never
  block the event loop. `ctx.progress(percent, message)` reports progress: awaitable for async
  handlers, a plain blocking call for sync ones.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import orjson

from magicqueue_client import _protocol as P
from magicqueue_client.async_client import AsyncClient
from magicqueue_client.client import Client
from magicqueue_client.errors import AuthenticationFailed, InvalidRequest, MagicQueueError
from magicqueue_client.settings import ConnectionSettings
from magicqueue_client.types import Job

log = logging.getLogger("magicqueue_client.worker")

# The server keeps FAIL errors up to 64 KiB (MAX_ERROR_BYTES); stay safely below it.
MAX_ERROR_BYTES = 60 * 1024
_HEAD_BYTES = 8 * 1024  # of an oversized error, the part kept from its start
SHUTDOWN_ERROR = "Worker shut down before the job finished"

Handler = Callable[..., Any]

# Outcome kinds, as the settler sends them.
_ACK = 0  # ACK with a result (encoded JSON), or through ACKB when the result is None
_FAIL = 1  # FAIL with the error text, counted as a handler failure
_GIVE_BACK = 2  # FAIL at shutdown


@dataclass
class WorkerStats:
    pulled: int = 0
    completed: int = 0  # handler returned; ACK/ACKB answered
    failed: int = 0  # handler raised (or returned something unencodable); FAIL answered
    given_back: int = 0  # failed back at shutdown
    settle_errors: int = 0  # an ACK/FAIL refused or lost (job timed out, connection dropped)


class JobContext:
    """The second argument of an async handler: `await ctx.progress(50, "halfway")`."""

    __slots__ = ("_worker", "job")

    def __init__(self, worker: Worker, job: Job) -> None:
        self._worker = worker
        self.job = job

    async def progress(self, percent: int, message: str | None = None) -> None:
        """Report progress (0..100). Raises `JobNotFound` if the job is no longer active."""
        await self._worker.client.progress(self.job.id, percent, message)

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down (long handlers may want to wrap up)."""
        return self._worker.stopping


class SyncJobContext:
    """The second argument of a sync handler: `ctx.progress(50, "halfway")` (blocking)."""

    __slots__ = ("_worker", "job")

    def __init__(self, worker: Worker, job: Job) -> None:
        self._worker = worker
        self.job = job

    def progress(self, percent: int, message: str | None = None) -> None:
        """Report progress (0..100) from the handler's thread; blocks until the server answers."""
        anyio.from_thread.run(self._worker.client.progress, self.job.id, percent, message)

    @property
    def stopping(self) -> bool:
        return self._worker.stopping


def format_error(e: BaseException) -> str:
    """`"<Type>: <message>"`, a blank line and the traceback, trimmed to MAX_ERROR_BYTES."""
    head = f"{type(e).__name__}: {e}"
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    text = f"{head}\n\n{tb}"
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= MAX_ERROR_BYTES:
        return text
    marker = b"\n[... trimmed ...]\n"
    tail_room = MAX_ERROR_BYTES - _HEAD_BYTES - len(marker)
    kept = raw[:_HEAD_BYTES] + marker + raw[-tail_room:]
    return kept.decode("utf-8", errors="ignore")


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


def _is_async_callable(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _takes_context(fn: Any) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class Worker:
    """Run `handler` on the jobs of `queue`, `concurrency` at a time.

    `connection` is an `AsyncClient` (used as is; opened for the run if it is not open), a
    `Client` (its settings are used to open an `AsyncClient`) or `ConnectionSettings`.
    Run it with `await worker.run()` (asyncio or trio) or `worker.run_sync()` in a script.
    """

    def __init__(
        self,
        connection: AsyncClient | Client | ConnectionSettings,
        queue: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        poll_timeout: float = 1.0,
        grace: float = 30.0,
        settle_timeout: float = 10.0,
        handle_signals: bool = True,
        pass_context: bool | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if poll_timeout < 0 or grace < 0 or settle_timeout <= 0:
            raise ValueError("poll_timeout and grace must be >= 0 and settle_timeout > 0")
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.connection = connection
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.poll_timeout = poll_timeout
        self.grace = grace
        self.settle_timeout = settle_timeout
        self.handle_signals = handle_signals
        self.is_async = _is_async_callable(handler)
        self.pass_context = _takes_context(handler) if pass_context is None else pass_context
        self.stats = WorkerStats()
        self.stopping = False
        self._forced = False
        self._started = False
        self._client: AsyncClient | None = None
        # Jobs pulled and not yet settled (acked or failed, answer received).
        self._in_hand: dict[int, Job] = {}
        # Jobs pulled whose handler has not returned yet (queued or running).
        self._unfinished = 0
        self._queue: deque[Job] = deque()
        self._no_more_jobs = False
        self._jobs_ready: anyio.Event | None = None  # an idle slot waits on it
        self._change: anyio.Event | None = None  # the main task waits on it
        self._outbox: list[tuple[int, Job, Any]] = []  # (kind, job, encoded result | error)
        self._settler_wake: anyio.Event | None = None
        self._settle_closing = False
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("the worker is not running")
        return self._client

    @property
    def in_hand(self) -> int:
        """Jobs pulled and not yet acked or failed."""
        return len(self._in_hand)

    # ------------------------------------------------------------ control

    def stop(self, force: bool = False) -> None:
        """Stop pulling and finish the jobs in hand (within `grace`); `force` skips the grace.

        Call it from the worker's event loop (a handler, another task, a signal); from another
        thread use `anyio.from_thread.run_sync(worker.stop)`.
        """
        self.stopping = True
        if force:
            self._forced = True
        self._notify()

    def _notify(self) -> None:
        """Wake the main task if it waits for a change (free slots, jobs settled, a stop)."""
        ev = self._change
        if ev is not None:
            self._change = None
            ev.set()

    async def _wait_change(self) -> None:
        ev = self._change
        if ev is None:
            ev = self._change = anyio.Event()
        await ev.wait()

    def run_sync(
        self, backend: str = "asyncio", backend_options: dict[str, Any] | None = None
    ) -> None:
        """Run the worker to the end in a new event loop (asyncio unless told otherwise)."""
        anyio.run(self.run, backend=backend, backend_options=backend_options)

    async def run(self) -> None:
        """Pull and process jobs until `stop()` (or a signal); returns once every job pulled
        has been acked or failed back."""
        if self._started:
            raise RuntimeError("a Worker runs once")
        self._started = True
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        try:
            await self._run()
        except BaseExceptionGroup as eg:
            # Task groups wrap what escapes them; a single error (a refused pull, a failed
            # connection) is clearer on its own.
            leaves = _leaves(eg)
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                raise leaves[0] from None
            raise
        log.info("worker for %r stopped: %s", self.queue, self.stats)

    async def _run(self) -> None:
        async with AsyncExitStack() as stack:
            self._client = await self._open_client(stack)
            async with anyio.create_task_group() as helpers:
                signals: anyio.CancelScope | None = None
                if self.handle_signals and threading.current_thread() is threading.main_thread():
                    signals = await helpers.start(self._watch_signals)
                helpers.start_soon(self._settler)
                try:
                    await self._work()
                finally:
                    # Every job now has its outcome in the outbox; the settler sends them all
                    # and returns, and the helper group ends with it.
                    self._settle_closing = True
                    self._wake_settler()
                    if signals is not None:
                        signals.cancel()

    async def _work(self) -> None:
        try:
            async with anyio.create_task_group() as slots:
                for _ in range(self.concurrency):
                    slots.start_soon(self._slot)
                await self._pull_loop()
                # Stopping: the slots drain the queue; the jobs in hand get the grace period.
                self._no_more_jobs = True
                self._wake_slots()
                with anyio.move_on_after(self.grace):
                    while self._unfinished and not self._forced:
                        await self._wait_change()
                if self._unfinished:
                    log.warning("grace over: failing back %d jobs in hand", self._unfinished)
                slots.cancel_scope.cancel()  # running handlers give their jobs back
        finally:
            while self._queue:  # pulled, never started
                self._give_back(self._queue.popleft())

    async def _open_client(self, stack: AsyncExitStack) -> AsyncClient:
        c = self.connection
        if isinstance(c, AsyncClient):
            return c if c.is_open else await stack.enter_async_context(c)
        settings = c.settings if isinstance(c, Client) else c
        return await stack.enter_async_context(AsyncClient(settings=settings))

    async def _watch_signals(self, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with (
            anyio.CancelScope() as scope,
            anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        ):
            task_status.started(scope)
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping:
                    log.info("%s: stopping after the jobs in hand (grace %s s)", name, self.grace)
                    self.stop()
                else:
                    log.warning("%s again: failing back the jobs in hand now", name)
                    self.stop(force=True)

    # ------------------------------------------------------------ pulling

    async def _pull_loop(self) -> None:
        client = self.client
        max_batch = client.settings.max_batch
        delay = 0.0
        while not self.stopping:
            free = min(
                self.concurrency - self._unfinished, 2 * self.concurrency - len(self._in_hand)
            )
            if free <= 0:
                await self._wait_change()
                continue
            try:
                # Connecting may be cancelled; a pull that has been sent may not (see header).
                await client.ensure_connected()
                with anyio.CancelScope(shield=True):
                    got = await client.pull_batch(
                        self.queue, min(free, max_batch), timeout=self.poll_timeout
                    )
            except (AuthenticationFailed, InvalidRequest):
                raise  # configuration errors: retrying cannot help
            except MagicQueueError as e:  # ConnectionLost, ServerUnavailable, ...
                delay = min(max(delay * 2, 0.05), 2.0)
                log.warning("pull from %r failed (%s); retrying in %.2f s", self.queue, e, delay)
                with anyio.move_on_after(delay):
                    while not self.stopping:
                        await self._wait_change()
                continue
            delay = 0.0
            if got:
                self.stats.pulled += len(got)
                self._unfinished += len(got)
                for job in got:
                    self._in_hand[job.id] = job
                self._queue.extend(got)
                self._wake_slots()

    def _wake_slots(self) -> None:
        ev = self._jobs_ready
        if ev is not None:
            self._jobs_ready = None
            ev.set()

    # ------------------------------------------------------------ processing

    async def _slot(self) -> None:
        queue = self._queue
        while True:
            if queue:
                await self._process(queue.popleft())
                continue
            if self._no_more_jobs:
                return
            ev = self._jobs_ready
            if ev is None:
                ev = self._jobs_ready = anyio.Event()
            await ev.wait()

    async def _invoke(self, job: Job) -> Any:
        if self.is_async:
            if self.pass_context:
                return await self.handler(job, JobContext(self, job))
            return await self.handler(job)
        if self.pass_context:
            return await anyio.to_thread.run_sync(
                self.handler,
                job,
                SyncJobContext(self, job),
                limiter=self._limiter,
                abandon_on_cancel=True,
            )
        return await anyio.to_thread.run_sync(
            self.handler, job, limiter=self._limiter, abandon_on_cancel=True
        )

    async def _process(self, job: Job) -> None:
        """Run the handler and hand its outcome to the settler (no await after the handler,
        so a cancellation can only interrupt the handler itself)."""
        try:
            result = await self._invoke(job)
        except Exception as e:
            self._finished(_FAIL, job, format_error(e))
            return
        except BaseException:  # cancelled (grace period over), or the process is going down
            self._give_back(job)
            raise
        if result is None:
            self._finished(_ACK, job, None)
            return
        try:
            encoded = orjson.dumps(result)
        except TypeError as e:
            self._finished(_FAIL, job, f"Result is not JSON-serialisable: {e}")
            return
        self._finished(_ACK, job, orjson.Fragment(encoded))

    def _give_back(self, job: Job) -> None:
        self._finished(_GIVE_BACK, job, SHUTDOWN_ERROR)

    def _finished(self, kind: int, job: Job, payload: Any) -> None:
        self._unfinished -= 1
        self._outbox.append((kind, job, payload))
        self._wake_settler()
        self._notify()

    # ------------------------------------------------------------ settling

    def _wake_settler(self) -> None:
        ev = self._settler_wake
        if ev is not None:
            self._settler_wake = None
            ev.set()

    async def _settler(self) -> None:
        # Shielded: outcomes already decided must reach the server even if run() is cancelled.
        with anyio.CancelScope(shield=True):
            while True:
                if not self._outbox:
                    if self._settle_closing:
                        return
                    ev = self._settler_wake = anyio.Event()
                    await ev.wait()
                    continue
                # Let the other slots that finish in this same pass join the round.
                await anyio.lowlevel.checkpoint()
                batch, self._outbox = self._outbox, []
                with anyio.move_on_after(self.settle_timeout) as scope:
                    await self._settle(batch)
                if scope.cancelled_caught:
                    self._settle_failed(batch, f"no answer within {self.settle_timeout} s")
                for _, job, _ in batch:
                    self._in_hand.pop(job.id, None)
                self._notify()

    async def _settle(self, batch: list[tuple[int, Job, Any]]) -> None:
        client = self.client
        max_batch = client.settings.max_batch
        plain = [job for kind, job, payload in batch if kind == _ACK and payload is None]
        others = [item for item in batch if item[0] != _ACK or item[2] is not None]
        bodies = [
            P.req("ACKB", ids=[j.id for j in plain[i : i + max_batch]])
            for i in range(0, len(plain), max_batch)
        ]
        for kind, job, payload in others:
            if kind == _ACK:
                bodies.append(P.req_ack(job.id, payload))
            else:
                bodies.append(P.req("FAIL", id=job.id, error=payload))
        try:
            answers = await client._call_many(bodies)
        except MagicQueueError as e:  # no connection could be made
            self._settle_failed(batch, str(e))
            return
        stats = self.stats
        n_ackb = len(bodies) - len(others)
        for i in range(n_ackb):
            chunk = plain[i * max_batch : (i + 1) * max_batch]
            a = answers[i]
            if isinstance(a, MagicQueueError):
                self._settle_failed([(_ACK, j, None) for j in chunk], a.message)
                continue
            acked = P.parsed(P.parse_count, a)
            stats.completed += acked
            if acked != len(chunk):
                # ACKB skips jobs that are no longer active (timed out meanwhile).
                stats.settle_errors += len(chunk) - acked
                log.warning(
                    "ACKB acked %d of %d jobs; the rest were no longer active", acked, len(chunk)
                )
        for (kind, job, _), a in zip(others, answers[n_ackb:], strict=True):
            if isinstance(a, MagicQueueError):
                self._settle_failed([(kind, job, None)], a.message)
            elif kind == _ACK:
                stats.completed += 1
            elif kind == _FAIL:
                stats.failed += 1
            else:
                stats.given_back += 1

    def _settle_failed(self, items: list[tuple[int, Job, Any]], why: str) -> None:
        # The job timed out on the server, or the connection dropped and the server failed it
        # as a lost worker: either way the server retries it by its rules; it is not lost.
        self.stats.settle_errors += len(items)
        what = ("ACK", "FAIL", "FAIL")
        for kind, job, _ in items:
            log.warning("%s of job %d not accepted: %s", what[kind], job.id, why)
