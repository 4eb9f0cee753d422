"""Typed errors that carry their own wire answer.

One root class, `QueueError`. Each subclass knows the message a client sees and the HTTP status
that fits it. Nothing below the gateway formats an error reply: the core and the parsers raise
these, and only the edge (TCP, HTTP, gRPC) turns one into `{"ok":false,"error":...}`, a status
code or a gRPC status. Anything else that escapes a handler is a bug and is logged as one.
"""

from __future__ import annotations


class QueueError(Exception):
    """Root of every error a client may be told about."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(QueueError):
    """Malformed input. The message always starts with `Invalid: ` and names the field."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"Invalid: {detail}")


class FrameTooLarge(InvalidRequest):
    """A line (TCP) or body (HTTP) over MAX_FRAME_BYTES. TCP closes the connection after it."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"frame exceeds {limit} bytes")


class JobNotFound(QueueError):
    http_status = 404
    grpc_code = "NOT_FOUND"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} not found")


class JobNotActive(QueueError):
    """PROGRESS/GETPROGRESS of a job that exists but is not active."""

    http_status = 404
    grpc_code = "NOT_FOUND"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} is not active")


class JobFinished(QueueError):
    """CANCEL of a job that already completed or sits in the DLQ."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(f"Job {job_id} cannot be cancelled: it is {state}")


class DuplicateJob(QueueError):
    http_status = 409
    grpc_code = "ALREADY_EXISTS"

    def __init__(self, key: str) -> None:
        super().__init__(f"Duplicate job with key: {key}")


class UnknownDependency(QueueError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Unknown dependency: {job_id}")


class CronNotFound(QueueError):
    http_status = 404
    grpc_code = "NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Cron job not found")


class NotFound(QueueError):
    """An HTTP-side resource (webhook, route) that does not exist."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class AuthenticationRequired(QueueError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("Authentication required")


class InvalidToken(QueueError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("Invalid token")


class Unavailable(QueueError):
    """The request cannot be served right now; retrying later may succeed."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class PersistenceUnavailable(Unavailable):
    def __init__(self) -> None:
        super().__init__("Persistence unavailable")


class WorkerUnavailable(Unavailable):
    def __init__(self, worker: int) -> None:
        super().__init__(f"Worker {worker} unavailable, retry")


class ShuttingDown(Unavailable):
    def __init__(self) -> None:
        super().__init__("Server shutting down")


def error_kind(e: QueueError) -> str:
    """The name another worker uses to rebuild this error (see `rebuild`)."""
    return type(e).__name__


def rebuild(kind: str, message: str) -> QueueError:
    """Recreate an error that another worker raised, with its status codes intact."""
    cls = _BY_NAME.get(kind, QueueError)
    err = cls.__new__(cls)
    QueueError.__init__(err, message)
    return err


def _subclasses(c: type[QueueError]) -> list[type[QueueError]]:
    out = [c]
    for s in c.__subclasses__():
        out.extend(_subclasses(s))
    return out


_BY_NAME = {c.__name__: c for c in _subclasses(QueueError)}
