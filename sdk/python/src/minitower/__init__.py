"""MiniTower's Python SDK: trigger runs, wait for them, read their logs and
results.

    from minitower import Client

    client = Client()                      # the CLI's profile / MINITOWER_* variables
    run = client.run("hello", {"name": "Ada"})
    run = run.wait(timeout=60)
    for line in client.logs(run.id):
        print(line.line)
    print(run.status, run.exit_code, run.error_message)
"""

__version__ = "0.1.0"

from ._errors import (  # noqa: E402
    ApiError,
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionError,
    Forbidden,
    InvalidInput,
    LeaseGone,
    MiniTowerError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from ._models import App, Attempt, LogLine, Me, Run, RunnerInfo, RunResult, Team, Version  # noqa: E402
from ._client import Client, LogStream, pack_folder  # noqa: E402

#: Alias: 400 answers with code ``invalid_request``.
InvalidRequest = BadRequest

__all__ = [
    "__version__",
    "Client",
    "LogStream",
    "pack_folder",
    "App",
    "Attempt",
    "LogLine",
    "Me",
    "Run",
    "RunResult",
    "RunnerInfo",
    "Team",
    "Version",
    "MiniTowerError",
    "ConfigError",
    "ApiError",
    "BadRequest",
    "InvalidRequest",
    "InvalidInput",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "LeaseGone",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ConnectionError",
    "WaitTimeout",
]
