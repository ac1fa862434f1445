"""The API's objects as dataclasses. Every object keeps the JSON it was made
from in ``raw``, so fields a newer server adds are not lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client, LogStream

ACTIVE_STATUSES = frozenset({"queued", "leased", "running", "cancelling"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "dead"})
RUN_STATUSES = ACTIVE_STATUSES | TERMINAL_STATUSES


def parse_ts(value: Any) -> Optional[datetime]:
    """RFC 3339 (``2026-11-22T10:00:00.123Z``) to an aware datetime."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepts only 3 or 6 fraction digits.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class Team:
    id: int
    slug: str
    name: str
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Team":
        return cls(id=d["id"], slug=d["slug"], name=d.get("name", ""), raw=d)


@dataclass
class Me:
    """Who the token belongs to (``GET /api/v1/me``)."""

    team: Team
    role: str
    token_id: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Me":
        return cls(team=Team.from_json(d["team"]), role=d["role"], token_id=d["token_id"], raw=d)


@dataclass
class App:
    id: int
    slug: str
    description: Optional[str]
    created_at: Optional[datetime]
    latest_version: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "App":
        return cls(
            id=d["id"],
            slug=d["slug"],
            description=d.get("description"),
            created_at=parse_ts(d.get("created_at")),
            latest_version=d.get("latest_version"),
            raw=d,
        )


@dataclass
class Version:
    version_no: int
    artifact_sha256: str
    entrypoint: str
    timeout_seconds: int
    params_schema: Optional[Dict[str, Any]]
    created_at: Optional[datetime]
    import_paths: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Version":
        return cls(
            version_no=d["version_no"],
            artifact_sha256=d.get("artifact_sha256", ""),
            entrypoint=d.get("entrypoint", ""),
            timeout_seconds=d.get("timeout_seconds", 0),
            params_schema=d.get("params_schema"),
            created_at=parse_ts(d.get("created_at")),
            import_paths=list(d.get("import_paths") or []),
            raw=d,
        )


@dataclass
class Attempt:
    attempt_no: int
    status: str
    runner: str
    exit_code: Optional[int]
    error_message: Optional[str]
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    source_commit: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Attempt":
        return cls(
            attempt_no=d["attempt_no"],
            status=d["status"],
            runner=d.get("runner", ""),
            exit_code=d.get("exit_code"),
            error_message=d.get("error_message"),
            started_at=parse_ts(d.get("started_at")),
            finished_at=parse_ts(d.get("finished_at")),
            source_commit=d.get("source_commit"),
            raw=d,
        )


@dataclass
class RunResult:
    """How a run ended (or that it has not yet)."""

    run_id: int
    status: str
    exit_code: Optional[int]
    error_message: Optional[str]

    @property
    def finished(self) -> bool:
        """Whether the run is in a terminal status."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """Whether the run completed (its script exited 0)."""
        return self.status == "completed"


@dataclass
class Run:
    """A run. ``attempts`` is filled when the run was read by id
    (:meth:`Client.get_run`, :meth:`wait`), else ``None``."""

    id: int
    run_no: int
    app: str
    version_no: int
    status: str
    input: Dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    cancel_requested: bool
    exit_code: Optional[int]
    error_message: Optional[str]
    queued_at: Optional[datetime]
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    environment: str
    priority_name: Optional[str] = None
    attempts: Optional[List[Attempt]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any], client: Optional["Client"] = None) -> "Run":
        attempts = d.get("attempts")
        return cls(
            id=d["id"],
            run_no=d.get("run_no", 0),
            app=d.get("app", ""),
            version_no=d.get("version_no", 0),
            status=d["status"],
            input=d.get("input") or {},
            priority=d.get("priority", 0),
            max_retries=d.get("max_retries", 0),
            retry_count=d.get("retry_count", 0),
            cancel_requested=bool(d.get("cancel_requested", False)),
            exit_code=d.get("exit_code"),
            error_message=d.get("error_message"),
            queued_at=parse_ts(d.get("queued_at")),
            started_at=parse_ts(d.get("started_at")),
            finished_at=parse_ts(d.get("finished_at")),
            environment=d.get("environment", "default"),
            priority_name=d.get("priority_name"),
            attempts=[Attempt.from_json(a) for a in attempts] if isinstance(attempts, list) else None,
            raw=d,
            _client=client,
        )

    @property
    def finished(self) -> bool:
        """Whether the run is in a terminal status."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @property
    def result(self) -> RunResult:
        """Status, exit code and error message as of this object."""
        return RunResult(self.id, self.status, self.exit_code, self.error_message)

    @property
    def duration(self) -> Optional[float]:
        """Seconds from start to finish, when both are known."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def _need_client(self) -> "Client":
        if self._client is None:
            raise RuntimeError("this Run is not bound to a Client")
        return self._client

    def refresh(self) -> "Run":
        """The run as the server has it now (a new object)."""
        return self._need_client().get_run(self.id)

    def wait(self, timeout: Optional[float] = None) -> "Run":
        """Blocks until the run is finished and returns it (a new object);
        raises :class:`~minitower.WaitTimeout` after ``timeout`` seconds."""
        return self._need_client().wait(self.id, timeout=timeout)

    def cancel(self) -> "Run":
        """Asks for the run to be cancelled; returns the run as changed."""
        return self._need_client().cancel(self.id)

    def logs(self, follow: bool = False) -> "LogStream":
        """The run's log lines (see :meth:`Client.logs`)."""
        return self._need_client().logs(self.id, follow=follow)


@dataclass
class LogLine:
    seq: int
    attempt_no: int
    stream: str
    line: str
    logged_at: Optional[datetime]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "LogLine":
        return cls(
            seq=d["seq"],
            attempt_no=d.get("attempt_no", 0),
            stream=d.get("stream", "stdout"),
            line=d.get("line", ""),
            logged_at=parse_ts(d.get("logged_at")),
            raw=d,
        )

    def __str__(self) -> str:
        return self.line


@dataclass
class RunnerInfo:
    """A runner as admins see it."""

    id: int
    name: str
    environment: str
    status: str
    last_seen_at: Optional[datetime]
    active_runs: int
    max_concurrency: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "RunnerInfo":
        return cls(
            id=d["id"],
            name=d["name"],
            environment=d.get("environment", "default"),
            status=d.get("status", ""),
            last_seen_at=parse_ts(d.get("last_seen_at")),
            active_runs=d.get("active_runs", 0),
            max_concurrency=d.get("max_concurrency", 1),
            raw=d,
        )
