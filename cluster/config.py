"""Configuration: every knob and limit of a running server, read once from the environment.

One frozen `Config` is built by the supervisor before it forks, so every worker sees the same
values. Nothing defaults to unlimited; each default is named and explained here. A bad value
(a port that is not a number, WORKERS=0) stops the server at start with a message naming the
variable, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from proto.limits import MAX_BATCH, MAX_FRAME_BYTES, MAX_JOB_BYTES, MAX_QUEUE_NAME_BYTES, Limits
from shard.persistence.pgwire import parse_dsn

# Client connections one worker accepts; beyond it new ones are closed at once.
MAX_CONNECTIONS = 10_000
# Replies buffered for a client that does not read them before we stop reading its requests.
CLIENT_WRITE_HIGH_WATER = 8 * 1024 * 1024
# How long a request for a worker that is restarting waits for it before failing.
LINK_WAIT_MS = 3_000
# Shutdown: time given to in-flight requests before connections are closed.
SHUTDOWN_GRACE_S = 8.0
# A commit PostgreSQL has not answered by then is given up: its replies answer
# `Persistence unavailable` and the connection is replaced.
COMMIT_TIMEOUT_MS = 10_000
# Completed job ids (and ACK results) remembered per shard, and for how long.
COMPLETED_KEEP = 100_000
COMPLETED_TTL_MS = 3_600_000
# Events buffered per SSE/WebSocket subscriber before it is dropped as too slow.
SUBSCRIBER_BUFFER = 10_000
# A worker registered over HTTP heartbeats drops off /workers after this long.
WORKER_TTL_MS = 30_000
# Garbage collection (gateway.node.gc_maintenance): freeze survivors this often, and sweep
# everything once this often, so GC pauses do not grow with the number of waiting jobs.
GC_FREEZE_EVERY_S = 10
GC_DEEP_EVERY_S = 3600


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _database_url(env: Mapping[str, str]) -> str | None:
    url = env.get("DATABASE_URL", "").strip() or None
    if url is not None:
        try:
            parse_dsn(url)  # the commit connection's parser: what it cannot use stops us here
        except ValueError as e:
            raise ConfigError(f"DATABASE_URL: {e}") from None
    return url


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in env.get(name, "").split(",") if t.strip())


@dataclass(frozen=True)
class Config:
    bind: str = "127.0.0.1"
    port: int = 6789
    workers: int = 1
    unix_socket: str | None = None
    auth_tokens: tuple[str, ...] = ()
    http: bool = False
    http_port: int = 6790
    grpc: bool = False
    grpc_port: int = 6791
    database_url: str | None = None
    commit_timeout_ms: int = COMMIT_TIMEOUT_MS
    limits: Limits = field(default_factory=Limits)
    max_connections: int = MAX_CONNECTIONS
    client_write_high_water: int = CLIENT_WRITE_HIGH_WATER
    link_wait_ms: int = LINK_WAIT_MS
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    completed_keep: int = COMPLETED_KEEP
    completed_ttl_ms: int = COMPLETED_TTL_MS
    subscriber_buffer: int = SUBSCRIBER_BUFFER
    worker_ttl_ms: int = WORKER_TTL_MS
    gc_freeze_every_s: int = GC_FREEZE_EVERY_S
    gc_deep_every_s: int = GC_DEEP_EVERY_S
    handoff: bool = True
    cors_origins: tuple[str, ...] = ()
    ws_origins: tuple[str, ...] = ()
    run_dir: str = ""  # set by the supervisor: worker link sockets live here

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = os.environ if env is None else env
        limits = Limits(
            max_frame_bytes=_int(e, "MAX_FRAME_BYTES", MAX_FRAME_BYTES, 1024, 1 << 30),
            max_job_bytes=_int(e, "MAX_JOB_BYTES", MAX_JOB_BYTES, 16, 256 * 1024 * 1024),
            max_batch=_int(e, "MAX_BATCH", MAX_BATCH, 1, 1_000_000),
            max_queue_name_bytes=MAX_QUEUE_NAME_BYTES,
        )
        if limits.max_job_bytes > limits.max_frame_bytes:
            raise ConfigError("MAX_JOB_BYTES must not exceed MAX_FRAME_BYTES")
        unix = e.get("UNIX_SOCKET", "").strip() or None
        return cls(
            bind=e.get("BIND", "127.0.0.1").strip() or "127.0.0.1",
            port=_int(e, "PORT", 6789, 0, 65535),
            workers=_int(e, "WORKERS", os.cpu_count() or 1, 1, 256),
            unix_socket=unix,
            auth_tokens=_list(e, "AUTH_TOKENS"),
            http=_flag(e, "HTTP"),
            http_port=_int(e, "HTTP_PORT", 6790, 0, 65535),
            grpc=_flag(e, "GRPC"),
            grpc_port=_int(e, "GRPC_PORT", 6791, 0, 65535),
            database_url=_database_url(e),
            commit_timeout_ms=_int(e, "COMMIT_TIMEOUT_MS", COMMIT_TIMEOUT_MS, 100, 600_000),
            limits=limits,
            max_connections=_int(e, "MAX_CONNECTIONS", MAX_CONNECTIONS, 1, 1_000_000),
            completed_keep=_int(e, "COMPLETED_KEEP", COMPLETED_KEEP, 0, 100_000_000),
            completed_ttl_ms=_int(e, "COMPLETED_TTL_MS", COMPLETED_TTL_MS, 0, 1 << 40),
            shutdown_grace_s=_int(e, "SHUTDOWN_GRACE_MS", int(SHUTDOWN_GRACE_S * 1000), 0, 60_000)
            / 1000,
            handoff=not _flag(e, "NO_HANDOFF"),
            gc_freeze_every_s=_int(e, "GC_FREEZE_EVERY_S", GC_FREEZE_EVERY_S, 0, 86_400),
            gc_deep_every_s=_int(e, "GC_DEEP_EVERY_S", GC_DEEP_EVERY_S, 0, 30 * 86_400),
            cors_origins=_list(e, "CORS_ORIGINS"),
            ws_origins=_list(e, "WS_ORIGINS"),
        )
