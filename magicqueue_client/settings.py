"""Where and how to connect: one frozen record shared by both clients and the worker.

`ConnectionSettings` holds the address (TCP `host`/`port`, or a Unix socket `path`), the auth
token, and every timing knob with a named default. A client made from keyword arguments builds
one; a `Worker` can be given one and open its own connection with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from magicqueue_client._protocol import MAX_BATCH, MAX_FRAME_BYTES

DEFAULT_PORT = 6789


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # A Unix socket path; when set, `host` and `port` are not used.
    path: str | None = None
    # Sent as AUTH on every new connection (the first one and every reconnect).
    token: str | None = None
    # One connection attempt, in seconds.
    connect_timeout: float = 10.0
    # After a drop, keep trying to reconnect for this long before a call fails with
    # ConnectionLost; the next call starts a fresh round. The very first connection of a client
    # is not retried, so a wrong address fails at once.
    reconnect_timeout: float = 30.0
    # Delay between reconnect attempts: the first retry is immediate, then this doubles (with
    # +-20 % jitter, so many clients do not reconnect in lockstep) up to `backoff_max`.
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    # Blocking client only: how long to wait for the reply to a command that does not block on
    # the server (a PULL with a timeout gets its timeout on top; one without waits forever).
    # A call that runs out drops the connection, since its reply would otherwise arrive later
    # as the answer to the next call.
    request_timeout: float = 60.0
    # The server's limits (PROTOCOL.md), used to refuse or split requests before sending.
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_batch: int = MAX_BATCH

    def __post_init__(self) -> None:
        if self.path is None and not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("connect_timeout", "reconnect_timeout", "backoff_max", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.backoff_initial < 0:
            raise ValueError("backoff_initial must be >= 0")
        if self.max_batch < 1 or self.max_frame_bytes < 1024:
            raise ValueError("max_batch must be >= 1 and max_frame_bytes >= 1024")

    @property
    def address(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"


class Backoff:
    """Delays for successive reconnect attempts: 0, then initial, doubling, capped, jittered."""

    __slots__ = ("_next", "settings")

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._next = 0.0

    def next(self) -> float:
        d = self._next
        s = self.settings
        self._next = s.backoff_initial if d == 0 else min(d * 2, s.backoff_max)
        return d * random.uniform(0.8, 1.2)
