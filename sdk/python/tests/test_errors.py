"""The error envelope to exception mapping (no server)."""

from __future__ import annotations

import builtins

import pytest

import minitower
from minitower._errors import error_for


def env(code: str, message: str = "m") -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, "invalid_request", minitower.BadRequest),
        (400, "invalid_input", minitower.InvalidInput),
        (400, "invalid_artifact", minitower.BadRequest),
        (401, "unauthorized", minitower.Unauthorized),
        (403, "forbidden", minitower.Forbidden),
        (404, "not_found", minitower.NotFound),
        (405, "method_not_allowed", minitower.ApiError),
        (409, "conflict", minitower.Conflict),
        (410, "lease_gone", minitower.LeaseGone),
        (413, "payload_too_large", minitower.PayloadTooLarge),
        (429, "rate_limited", minitower.RateLimited),
        (500, "internal", minitower.ServerError),
        (503, "unavailable", minitower.ServerError),
    ],
)
def test_status_and_code(status: int, code: str, cls: type) -> None:
    e = error_for(status, env(code, "why"), method="GET", url="http://x/y")
    assert type(e) is cls
    assert isinstance(e, minitower.ApiError) and isinstance(e, minitower.MiniTowerError)
    assert (e.status, e.code, e.message) == (status, code, "why")
    assert str(e) == f"{status} {code}: why (GET http://x/y)"


def test_retry_after() -> None:
    e = error_for(429, env("rate_limited"), retry_after="7")
    assert isinstance(e, minitower.RateLimited) and e.retry_after == 7.0
    assert error_for(429, env("rate_limited")).retry_after is None


def test_without_an_envelope() -> None:
    e = error_for(502, "Bad Gateway from a proxy")
    assert isinstance(e, minitower.ServerError)
    assert e.code == "internal" and e.message == "Bad Gateway from a proxy"
    e = error_for(404, None)
    assert isinstance(e, minitower.NotFound) and e.code == "not_found" and e.message == "HTTP 404"


def test_connection_error_is_both() -> None:
    e = minitower.ConnectionError("down")
    assert isinstance(e, builtins.ConnectionError) and isinstance(e, minitower.ApiError)
    assert e.status is None and e.code == "connection_error"
    assert issubclass(minitower.WaitTimeout, TimeoutError)
