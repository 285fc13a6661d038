"""Domain exceptions, and the one table that maps them to HTTP statuses."""

from __future__ import annotations


class StreamboardError(Exception):
    """Base of every error this package raises on purpose; its message is meant for a person."""

    status = 500


class BadRequest(StreamboardError):
    status = 400


class Unauthorized(StreamboardError):
    status = 401


class Forbidden(StreamboardError):
    status = 403


class NotFound(StreamboardError):
    status = 404


class RequestTimeout(StreamboardError):
    status = 408


class MethodNotAllowed(StreamboardError):
    """The path exists, not for this method; ``allowed`` are the methods it takes (the ``Allow`` header)."""

    status = 405

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class PayloadTooLarge(StreamboardError):
    status = 413


class RateLimited(StreamboardError):
    """Over the app's rate limit; ``retry_after`` seconds until a token is free."""

    status = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(StreamboardError):
    """Neither the stream nor the dead-letter queue took the events; nothing was acknowledged."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkError(StreamboardError):
    """A port's backing service failed (the stream, the queue, a store)."""

    status = 503


class QueryFailed(StreamboardError):
    """A query failed in the query engine; the message carries the engine's reason."""

    status = 500


class ConfigError(StreamboardError):
    """Bad configuration: a setting or flag with a value that cannot work."""


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception: its own for domain errors, 500 for anything unexpected."""
    return exc.status if isinstance(exc, StreamboardError) else 500
