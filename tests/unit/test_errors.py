"""Every error knows its wire message and HTTP status."""

from __future__ import annotations

from proto import errors as e


def test_messages_and_statuses() -> None:
    cases: list[tuple[e.QueueError, str, int]] = [
        (e.InvalidRequest("field 'x' is bad"), "Invalid: field 'x' is bad", 400),
        (e.FrameTooLarge(16), "Invalid: frame exceeds 16 bytes", 413),
        (e.JobNotFound(999999), "Job 999999 not found", 404),
        (e.JobNotActive(5), "Job 5 is not active", 404),
        (e.JobFinished(5, "completed"), "Job 5 cannot be cancelled: it is completed", 409),
        (e.DuplicateJob("k"), "Duplicate job with key: k", 409),
        (e.UnknownDependency(77), "Unknown dependency: 77", 400),
        (e.CronNotFound(), "Cron job not found", 404),
        (e.AuthenticationRequired(), "Authentication required", 401),
        (e.InvalidToken(), "Invalid token", 401),
        (e.PersistenceUnavailable(), "Persistence unavailable", 503),
        (e.ShuttingDown(), "Server shutting down", 503),
    ]
    for err, message, status in cases:
        assert err.message == message
        assert str(err) == message
        assert err.http_status == status
        assert isinstance(err, e.QueueError)
    assert isinstance(e.FrameTooLarge(1), e.InvalidRequest)
