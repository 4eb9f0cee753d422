"""`AsyncClient`: many concurrent calls over one connection, on asyncio or trio (via anyio).

Theory of operation
- Every request carries a fresh integer `reqId`; the server echoes it and may answer out of
  order. A call registers a slot under its id, queues its line, and waits on the slot's event,
  so a blocking PULL never holds back the calls behind it.
- Per connection, two tasks run in the client's task group: a **writer** that sends whatever
  lines have queued up in one `send` (coalescing is what makes pipelining cheap; one writer also
  means no two tasks ever send at once), and a **reader** that splits lines, decodes them and
  wakes the slot named by each reply's `reqId`.
- **A dropped connection** (EOF, reset, send error) fails every call in flight on it with
  `ConnectionLost` at once: none hangs. The next call reconnects with backoff (see
  `ConnectionSettings`), sends AUTH first when a token is set, and carries on; the first
  connection of a client is not retried, so a wrong address fails fast. A call in flight at a
  drop may or may not have taken effect; jobs pulled on a dropped connection are failed by the
  server with `Worker connection lost` and retried by its rules.
- **Cancelling a pull** (a PULL/PULLB whose caller gave up, e.g. under `move_on_after`) cannot be
  taken back on the wire; if the server has already handed it jobs, the reply still comes. The
  client then gives those jobs back at once with FAIL (error `Pull abandoned by the client`),
  so they do not sit active until the connection closes; as any FAIL, this counts an attempt.
  A long-running consumer should pull with a timeout and not cancel (as `Worker` does).
- The client owns a task group, so it must be used as `async with AsyncClient(...) as c:`
  (enter and exit in the same task). Its tasks never raise into that scope: a failure of the
  connection only ever fails the calls that were using it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import anyio.abc

from magicqueue_client import _protocol as P
from magicqueue_client.errors import (
    ConnectionLost,
    JobFailed,
    JobNotFound,
    MagicQueueError,
    PartialBatch,
    WaitTimeout,
)
from magicqueue_client.settings import DEFAULT_PORT, Backoff, ConnectionSettings
from magicqueue_client.types import (
    CronEntry,
    Job,
    JobLookup,
    JobState,
    Metrics,
    ProgressInfo,
    QueueInfo,
    Stats,
)

log = logging.getLogger("magicqueue_client")

_READ_BYTES = 256 * 1024
ABANDONED_PULL_ERROR = "Pull abandoned by the client"


class _Slot:
    __slots__ = ("error", "event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Any = None
        self.error: ConnectionLost | None = None


class _Conn:
    """One live connection: its stream, the calls waiting on it and the lines queued for it."""

    __slots__ = ("abandoned", "cause", "closed", "pending", "scope", "stream", "wake", "wbuf")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.pending: dict[int, _Slot] = {}
        self.abandoned: set[int] = set()  # reqIds of pulls whose caller gave up
        self.wbuf: list[bytes] = []
        self.wake = anyio.Event()
        self.closed = False
        self.cause = "connection closed by the server"
        self.scope = anyio.CancelScope()

    def write(self, line: bytes) -> None:
        self.wbuf.append(line)
        self.wake.set()


class AsyncClient:
    """Async MagicQueue client. Use as `async with AsyncClient(host, port) as client:`.

    Pass `host`/`port`, or `path` for a Unix socket, or a ready `settings`; keyword `tuning`
    overrides any other field of `ConnectionSettings`. Waits given to methods (`pull` timeouts,
    `wait_for`) are in seconds; job options (`delay`, `ttl`, `timeout`, `backoff`) are in
    milliseconds, as on the wire and in `Job`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        path: str | None = None,
        token: str | None = None,
        settings: ConnectionSettings | None = None,
        **tuning: Any,
    ) -> None:
        if settings is None:
            settings = ConnectionSettings(host=host, port=port, path=path, token=token, **tuning)
        elif tuning:
            raise TypeError("pass either settings or tuning keywords, not both")
        self.settings = settings
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn: _Conn | None = None
        self._connect_lock = anyio.Lock()
        self._failed_rounds = 0  # reconnect rounds that gave up (see _connect)
        self._last_connect_error = ""
        self._next_rid = 1
        self._closed = False
        # Counters for monitoring and tests.
        self.connections = 0
        self.drops = 0

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncClient:
        if self._tg is not None or self._closed:
            raise RuntimeError("an AsyncClient can be opened once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._connect()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; calls still in flight fail with ConnectionLost."""
        self._closed = True
        if self._conn is not None:
            self._lose(self._conn, "client closed")
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    @property
    def is_open(self) -> bool:
        return self._tg is not None and not self._closed

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def ensure_connected(self) -> None:
        """Connect now if there is no live connection (calls do this by themselves)."""
        conn = self._conn
        if conn is None or conn.closed:
            await self._connect()

    # ------------------------------------------------------------ connection

    async def _open_stream(self) -> anyio.abc.ByteStream:
        s = self.settings
        with anyio.fail_after(s.connect_timeout):
            if s.path is not None:
                return await anyio.connect_unix(s.path)
            return await anyio.connect_tcp(s.host, s.port)

    async def _connect(self) -> _Conn:
        """The live connection, (re)connecting with backoff when there is none."""
        rounds = self._failed_rounds
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            if self._closed or self._tg is None:
                raise ConnectionLost("client is closed" if self._closed else "client is not open")
            if self._failed_rounds != rounds:
                # Somebody else just spent a whole round failing while we queued for the lock:
                # fail now rather than start another one behind it.
                raise ConnectionLost(self._last_connect_error)
            first = self.connections == 0
            backoff = Backoff(self.settings)
            deadline = anyio.current_time() + self.settings.reconnect_timeout
            while True:
                try:
                    stream = await self._open_stream()
                except (OSError, TimeoutError) as e:
                    what = "connect" if first else "reconnect"
                    msg = f"cannot {what} to {self.settings.address}: {e or type(e).__name__}"
                    delay = backoff.next()
                    if first or anyio.current_time() + delay > deadline:
                        self._failed_rounds += 1
                        self._last_connect_error = msg
                        raise ConnectionLost(msg) from e
                    await anyio.sleep(delay)
                    continue
                conn = _Conn(stream)
                self._tg.start_soon(self._serve, conn)
                if self.settings.token is not None:
                    try:
                        reply = await self._roundtrip(
                            conn, P.req("AUTH", token=self.settings.token), False
                        )
                        P.check(reply)
                    except ConnectionLost:
                        delay = backoff.next()
                        if first or anyio.current_time() + delay > deadline:
                            raise
                        await anyio.sleep(delay)
                        continue
                    except BaseException:  # refused (AuthenticationFailed), or cancelled
                        self._lose(conn, "connection attempt abandoned")
                        raise
                self._conn = conn
                self.connections += 1
                return conn

    async def _serve(self, conn: _Conn) -> None:
        """Run one connection's reader and writer; never raises into the client's task group."""
        try:
            with conn.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._writer, conn)
                    await self._reader(conn)
                    tg.cancel_scope.cancel()
        except Exception as e:  # a bug here must not cancel the caller's scope
            log.exception("magicqueue connection task failed")
            conn.cause = f"connection failed: {e!r}"
        finally:
            self._lose(conn, conn.cause)
            await anyio.aclose_forcefully(conn.stream)

    async def _reader(self, conn: _Conn) -> None:
        splitter = P.LineSplitter()
        stream = conn.stream
        dispatch = self._dispatch
        while True:
            try:
                data = await stream.receive(_READ_BYTES)
            except anyio.EndOfStream:
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                conn.cause = f"connection lost: {e or type(e).__name__}"
                return
            for line in splitter.feed(data):
                if line and not dispatch(conn, line):
                    return

    def _dispatch(self, conn: _Conn, line: bytes) -> bool:
        """Hand one reply line to its caller. False: the stream is unusable."""
        try:
            obj = P.loads(line)
        except P.JSONDecodeError:
            conn.cause = f"malformed reply from the server: {line[:200]!r}"
            return False
        if type(obj) is not dict:
            conn.cause = f"malformed reply from the server: {line[:200]!r}"
            return False
        rid = obj.get("reqId")
        slot = conn.pending.pop(rid, None) if rid is not None else None
        if slot is not None:
            slot.reply = obj
            slot.event.set()
        elif rid is None:
            # Only a connection-level error has no reqId (an oversized line, after which the
            # server closes the connection): keep it as the reason for the drop.
            if obj.get("ok") is False:
                conn.cause = f"connection closed by the server: {obj.get('error')}"
        elif rid in conn.abandoned:
            conn.abandoned.discard(rid)
            self._give_back(conn, obj)
        return True

    async def _writer(self, conn: _Conn) -> None:
        stream = conn.stream
        try:
            while True:
                await conn.wake.wait()
                conn.wake = anyio.Event()
                buf = conn.wbuf
                if not buf:
                    continue
                conn.wbuf = []
                await stream.send(buf[0] if len(buf) == 1 else b"".join(buf))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            self._lose(conn, f"connection lost: {e or type(e).__name__}")

    def _lose(self, conn: _Conn, cause: str) -> None:
        """Mark `conn` dead and fail everything waiting on it (idempotent)."""
        if conn.closed:
            return
        conn.closed = True
        conn.cause = cause
        if not self._closed and conn is self._conn:
            self.drops += 1
            log.warning("magicqueue connection to %s lost: %s", self.settings.address, cause)
        pending, conn.pending = conn.pending, {}
        for slot in pending.values():
            slot.error = ConnectionLost(cause)
            slot.event.set()
        conn.abandoned.clear()
        conn.scope.cancel()

    def _give_back(self, conn: _Conn, reply: Any) -> None:
        """FAIL the jobs a pull handed out after its caller gave up on it."""
        if conn.closed:
            return  # the server fails them itself when it sees the connection close
        for jid in P.pulled_job_ids(reply):
            rid = self._next_rid
            self._next_rid += 1
            body = P.req("FAIL", id=jid, error=ABANDONED_PULL_ERROR)
            conn.write(P.frame(body, rid, self.settings.max_frame_bytes))
            log.info("gave back job %d from an abandoned pull", jid)

    async def _roundtrip(self, conn: _Conn, body: bytes, pull: bool) -> Any:
        if conn.closed:
            raise ConnectionLost(conn.cause)
        rid = self._next_rid
        self._next_rid += 1
        line = P.frame(body, rid, self.settings.max_frame_bytes)
        slot = _Slot()
        conn.pending[rid] = slot
        conn.write(line)
        try:
            await slot.event.wait()
        except BaseException:
            if conn.pending.pop(rid, None) is not None:
                if pull:
                    conn.abandoned.add(rid)
            elif pull and slot.reply is not None:
                self._give_back(conn, slot.reply)
            raise
        if slot.error is not None:
            raise slot.error
        return slot.reply

    async def _call(self, body: bytes, pull: bool = False) -> P.Reply:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        return P.check(await self._roundtrip(conn, body, pull))

    async def _call_many(self, bodies: Sequence[bytes]) -> list[P.Reply | MagicQueueError]:
        """Send several requests at once (one write) and gather their answers, in order: each
        is its reply or the error it got. Used by `Worker` to settle many jobs in one go."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        first = self._next_rid
        max_frame = self.settings.max_frame_bytes
        lines = [P.frame(body, first + i, max_frame) for i, body in enumerate(bodies)]
        self._next_rid = first + len(lines)
        slots = [_Slot() for _ in lines]
        pending = conn.pending
        for i, slot in enumerate(slots):
            pending[first + i] = slot
        conn.wbuf.extend(lines)
        conn.wake.set()
        try:
            for slot in slots:
                await slot.event.wait()
        except BaseException:
            for i in range(len(slots)):
                pending.pop(first + i, None)
            raise
        out: list[P.Reply | MagicQueueError] = []
        for slot in slots:
            if slot.error is not None:
                out.append(slot.error)
                continue
            try:
                out.append(P.check(slot.reply))
            except MagicQueueError as e:
                out.append(e)
        return out

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send any command (fields as on the wire) and return its raw `ok` reply."""
        return await self._call(P.req(cmd, **fields), pull=cmd in ("PULL", "PULLB"))

    # ------------------------------------------------------------ jobs

    async def push(
        self,
        queue: str,
        data: Any,
        *,
        priority: int | None = None,
        delay: int | None = None,
        ttl: int | None = None,
        timeout: int | None = None,
        max_attempts: int | None = None,
        backoff: int | None = None,
        unique_key: str | None = None,
        depends_on: Sequence[int] | None = None,
        tags: Sequence[str] | None = None,
    ) -> int:
        """PUSH one job; returns its id. Durations are in milliseconds."""
        opts = P.job_options(
            priority, delay, ttl, timeout, max_attempts, backoff, unique_key, depends_on, tags
        )
        return P.parsed(P.parse_id, await self._call(P.req_push(queue, data, opts)))

    async def push_batch(self, queue: str, jobs: Iterable[P.JobItem]) -> list[int]:
        """PUSHB any number of jobs (`JobSpec`s or mappings with `data` and options); returns
        their ids in input order.

        Lists over the server's batch or frame limit are sent as several PUSHB requests, one
        after another. Each request is all-or-nothing; if a later one is refused, `PartialBatch`
        says which ids were already pushed.
        """
        s = self.settings
        ids: list[int] = []
        for body, _n in P.pushb_bodies(queue, jobs, s.max_batch, s.max_frame_bytes):
            try:
                ids.extend(P.parsed(P.parse_ids, await self._call(body)))
            except MagicQueueError as e:
                if ids:
                    raise PartialBatch(e, ids) from e
                raise
        return ids

    async def pull(self, queue: str, timeout: float | None = None) -> Job | None:
        """PULL: the next job, waiting for one; with `timeout` (seconds), None when it runs out."""
        reply = await self._call(P.req("PULL", queue=queue, timeout=P.ms(timeout)), pull=True)
        return P.parsed(P.parse_job, reply)

    async def pull_batch(self, queue: str, count: int, timeout: float | None = None) -> list[Job]:
        """PULLB: 1..count jobs as soon as one is ready; [] when `timeout` (seconds) runs out."""
        body = P.req("PULLB", queue=queue, count=count, timeout=P.ms(timeout))
        return P.parsed(P.parse_jobs, await self._call(body, pull=True))

    async def ack(self, id: int, result: Any = None) -> None:
        """ACK an active job, storing `result` (any JSON value) for `get_result`."""
        await self._call(P.req_ack(id, result))

    async def ack_batch(self, ids: Sequence[int]) -> int:
        """ACKB: ack the ids that are active (no results); returns how many were."""
        return P.parsed(P.parse_count, await self._call(P.req("ACKB", ids=list(ids))))

    async def fail(self, id: int, error: str | None = None) -> None:
        """FAIL an active job: it is retried after its backoff, or moved to the DLQ."""
        await self._call(P.req("FAIL", id=id, error=error))

    async def get_job(self, id: int) -> JobLookup:
        """GETJOB: `(job, state)`; the job is None once completed and when unknown."""
        return P.parsed(P.parse_lookup, await self._call(P.req("GETJOB", id=id)))

    async def get_state(self, id: int) -> JobState:
        return P.parsed(P.parse_state, await self._call(P.req("GETSTATE", id=id)))

    async def get_result(self, id: int) -> Any:
        return P.parsed(P.parse_result, await self._call(P.req("GETRESULT", id=id)))

    async def cancel(self, id: int) -> None:
        await self._call(P.req("CANCEL", id=id))

    async def progress(self, id: int, progress: int, message: str | None = None) -> None:
        """PROGRESS of an active job: 0..100 (above 100 is stored as 100)."""
        await self._call(P.req("PROGRESS", id=id, progress=progress, message=message))

    async def get_progress(self, id: int) -> ProgressInfo:
        return P.parsed(P.parse_progress, await self._call(P.req("GETPROGRESS", id=id)))

    async def wait_for(self, id: int, timeout: float | None = None) -> Any:
        """Wait until the job completes and return its result (None if it stored none).

        Polls GETSTATE with a short backoff (5 ms growing to 250 ms). Raises `JobFailed` if the
        job lands in the DLQ, `JobNotFound` if it is unknown (never existed, cancelled or
        expired), and `WaitTimeout` after `timeout` seconds.
        """
        deadline = None if timeout is None else anyio.current_time() + timeout
        delay = 0.005
        while True:
            state = await self.get_state(id)
            if state == "completed":
                return await self.get_result(id)
            if state == "failed":
                job, _ = await self.get_job(id)
                raise JobFailed(id, job.progress_msg if job is not None else None)
            if state == "unknown":
                raise JobNotFound(f"Job {id} is unknown (never existed, cancelled or expired)", id)
            if deadline is not None:
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise WaitTimeout(id, timeout or 0.0, state)
                delay = min(delay, left)
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    # ------------------------------------------------------------ dead letters

    async def dlq(self, queue: str, count: int | None = None) -> list[Job]:
        """The queue's dead-letter jobs, oldest first (the server's default count is 100)."""
        return P.parsed(P.parse_jobs, await self._call(P.req("DLQ", queue=queue, count=count)))

    async def retry_dlq(self, queue: str, id: int | None = None) -> int:
        """Move one DLQ job (or all of them) back to waiting; returns how many moved."""
        reply = await self._call(P.req("RETRYDLQ", queue=queue, id=id))
        return P.parsed(P.parse_count, reply)

    # ------------------------------------------------------------ queues

    async def pause(self, queue: str) -> None:
        await self._call(P.req("PAUSE", queue=queue))

    async def resume(self, queue: str) -> None:
        await self._call(P.req("RESUME", queue=queue))

    async def rate_limit(self, queue: str, limit: int) -> None:
        """At most `limit` jobs per second handed out from the queue (token bucket)."""
        await self._call(P.req("RATELIMIT", queue=queue, limit=limit))

    async def clear_rate_limit(self, queue: str) -> None:
        await self._call(P.req("RATELIMITCLEAR", queue=queue))

    async def set_concurrency(self, queue: str, limit: int) -> None:
        """At most `limit` jobs of the queue active at once."""
        await self._call(P.req("SETCONCURRENCY", queue=queue, limit=limit))

    async def clear_concurrency(self, queue: str) -> None:
        await self._call(P.req("CLEARCONCURRENCY", queue=queue))

    async def list_queues(self) -> list[QueueInfo]:
        return P.parsed(P.parse_queues, await self._call(P.req("LISTQUEUES")))

    # ------------------------------------------------------------ cron

    async def cron(
        self, name: str, queue: str, data: Any, schedule: str, priority: int | None = None
    ) -> None:
        """Add or replace a cron entry: `*/N` (every N seconds) or a 5/6-field expression."""
        await self._call(P.req_cron(name, queue, data, schedule, priority))

    async def cron_delete(self, name: str) -> None:
        await self._call(P.req("CRONDELETE", name=name))

    async def cron_list(self) -> list[CronEntry]:
        return P.parsed(P.parse_crons, await self._call(P.req("CRONLIST")))

    # ------------------------------------------------------------ server

    async def stats(self) -> Stats:
        return P.parsed(P.parse_stats, await self._call(P.req("STATS")))

    async def metrics(self) -> Metrics:
        return P.parsed(P.parse_metrics, await self._call(P.req("METRICS")))

    async def auth(self, token: str) -> None:
        """AUTH on the current connection. Prefer the `token` setting, which also covers
        reconnects."""
        await self._call(P.req("AUTH", token=token))
