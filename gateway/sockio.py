"""Non-blocking sockets on trio with a synchronous fast path.

trio's socket methods always pass through the scheduler, even when the kernel could answer at
once (`_try_sync` yields after every successful call). On the request path that is most of a
request's cost, so `Wire` calls the stdlib socket directly and waits through trio only when the
kernel says EAGAIN:
- `write()` never blocks: it sends what the kernel takes now and queues the rest for the
  writer task, which waits for writability. Everything on one trio thread calls it, so replies
  produced by callbacks (link replies, woken pulls, commits) go out with no task switch.
- `recv()` tries the socket first and awaits readability only if nothing is there; after a run
  of successful reads it yields anyway so a busy client cannot starve the others.
One writer per socket (trio raises BusyResourceError for two), so only the writer task awaits
writability. `close()` goes through trio so its epoll registration is dropped (a handed-off
socket must never be `shutdown()`: that would cut the client off in the other process too).
"""

from __future__ import annotations

import errno
import socket

import trio

_YIELD_EVERY = 16  # consecutive reads that found data before we yield to other tasks


class Wire:
    __slots__ = (
        "_pending",
        "_progress",
        "_reads",
        "_wake",
        "broken",
        "closed",
        "pending_bytes",
        "sock",
    )

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._pending: list[bytes] = []
        self.pending_bytes = 0
        self._wake = trio.Event()
        self._progress = trio.Event()  # set whenever the writer got bytes out (backpressure)
        self._reads = 0
        self.closed = False
        self.broken = False  # the peer is gone or the socket failed

    # ---------------------------------------------------------------- reading

    async def recv(self, size: int = 65536) -> bytes:
        """The next bytes from the peer; b"" at end of stream or on a reset."""
        sock = self.sock
        self._reads += 1
        if self._reads >= _YIELD_EVERY:
            self._reads = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return sock.recv(size)
            except BlockingIOError:
                self._reads = 0
                await trio.lowlevel.wait_readable(sock)
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EBADF, errno.ENOTCONN, errno.EPIPE):
                    self.broken = True
                    return b""
                raise

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        if self.closed or self.broken:
            return
        if self._pending:
            self._pending.append(data)
            self.pending_bytes += len(data)
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._break()
            return
        if n < len(data):
            rest = data[n:]
            self._pending.append(rest)
            self.pending_bytes += len(rest)
            self._wake.set()

    async def writer(self) -> None:
        """Flush what `write` could not send at once. Runs for the life of the socket."""
        sock = self.sock
        while not self.closed and not self.broken:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending and not self.broken:
                await trio.lowlevel.wait_writable(sock)
                data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
                self._pending.clear()
                try:
                    n = sock.send(data)
                except BlockingIOError:
                    n = 0
                except OSError:
                    self._break()
                    return
                if n < len(data):
                    self._pending.append(data[n:])
                self.pending_bytes = len(data) - n
                self._progress.set()

    async def wait_drained(self, high_water: int) -> None:
        """Backpressure: wait until queued output is below `high_water` (woken by the writer
        each time it gets bytes out, so a client that stops reading stops being read)."""
        while self.pending_bytes > high_water and not self.broken and not self.closed:
            self._progress = trio.Event()
            await self._progress.wait()

    def _break(self) -> None:
        self.broken = True
        self._pending.clear()
        self.pending_bytes = 0
        self._wake.set()
        self._progress.set()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        self._progress.set()
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()
        await trio.lowlevel.checkpoint()
