"""The HTTP client (standard library only)."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Generator, Iterator, List, Mapping, Optional, Tuple, Union

from . import __version__
from ._config import resolve
from ._errors import (
    ConnectionError,
    ServerError,
    Unauthorized,
    WaitTimeout,
    error_for,
)
from ._models import App, LogLine, Me, Run, RunnerInfo, RunResult, Version, RUN_STATUSES

JSON = Dict[str, Any]

#: ``after_seq`` past every line: a stream that only waits for ``end``.
_NO_LINES = 2**63 - 1
#: The server sends an SSE keep-alive every 15 s; a read idle longer is a
#: dead connection.
_STREAM_READ_TIMEOUT = 60.0
#: Longest idle read while waiting for a run's end (the deadline is checked
#: on every keep-alive).
_WAIT_READ_TIMEOUT = 20.0
#: Lines per page of the plain log read (the server's maximum).
_LOG_PAGE = 10_000


class _Response:
    """A 2xx answer: status, headers, and the JSON body when there is one."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


class Client:
    """A MiniTower API client for one server and team token.

    ``Client()`` finds both like the ``minitower`` CLI: ``server``/``token``
    arguments, else ``MINITOWER_SERVER_URL``/``MINITOWER_TOKEN``, else the saved
    profile (``profile=`` or ``MINITOWER_PROFILE``, else the config's current
    one, else ``default``) in ``$MINITOWER_CONFIG`` or
    ``~/.config/minitower/config.toml``; the server defaults to
    ``http://127.0.0.1:8080``.

    ``timeout`` is the per-request socket timeout in seconds.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        token: Optional[str] = None,
        *,
        profile: Optional[str] = None,
        timeout: float = 30.0,
    ) -> None:
        settings = resolve(server=server, token=token, profile=profile)
        self.server: str = settings.server
        self.token: Optional[str] = settings.token
        self.profile: Optional[str] = settings.profile
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        return f"Client(server={self.server!r}, profile={self.profile!r})"

    # ----------------------------------------------------------------- HTTP

    def _url(self, path: str, query: Optional[Mapping[str, Any]] = None) -> str:
        url = self.server + path
        if query:
            pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        data: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Sends a request and returns the open response (2xx only); every
        failure becomes an :class:`ApiError`."""
        url = self._url(path, query)
        hdrs: Dict[str, str] = {
            "User-Agent": f"minitower-python/{__version__}",
            "Accept": "application/json",
        }
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        try:
            return self._opener.open(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as e:
            try:
                raw = e.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                e.close()
            body: Any
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (ValueError, UnicodeDecodeError):
                body = raw.decode("utf-8", "replace")
            err = error_for(
                e.code, body, method=method, url=url, retry_after=e.headers.get("Retry-After") if e.headers else None
            )
            if isinstance(err, Unauthorized) and not self.token:
                err.message += (
                    " (no token: pass token=, set MINITOWER_TOKEN or run `minitower login`)"
                )
            raise err from None
        except urllib.error.URLError as e:
            raise ConnectionError(
                f"cannot reach {self.server}: {e.reason}", method=method, url=url
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise ConnectionError(f"request to {self.server} failed: {e}", method=method, url=url) from e

    def _request(self, method: str, path: str, **kw: Any) -> _Response:
        resp = self._open(method, path, **kw)
        try:
            body = resp.read()
            return _Response(resp.status, resp.headers, body)
        except (OSError, http.client.HTTPException) as e:
            raise ConnectionError(
                f"reading the answer from {self.server} failed: {e}", method=method, url=resp.url
            ) from e
        finally:
            resp.close()

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # --------------------------------------------------------------- server

    def health(self) -> JSON:
        """``GET /health`` (no token needed)."""
        return self._json("GET", "/health")  # type: ignore[no-any-return]

    def me(self) -> Me:
        """The team and role of the token."""
        return Me.from_json(self._json("GET", "/api/v1/me"))

    # ----------------------------------------------------------------- apps

    def apps(self) -> List[App]:
        """The team's apps."""
        return [App.from_json(a) for a in self._json("GET", "/api/v1/apps")["apps"]]

    def app(self, slug: str) -> App:
        """One app (with ``latest_version``); :class:`NotFound` when unknown."""
        return App.from_json(self._json("GET", f"/api/v1/apps/{_seg(slug)}"))

    def create_app(self, slug: str, description: Optional[str] = None) -> App:
        """Creates an app; :class:`Conflict` when the slug is taken."""
        body: JSON = {"slug": slug}
        if description is not None:
            body["description"] = description
        return App.from_json(self._json("POST", "/api/v1/apps", json_body=body))

    def versions(self, app: str) -> List[Version]:
        """The app's versions, newest first."""
        data = self._json("GET", f"/api/v1/apps/{_seg(app)}/versions")
        return [Version.from_json(v) for v in data["versions"]]

    def upload_version(
        self,
        app: str,
        artifact: Union[str, "os.PathLike[str]", bytes],
        *,
        entrypoint: Optional[str] = None,
        timeout_seconds: Optional[int] = None,
        params_schema: Optional[JSON] = None,
    ) -> Version:
        """Uploads a new version of ``app``.

        ``artifact`` is the ``.tar.gz`` as bytes or a path to one, or a folder
        to pack (every file but ``.git``, ``__pycache__``, ``*.pyc`` and
        ``.venv``). ``entrypoint`` may be left out when the archive holds a
        ``Towerfile``.
        """
        if isinstance(artifact, bytes):
            blob = artifact
        else:
            p = Path(artifact)
            blob = pack_folder(p) if p.is_dir() else p.read_bytes()
        fields: List[Tuple[str, str]] = []
        if entrypoint is not None:
            fields.append(("entrypoint", entrypoint))
        if timeout_seconds is not None:
            fields.append(("timeout_seconds", str(int(timeout_seconds))))
        if params_schema is not None:
            fields.append(("params_schema", json.dumps(params_schema)))
        data, ctype = _multipart(fields, ("artifact", "artifact.tar.gz", blob))
        resp = self._json(
            "POST",
            f"/api/v1/apps/{_seg(app)}/versions",
            data=data,
            headers={"Content-Type": ctype},
            timeout=max(self.timeout, 120.0),
        )
        return Version.from_json(resp)

    # ----------------------------------------------------------------- runs

    def run(
        self,
        app: str,
        input: Optional[JSON] = None,
        *,
        version: Optional[int] = None,
        environment: Optional[str] = None,
        priority: Optional[Union[int, str]] = None,
        max_retries: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        pty: Optional[Union[bool, Tuple[int, int]]] = None,
        limits: Optional[Dict[str, Any]] = None,
        ref: Optional[str] = None,
    ) -> Run:
        """Triggers a run of ``app`` with ``input`` (a JSON object) and
        returns it queued; ``run.wait()`` waits for its end.

        ``version`` defaults to the latest, ``environment`` to ``default``,
        ``priority`` to the version's (a number or ``"foreground"``,
        ``"background"``, ``"best_effort"``). With ``idempotency_key``,
        repeating the call returns the first run instead of creating another.
        ``pty`` (``True``/``False`` or ``(cols, rows)``), ``limits``
        (``{"memory": "256MiB", "cpus": 1.5, "pids": 256, "disk": "1GiB"}``)
        and ``ref`` (git versions) replace the version's for this run.
        """
        body: JSON = {}
        if input is not None:
            body["input"] = input
        if version is not None:
            body["version_no"] = version
        if environment is not None:
            body["environment"] = environment
        if priority is not None:
            body["priority"] = priority
        if max_retries is not None:
            body["max_retries"] = max_retries
        if isinstance(pty, tuple):
            body["pty"] = {"cols": pty[0], "rows": pty[1]}
        elif pty is not None:
            body["pty"] = pty
        if limits is not None:
            body["limits"] = limits
        if ref is not None:
            body["ref"] = ref
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = self._json("POST", f"/api/v1/apps/{_seg(app)}/runs", json_body=body, headers=headers)
        return Run.from_json(data, self)

    def runs(
        self,
        app: Optional[str] = None,
        status: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> List[Run]:
        """Runs newest first, optionally of one app and in one status
        (``limit`` at most 500)."""
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; one of {', '.join(sorted(RUN_STATUSES))}")
        data = self._json(
            "GET",
            "/api/v1/runs",
            query={"app": app, "status": status, "limit": limit, "offset": offset},
        )
        return [Run.from_json(r, self) for r in data["runs"]]

    def get_run(self, run_id: int) -> Run:
        """One run with its attempts; :class:`NotFound` when unknown."""
        return Run.from_json(self._json("GET", f"/api/v1/runs/{_id(run_id)}"), self)

    def cancel(self, run_id: int) -> Run:
        """Asks for a run to be cancelled: a queued run is cancelled at once,
        a running one becomes ``cancelling``. :class:`Conflict` when it
        already finished otherwise."""
        return Run.from_json(self._json("POST", f"/api/v1/runs/{_id(run_id)}/cancel"), self)

    def result(self, run_id: int) -> RunResult:
        """The run's status, exit code and error message (``finished`` says
        whether they are final)."""
        return self.get_run(run_id).result

    def summary(self) -> Dict[str, int]:
        """Count of the team's runs per status."""
        return self._json("GET", "/api/v1/runs/summary")  # type: ignore[no-any-return]

    def runners(self) -> List[RunnerInfo]:
        """Every runner (admin tokens only; :class:`Forbidden` otherwise)."""
        data = self._json("GET", "/api/v1/admin/runners")
        return [RunnerInfo.from_json(r) for r in data["runners"]]

    def wait(self, run_id: int, timeout: Optional[float] = None) -> Run:
        """Blocks until the run is in a terminal status and returns it.

        Listens for the log stream's ``end`` event (no log lines are
        transferred), reconnecting as needed; falls back to polling with
        backoff when the stream is unavailable. Raises
        :class:`~minitower.WaitTimeout` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        run = self.get_run(run_id)
        if run.finished:
            return run
        try:
            self._wait_stream(run_id, deadline)
        except (ConnectionError, ServerError):
            return self._wait_poll(run_id, deadline)
        run = self.get_run(run_id)
        if run.finished:
            return run
        return self._wait_poll(run_id, deadline)

    def _remaining(self, deadline: Optional[float]) -> Optional[float]:
        return None if deadline is None else deadline - time.monotonic()

    def _timed_out(self, run_id: int, timeout_run: Optional[Run] = None) -> WaitTimeout:
        run = timeout_run or self.get_run(run_id)
        return WaitTimeout(f"run {run_id} is still {run.status}", run)

    def _wait_stream(self, run_id: int, deadline: Optional[float]) -> None:
        """Returns once the stream said ``end``."""
        failures = 0
        while True:
            remaining = self._remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise self._timed_out(run_id)
            read_timeout = _WAIT_READ_TIMEOUT if remaining is None else max(0.05, min(remaining, _WAIT_READ_TIMEOUT))
            try:
                resp = self._open(
                    "GET",
                    f"/api/v1/runs/{_id(run_id)}/logs/stream",
                    query={"after_seq": _NO_LINES},
                    headers={"Accept": "text/event-stream"},
                    timeout=read_timeout,
                )
            except (ConnectionError, ServerError):
                failures += 1
                if failures >= 3:
                    raise
                time.sleep(0.1 * failures)
                continue
            broken = False
            try:
                for event, _id_, _data in _sse_events(resp):
                    if event == "end":
                        return
                    failures = 0
                    remaining = self._remaining(deadline)
                    if remaining is not None and remaining < read_timeout:
                        break  # reopen with a timeout that ends at the deadline
                else:
                    broken = True  # closed without `end` (the server is stopping)
            except socket.timeout:
                pass  # idle past the read timeout: reopen (the deadline decides)
            except (OSError, http.client.HTTPException):
                broken = True
            finally:
                resp.close()
            if broken:
                failures += 1
                if failures >= 3:
                    raise ConnectionError(
                        f"the log stream of run {run_id} keeps breaking off",
                        method="GET",
                        url=f"{self.server}/api/v1/runs/{run_id}/logs/stream",
                    )
                time.sleep(0.1 * failures)

    def _wait_poll(self, run_id: int, deadline: Optional[float]) -> Run:
        interval = 0.05
        while True:
            run = self.get_run(run_id)
            if run.finished:
                return run
            remaining = self._remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise self._timed_out(run_id, run)
            pause = interval if remaining is None else min(interval, remaining)
            time.sleep(pause)
            interval = min(interval * 1.5, 1.0)

    # ----------------------------------------------------------------- logs

    def logs(self, run_id: int, follow: bool = False, *, after_seq: int = 0) -> "LogStream":
        """The run's log lines after ``after_seq``, as an iterator of
        :class:`LogLine` (``.line``, ``.stream``, ``.seq``).

        ``follow=False`` reads what is stored now. ``follow=True`` streams
        them live (server-sent events) until the run ends, reconnecting with
        ``Last-Event-ID`` when the connection drops; afterwards
        ``stream.status`` holds the run's terminal status.
        """
        return LogStream(self, _id(run_id), follow=follow, after_seq=after_seq)


class LogStream(Iterator[LogLine]):
    """Iterator over a run's log lines; usable as a context manager
    (leaving it closes a live stream)."""

    #: Reconnects in a row without a line or keep-alive before giving up.
    max_reconnects = 8

    def __init__(self, client: Client, run_id: int, *, follow: bool, after_seq: int = 0) -> None:
        self.client = client
        self.run_id = run_id
        self.follow = follow
        #: Highest seq yielded so far (resume point).
        self.last_seq = max(0, int(after_seq))
        #: The run's terminal status once a followed stream ended, else None.
        self.status: Optional[str] = None
        self._resp: Any = None
        self._gen = self._follow() if follow else self._read()

    def __iter__(self) -> "LogStream":
        return self

    def __next__(self) -> LogLine:
        return next(self._gen)

    def __enter__(self) -> "LogStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stops reading (closes the connection of a live stream)."""
        self._gen.close()
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def _read(self) -> Generator[LogLine, None, None]:
        while True:
            data = self.client._json(
                "GET",
                f"/api/v1/runs/{self.run_id}/logs",
                query={"after_seq": self.last_seq, "limit": _LOG_PAGE},
            )
            lines = data.get("logs", [])
            for raw in lines:
                line = LogLine.from_json(raw)
                if line.seq <= self.last_seq:
                    continue
                self.last_seq = line.seq
                yield line
            if len(lines) < _LOG_PAGE:
                return

    def _follow(self) -> Generator[LogLine, None, None]:
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if self.last_seq > 0:
                headers["Last-Event-ID"] = str(self.last_seq)
            try:
                self._resp = self.client._open(
                    "GET",
                    f"/api/v1/runs/{self.run_id}/logs/stream",
                    query={"after_seq": self.last_seq},
                    headers=headers,
                    timeout=_STREAM_READ_TIMEOUT,
                )
            except (ConnectionError, ServerError):
                failures += 1
                if failures > self.max_reconnects:
                    raise
                time.sleep(min(0.1 * 2 ** (failures - 1), 5.0))
                continue
            try:
                for event, _eid, data in _sse_events(self._resp):
                    failures = 0
                    if event == "log":
                        line = LogLine.from_json(json.loads(data))
                        if line.seq <= self.last_seq:
                            continue
                        self.last_seq = line.seq
                        yield line
                    elif event == "end":
                        try:
                            self.status = json.loads(data).get("status")
                        except ValueError:
                            self.status = None
                        return
            except (OSError, http.client.HTTPException):
                pass  # dropped or idle connection: reconnect from last_seq
            finally:
                if self._resp is not None:
                    self._resp.close()
                    self._resp = None
            failures += 1
            if failures > self.max_reconnects:
                raise ConnectionError(
                    f"the log stream of run {self.run_id} keeps breaking off",
                    method="GET",
                    url=f"{self.client.server}/api/v1/runs/{self.run_id}/logs/stream",
                )
            time.sleep(min(0.1 * 2 ** (failures - 1), 5.0))


def _sse_events(resp: Any) -> Iterator[Tuple[str, Optional[str], str]]:
    """Parses ``text/event-stream``: yields ``(event, id, data)`` per event,
    and ``("", None, "")`` for each comment (keep-alive) so a caller can
    check a deadline. Returns at EOF."""
    event = ""
    eid: Optional[str] = None
    data: List[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if data or event:
                yield (event or "message", eid, "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            yield ("", None, "")
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            eid = value


def _seg(s: str) -> str:
    return urllib.parse.quote(str(s), safe="")


def _id(run_id: Any) -> int:
    if isinstance(run_id, Run):
        return run_id.id
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        try:
            return int(run_id)
        except (TypeError, ValueError):
            raise TypeError(f"a run id must be an integer, got {run_id!r}") from None
    return run_id


def _multipart(fields: List[Tuple[str, str]], file: Tuple[str, str, bytes]) -> Tuple[bytes, str]:
    boundary = "minitower-" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode("utf-8"))
        out.write(b"\r\n")
    name, filename, blob = file
    out.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/gzip\r\n\r\n".encode()
    )
    out.write(blob)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


_SKIP_DIRS = {".git", "__pycache__", ".venv"}


def pack_folder(folder: Union[str, "os.PathLike[str]"]) -> bytes:
    """Packs a folder as a ``.tar.gz`` (every file but ``.git``,
    ``__pycache__``, ``*.pyc``, ``.venv``), entries sorted."""
    root = Path(folder)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for fn in sorted(filenames):
                if fn.endswith(".pyc"):
                    continue
                full = Path(dirpath) / fn
                rel = full.relative_to(root).as_posix()
                info = tar.gettarinfo(str(full), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(full, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.issym():
                    tar.addfile(info)
    return buf.getvalue()
