"""Errors a MagicQueue client raises, rebuilt from the server's error text.

The wire carries an error as `{"ok":false,"error":"<message>"}` and nothing else, so the type is
recovered from the message. The mapping is by prefix or exact pattern, checked in this order
(first match wins); every exception keeps the server's message verbatim in `.message` and as its
`str()`:

| server message                                   | exception                          |
| ------------------------------------------------ | ---------------------------------- |
| `Invalid: ...`                                   | `InvalidRequest`                   |
| `Job <id> not found`                             | `JobNotFound` (`.job_id`)          |
| `Job <id> is not active`                         | `JobNotActive` (a `JobNotFound`)   |
| `Job <id> cannot be cancelled: ...`              | `JobFinished` (`.job_id`)          |
| `Duplicate job with key: <key>`                  | `DuplicateJob` (`.key`)            |
| `Unknown dependency: <id>`                       | `UnknownDependency` (`.job_id`)    |
| `Cron job not found`                             | `CronNotFound`                     |
| `Authentication required`, `Invalid token`       | `AuthenticationFailed`             |
| `Persistence unavailable`                        | `PersistenceUnavailable`           |
| `Worker <n> unavailable, retry`, `Server shutting down` | `ServerUnavailable`         |
| anything else                                    | `MagicQueueError`                  |

Raised by the client itself, never sent by the server:
- `ConnectionLost`: the connection dropped (or could not be made) while a call needed it. A call
  in flight at the drop may or may not have taken effect on the server.
- `JobFailed`, `WaitTimeout`: outcomes of `wait_for`.
- `PartialBatch`: a `push_batch` split into several requests whose later part was refused.

`PersistenceUnavailable` and the other `ServerUnavailable` errors are the ones worth retrying.
"""

from __future__ import annotations

import re


class MagicQueueError(Exception):
    """Root of every error this package raises. `.message` is the text, as the server sent it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(MagicQueueError):
    """The request was malformed or broke a limit; the message starts with `Invalid: `."""


class JobNotFound(MagicQueueError):
    """The job does not exist, or is not in the state the command needs (ACK/FAIL of a job
    that is not active, a late ACK after a timeout, or `wait_for` of an unknown job)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotActive(JobNotFound):
    """PROGRESS/GETPROGRESS of a job that exists but is not active."""


class JobFinished(MagicQueueError):
    """CANCEL of a job that already completed or sits in the dead-letter queue."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class DuplicateJob(MagicQueueError):
    """A live job of the queue already holds this unique key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UnknownDependency(MagicQueueError):
    """`depends_on` named a job id the server does not know."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class CronNotFound(MagicQueueError):
    """CRONDELETE of a name that has no cron entry."""


class AuthenticationFailed(MagicQueueError):
    """No token was sent to a server that needs one, or the token was refused."""


class ServerUnavailable(MagicQueueError):
    """The server cannot serve the request right now; retrying later may succeed."""


class PersistenceUnavailable(ServerUnavailable):
    """The server's database is unreachable, so it refuses mutations it cannot make durable."""


class ConnectionLost(MagicQueueError):
    """The connection dropped, or could not be (re)established. Raised by the client."""


class JobFailed(MagicQueueError):
    """`wait_for`: the job landed in the dead-letter queue. `.error` is its recorded reason."""

    def __init__(self, job_id: int, error: str | None) -> None:
        super().__init__(f"Job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error


class WaitTimeout(MagicQueueError, TimeoutError):
    """`wait_for`: the job did not finish within the timeout. `.state` is its last state."""

    def __init__(self, job_id: int, timeout: float, state: str) -> None:
        super().__init__(f"Job {job_id} did not finish within {timeout} s (state: {state})")
        self.job_id = job_id
        self.state = state


class PartialBatch(MagicQueueError):
    """A `push_batch` was sent as several requests and a later one was refused.

    Each request is all-or-nothing on the server, but the split is not: `.pushed_ids` holds the
    ids of the jobs accepted before the refusal (in input order, a prefix of the input), and
    `.error` (also `__cause__`) is the refusal itself.
    """

    def __init__(self, error: MagicQueueError, pushed_ids: list[int]) -> None:
        super().__init__(f"{len(pushed_ids)} jobs were pushed before a refusal: {error.message}")
        self.error = error
        self.pushed_ids = pushed_ids


_JOB_ID = re.compile(r"Job (\d+) (not found|is not active|cannot be cancelled)")
_WORKER_DOWN = re.compile(r"Worker \d+ unavailable")


def error_from_message(message: str) -> MagicQueueError:
    """The exception for a server error message (see the table in the module header)."""
    if message.startswith("Invalid: "):
        return InvalidRequest(message)
    m = _JOB_ID.match(message)
    if m:
        jid = int(m.group(1))
        kind = m.group(2)
        if kind == "not found":
            return JobNotFound(message, jid)
        if kind == "is not active":
            return JobNotActive(message, jid)
        return JobFinished(message, jid)
    if message.startswith("Duplicate job with key: "):
        return DuplicateJob(message, message[len("Duplicate job with key: ") :])
    if message.startswith("Unknown dependency: "):
        tail = message[len("Unknown dependency: ") :]
        return UnknownDependency(message, int(tail) if tail.isdigit() else None)
    if message.startswith("Cron job not found"):
        return CronNotFound(message)
    if message in ("Authentication required", "Invalid token"):
        return AuthenticationFailed(message)
    if message.startswith("Persistence unavailable"):
        return PersistenceUnavailable(message)
    if _WORKER_DOWN.match(message) or message.startswith("Server shutting down"):
        return ServerUnavailable(message)
    return MagicQueueError(message)
