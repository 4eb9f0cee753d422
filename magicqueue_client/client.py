"""`Client`: the blocking MagicQueue client, on plain sockets.

Theory of operation
- One request at a time per client (a lock makes it safe to share between threads, who then
  take turns; a blocking `pull` holds the turn until it returns, so give each consuming thread
  its own client, or use `AsyncClient`, which multiplexes).
- Requests carry a `reqId` and the reply is matched on it, so a stray line can never be taken
  for the answer.
- The socket waits `request_timeout` for a reply (a PULL with a timeout gets its timeout on top;
  a PULL without one waits as long as it takes). Anything that interrupts a call half way (a
  timeout, a reset, Ctrl-C) drops the connection, because a late reply would otherwise be read
  as the answer to the next call; the call raises `ConnectionLost` (or the interrupt itself).
  Dropping is also what hands the server's side back cleanly: a parked pull on a closed
  connection is never given a job, and jobs pulled on it are failed and retried.
- The next call reconnects with backoff, sending AUTH first when a token is set. The client's
  first connection is not retried, so a wrong address fails fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

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

_READ_BYTES = 256 * 1024
_BLOCK = object()  # "wait as long as it takes" for `_call`


class Client:
    """Blocking MagicQueue client. `with Client(host, port) as client: ...`

    Same constructor and methods as `AsyncClient`, without `await`. Waits given to methods are
    in seconds; job options (`delay`, `ttl`, `timeout`, `backoff`) are in milliseconds.
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
        self._sock: socket.socket | None = None
        self._splitter = P.LineSplitter()
        self._lines: list[bytes] = []
        self._lock = threading.RLock()
        self._next_rid = 1
        self._closed = False
        self.connections = 0
        self.drops = 0

    # ------------------------------------------------------------ lifecycle

    def connect(self) -> Client:
        """Connect now (otherwise the first call does)."""
        with self._lock:
            if self._sock is None:
                self._reconnect()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop(count=False)

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # ------------------------------------------------------------ connection

    def _open(self) -> socket.socket:
        s = self.settings
        if s.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(s.connect_timeout)
                sock.connect(s.path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((s.host, s.port), timeout=s.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _reconnect(self) -> socket.socket:
        if self._closed:
            raise ConnectionLost("client is closed")
        first = self.connections == 0
        backoff = Backoff(self.settings)
        deadline = time.monotonic() + self.settings.reconnect_timeout
        while True:
            try:
                sock = self._open()
                self._sock = sock
                self._splitter = P.LineSplitter()
                self._lines = []
                if self.settings.token is not None:
                    body = P.req("AUTH", token=self.settings.token)
                    P.check(self._exchange(sock, body, self.settings.request_timeout))
                self.connections += 1
                return sock
            except OSError as e:
                self._drop(count=False)
                what = "connect" if first else "reconnect"
                msg = f"cannot {what} to {self.settings.address}: {e or type(e).__name__}"
                delay = backoff.next()
                if first or time.monotonic() + delay > deadline:
                    raise ConnectionLost(msg) from e
                time.sleep(delay)
            except BaseException:  # refused (AuthenticationFailed), or interrupted
                self._drop(count=False)
                raise

    def _drop(self, count: bool = True) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if count:
                self.drops += 1
            sock.close()

    def _exchange(self, sock: socket.socket, body: bytes, wait: float | None) -> Any:
        """Send one request and read its reply (OSError on any transport trouble)."""
        rid = self._next_rid
        self._next_rid += 1
        line = P.frame(body, rid, self.settings.max_frame_bytes)
        sock.settimeout(wait)
        sock.sendall(line)
        while True:
            while not self._lines:
                data = sock.recv(_READ_BYTES)
                if not data:
                    raise ConnectionResetError("connection closed by the server")
                self._lines = self._splitter.feed(data)
            raw = self._lines.pop(0)
            if not raw:
                continue
            try:
                obj = P.loads(raw)
            except P.JSONDecodeError:
                raise ConnectionResetError(f"malformed reply: {raw[:200]!r}") from None
            if type(obj) is not dict:
                raise ConnectionResetError(f"malformed reply: {raw[:200]!r}")
            got = obj.get("reqId")
            if got == rid:
                return obj
            if got is None and obj.get("ok") is False:
                # A connection-level error (the server closes after it).
                raise ConnectionResetError(f"closed by the server: {obj.get('error')}")

    def _call(self, body: bytes, wait: object = None) -> P.Reply:
        """One request/reply. `wait`: None = request_timeout, `_BLOCK` = forever, else seconds."""
        timeout: float | None
        if wait is _BLOCK:
            timeout = None
        elif wait is None:
            timeout = self.settings.request_timeout
        else:
            assert isinstance(wait, float | int)
            timeout = float(wait)
        with self._lock:
            sock = self._sock if self._sock is not None else self._reconnect()
            try:
                reply = self._exchange(sock, body, timeout)
            except MagicQueueError:
                raise  # refused before sending (frame too large): the connection is intact
            except TimeoutError as e:
                self._drop()
                raise ConnectionLost(
                    f"no reply from {self.settings.address} within {timeout} s; "
                    "the connection was dropped"
                ) from e
            except OSError as e:
                self._drop()
                raise ConnectionLost(f"connection lost: {e or type(e).__name__}") from e
            except BaseException:
                self._drop()
                raise
        return P.check(reply)

    def _pull_wait(self, timeout: float | None) -> object:
        return _BLOCK if timeout is None else timeout + self.settings.request_timeout

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send any command (fields as on the wire) and return its raw `ok` reply."""
        wait: object = None
        if cmd in ("PULL", "PULLB"):
            t = fields.get("timeout")
            wait = _BLOCK if t is None else t / 1000 + self.settings.request_timeout
        return self._call(P.req(cmd, **fields), wait)

    # ------------------------------------------------------------ jobs

    def push(
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
        return P.parsed(P.parse_id, self._call(P.req_push(queue, data, opts)))

    def push_batch(self, queue: str, jobs: Iterable[P.JobItem]) -> list[int]:
        """PUSHB any number of jobs; split like `AsyncClient.push_batch` (see there)."""
        s = self.settings
        ids: list[int] = []
        for body, _n in P.pushb_bodies(queue, jobs, s.max_batch, s.max_frame_bytes):
            try:
                ids.extend(P.parsed(P.parse_ids, self._call(body)))
            except MagicQueueError as e:
                if ids:
                    raise PartialBatch(e, ids) from e
                raise
        return ids

    def pull(self, queue: str, timeout: float | None = None) -> Job | None:
        """PULL: the next job, waiting for one; with `timeout` (seconds), None when it runs out."""
        body = P.req("PULL", queue=queue, timeout=P.ms(timeout))
        return P.parsed(P.parse_job, self._call(body, self._pull_wait(timeout)))

    def pull_batch(self, queue: str, count: int, timeout: float | None = None) -> list[Job]:
        """PULLB: 1..count jobs as soon as one is ready; [] when `timeout` (seconds) runs out."""
        body = P.req("PULLB", queue=queue, count=count, timeout=P.ms(timeout))
        return P.parsed(P.parse_jobs, self._call(body, self._pull_wait(timeout)))

    def ack(self, id: int, result: Any = None) -> None:
        self._call(P.req_ack(id, result))

    def ack_batch(self, ids: Sequence[int]) -> int:
        return P.parsed(P.parse_count, self._call(P.req("ACKB", ids=list(ids))))

    def fail(self, id: int, error: str | None = None) -> None:
        self._call(P.req("FAIL", id=id, error=error))

    def get_job(self, id: int) -> JobLookup:
        return P.parsed(P.parse_lookup, self._call(P.req("GETJOB", id=id)))

    def get_state(self, id: int) -> JobState:
        return P.parsed(P.parse_state, self._call(P.req("GETSTATE", id=id)))

    def get_result(self, id: int) -> Any:
        return P.parsed(P.parse_result, self._call(P.req("GETRESULT", id=id)))

    def cancel(self, id: int) -> None:
        self._call(P.req("CANCEL", id=id))

    def progress(self, id: int, progress: int, message: str | None = None) -> None:
        self._call(P.req("PROGRESS", id=id, progress=progress, message=message))

    def get_progress(self, id: int) -> ProgressInfo:
        return P.parsed(P.parse_progress, self._call(P.req("GETPROGRESS", id=id)))

    def wait_for(self, id: int, timeout: float | None = None) -> Any:
        """Wait until the job completes and return its result; see `AsyncClient.wait_for`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            state = self.get_state(id)
            if state == "completed":
                return self.get_result(id)
            if state == "failed":
                job, _ = self.get_job(id)
                raise JobFailed(id, job.progress_msg if job is not None else None)
            if state == "unknown":
                raise JobNotFound(f"Job {id} is unknown (never existed, cancelled or expired)", id)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(id, timeout or 0.0, state)
                delay = min(delay, left)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    # ------------------------------------------------------------ dead letters

    def dlq(self, queue: str, count: int | None = None) -> list[Job]:
        return P.parsed(P.parse_jobs, self._call(P.req("DLQ", queue=queue, count=count)))

    def retry_dlq(self, queue: str, id: int | None = None) -> int:
        return P.parsed(P.parse_count, self._call(P.req("RETRYDLQ", queue=queue, id=id)))

    # ------------------------------------------------------------ queues

    def pause(self, queue: str) -> None:
        self._call(P.req("PAUSE", queue=queue))

    def resume(self, queue: str) -> None:
        self._call(P.req("RESUME", queue=queue))

    def rate_limit(self, queue: str, limit: int) -> None:
        self._call(P.req("RATELIMIT", queue=queue, limit=limit))

    def clear_rate_limit(self, queue: str) -> None:
        self._call(P.req("RATELIMITCLEAR", queue=queue))

    def set_concurrency(self, queue: str, limit: int) -> None:
        self._call(P.req("SETCONCURRENCY", queue=queue, limit=limit))

    def clear_concurrency(self, queue: str) -> None:
        self._call(P.req("CLEARCONCURRENCY", queue=queue))

    def list_queues(self) -> list[QueueInfo]:
        return P.parsed(P.parse_queues, self._call(P.req("LISTQUEUES")))

    # ------------------------------------------------------------ cron

    def cron(
        self, name: str, queue: str, data: Any, schedule: str, priority: int | None = None
    ) -> None:
        self._call(P.req_cron(name, queue, data, schedule, priority))

    def cron_delete(self, name: str) -> None:
        self._call(P.req("CRONDELETE", name=name))

    def cron_list(self) -> list[CronEntry]:
        return P.parsed(P.parse_crons, self._call(P.req("CRONLIST")))

    # ------------------------------------------------------------ server

    def stats(self) -> Stats:
        return P.parsed(P.parse_stats, self._call(P.req("STATS")))

    def metrics(self) -> Metrics:
        return P.parsed(P.parse_metrics, self._call(P.req("METRICS")))

    def auth(self, token: str) -> None:
        self._call(P.req("AUTH", token=token))
