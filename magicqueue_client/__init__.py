"""A Python client and worker library for MagicQueue.

Speaks the server's newline-JSON protocol over TCP or a Unix socket, and depends only on anyio
and orjson (it imports nothing from the server's packages, so it works installed on its own).

- `Client`: blocking, plain sockets, one call at a time.
- `AsyncClient`: asyncio or trio (through anyio); many concurrent calls over one connection,
  matched by `reqId`, reconnecting with backoff after a drop.
- `Worker`: runs a sync or async handler on the jobs of a queue with bounded concurrency, acks
  results, fails exceptions with their traceback, and stops cleanly on SIGTERM/SIGINT without
  losing a job.

See `README.md` in this folder for examples, and `errors.py` for how server messages map to
exceptions.
"""

from magicqueue_client.async_client import AsyncClient
from magicqueue_client.client import Client
from magicqueue_client.errors import (
    AuthenticationFailed,
    ConnectionLost,
    CronNotFound,
    DuplicateJob,
    InvalidRequest,
    JobFailed,
    JobFinished,
    JobNotActive,
    JobNotFound,
    MagicQueueError,
    PartialBatch,
    PersistenceUnavailable,
    ServerUnavailable,
    UnknownDependency,
    WaitTimeout,
    error_from_message,
)
from magicqueue_client.settings import ConnectionSettings
from magicqueue_client.types import (
    CronEntry,
    Job,
    JobLookup,
    JobSpec,
    JobState,
    Metrics,
    ProgressInfo,
    QueueInfo,
    QueueMetrics,
    Stats,
)
from magicqueue_client.worker import JobContext, SyncJobContext, Worker, WorkerStats

__all__ = [
    "AsyncClient",
    "AuthenticationFailed",
    "Client",
    "ConnectionLost",
    "ConnectionSettings",
    "CronEntry",
    "CronNotFound",
    "DuplicateJob",
    "InvalidRequest",
    "Job",
    "JobContext",
    "JobFailed",
    "JobFinished",
    "JobLookup",
    "JobNotActive",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "MagicQueueError",
    "Metrics",
    "PartialBatch",
    "PersistenceUnavailable",
    "ProgressInfo",
    "QueueInfo",
    "QueueMetrics",
    "ServerUnavailable",
    "Stats",
    "SyncJobContext",
    "UnknownDependency",
    "WaitTimeout",
    "Worker",
    "WorkerStats",
    "error_from_message",
]
