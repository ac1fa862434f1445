"""Exceptions: one class per kind of failure, all carrying the error
envelope's ``code`` and the HTTP ``status``."""

from __future__ import annotations

import builtins
from typing import Any, Dict, Optional, Type


class MiniTowerError(Exception):
    """Base of every exception this package raises."""


class ConfigError(MiniTowerError):
    """The profile file is unreadable, names no such profile, or the server
    URL is not an http(s) URL."""


class ApiError(MiniTowerError):
    """The server refused a request (or could not be reached).

    ``status`` is the HTTP status (``None`` when no answer arrived), ``code``
    the envelope's machine-readable code (``not_found``, ``invalid_input``,
    ...) and ``message`` its text for people.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        method: Optional[str] = None,
        url: Optional[str] = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.method = method
        self.url = url
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class BadRequest(ApiError):
    """400: malformed request, bad parameter (``invalid_request``), bad
    artifact or Towerfile."""

    default_code = "invalid_request"


class InvalidInput(BadRequest):
    """400 ``invalid_input``: the run input does not match the version's schema."""

    default_code = "invalid_input"


class Unauthorized(ApiError):
    """401: missing, unknown, revoked or expired token (or wrong password)."""

    default_code = "unauthorized"


class Forbidden(ApiError):
    """403: the token may not do this (a member token on an admin call)."""

    default_code = "forbidden"


class NotFound(ApiError):
    """404: no such app, version or run for this team."""

    default_code = "not_found"


class Conflict(ApiError):
    """409: duplicate slug, illegal transition (cancel of a finished run),
    an app with no version yet."""

    default_code = "conflict"


class LeaseGone(ApiError):
    """410 ``lease_gone`` (runner protocol only)."""

    default_code = "lease_gone"


class PayloadTooLarge(ApiError):
    """413: body or artifact above the server's limit."""

    default_code = "payload_too_large"


class RateLimited(ApiError):
    """429: too many attempts; ``retry_after`` is the seconds the server
    asked to wait (``None`` when it did not say)."""

    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed (``internal``) or its database is down
    (``unavailable``)."""

    default_code = "internal"


class ConnectionError(ApiError, builtins.ConnectionError):  # noqa: A001 - deliberate
    """No answer: the server could not be reached, the connection broke or
    timed out. ``status`` is ``None``. Also a builtin ``ConnectionError``."""

    default_code = "connection_error"


class WaitTimeout(MiniTowerError, builtins.TimeoutError):
    """``wait`` ran out of time before the run finished; ``run`` is the run
    as last seen. Also a builtin ``TimeoutError``."""

    def __init__(self, message: str, run: Any = None) -> None:
        super().__init__(message)
        self.run = run


_BY_STATUS: Dict[int, Type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: LeaseGone,
    413: PayloadTooLarge,
    429: RateLimited,
}


def error_for(
    status: int,
    body: Any,
    *,
    method: Optional[str] = None,
    url: Optional[str] = None,
    retry_after: Optional[str] = None,
) -> ApiError:
    """Builds the exception for a non-2xx answer from its status and body
    (the envelope ``{"error": {"code", "message"}}`` when there is one)."""
    code: Optional[str] = None
    message: Optional[str] = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        if isinstance(err.get("code"), str):
            code = err["code"]
        if isinstance(err.get("message"), str):
            message = err["message"]
    if message is None:
        if isinstance(body, str) and body.strip():
            message = body.strip()[:500]
        else:
            message = f"HTTP {status}"
    cls: Type[ApiError]
    if status == 400 and code == "invalid_input":
        cls = InvalidInput
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, ApiError)
    kw: Dict[str, Any] = dict(status=status, code=code, method=method, url=url, body=body)
    if cls is RateLimited:
        wait: Optional[float] = None
        if retry_after is not None:
            try:
                wait = float(retry_after)
            except ValueError:
                wait = None
        return RateLimited(message, retry_after=wait, **kw)
    return cls(message, **kw)
