"""Fixtures: a real ``minitowerd`` and ``minitower-runner`` on a free
loopback port in a temporary folder, a bootstrapped team and deployed apps.

The binaries come from ``MINITOWERD_BIN`` and ``MINITOWER_RUNNER_BIN``,
else ``$CARGO_TARGET_DIR/debug/`` (else the repository's ``target/debug/``);
build them with ``cargo build -p minitower-server -p minitower-runner``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from minitower import Client

REPO = Path(__file__).resolve().parents[3]
BOOTSTRAP_TOKEN = "sdk-test-bootstrap"
REGISTRATION_TOKEN = "sdk-test-registration"


def _bin(env_name: str, name: str) -> Path:
    explicit = os.environ.get(env_name)
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return Path(target) / "debug" / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Polls ``check`` until it returns something truthy, failing the test
    at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported at the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_json(method: str, url: str, token: Optional[str] = None, body: Any = None,
              headers: Optional[Dict[str, str]] = None) -> Any:
    data = None
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def tar_gz(files: Dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            blob = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def upload_multipart(url: str, token: str, fields: Dict[str, str], artifact: bytes) -> Any:
    """The README quickstart's `curl -F artifact=@hello.tar.gz -F entrypoint=...`."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; '
              f'filename="hello.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n'.encode())
    out.write(artifact)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return _post_raw(url, token, out.getvalue(), boundary)


def _post_raw(url: str, token: str, data: bytes, boundary: str) -> Any:
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    })
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


HELLO_PY = """\
import os, json
input_data = json.loads(os.environ.get("MINITOWER_INPUT", "{}"))
print(f"Hello, {input_data.get('name', 'World')}!")
"""

FAIL_PY = """\
import sys
print("about to fail", flush=True)
print("something went wrong", file=sys.stderr, flush=True)
sys.exit(3)
"""

# Prints one line, then waits for a file before each next line, so a test
# decides when lines appear (no timing guesses).
SLOW_PY = """\
import json, os, sys, time
inp = json.loads(os.environ.get("MINITOWER_INPUT", "{}"))
gate = inp.get("gate")
n = int(inp.get("lines", 5))
for i in range(1, n + 1):
    if gate and i > 1:
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{gate}.{i}") and time.monotonic() < deadline:
            time.sleep(0.01)
    print(f"line {i}", flush=True)
"""

GREET_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}


@dataclass
class Server:
    url: str
    token: str
    team: str
    tmp: Path

    def client(self, **kw: Any) -> Client:
        return Client(server=self.url, token=self.token, **kw)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    serverd = _bin("MINITOWERD_BIN", "minitowerd")
    runner = _bin("MINITOWER_RUNNER_BIN", "minitower-runner")
    for b in (serverd, runner):
        if not b.is_file():
            pytest.fail(f"{b} is missing: run `cargo build -p minitower-server -p minitower-runner` "
                        "or set MINITOWERD_BIN / MINITOWER_RUNNER_BIN")
    tmp = tmp_path_factory.mktemp("minitower")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MINITOWER_")}
    procs: List[subprocess.Popen] = []
    logs = {"server": tmp / "server.log", "runner": tmp / "runner.log"}
    try:
        with open(logs["server"], "wb") as out:
            procs.append(subprocess.Popen(
                [str(serverd)],
                env={**base_env,
                     "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{port}",
                     "MINITOWER_DB_PATH": str(tmp / "minitower.db"),
                     "MINITOWER_OBJECTS_DIR": str(tmp / "objects"),
                     "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
                     "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
                     "MINITOWER_LEASE_TTL": "30s",
                     "MINITOWER_EXPIRY_CHECK_INTERVAL": "2s"},
                cwd=tmp, stdout=out, stderr=subprocess.STDOUT))
        server_proc = procs[0]

        def healthy() -> bool:
            assert server_proc.poll() is None, f"minitowerd exited:\n{_tail(logs['server'])}"
            return http_json("GET", f"{url}/health")["status"] == "ok"

        wait_until("minitowerd /health", healthy, timeout=30)

        with open(logs["runner"], "wb") as out:
            procs.append(subprocess.Popen(
                [str(runner)],
                env={**base_env,
                     "MINITOWER_SERVER_URL": url,
                     "MINITOWER_RUNNER_NAME": "sdk-test-runner",
                     "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
                     "MINITOWER_DATA_DIR": str(tmp / "runner"),
                     "MINITOWER_RUNNER_CONCURRENCY": "2",
                     "MINITOWER_POLL_INTERVAL": "1s",
                     "MINITOWER_DRAIN_TIMEOUT": "2s"},
                cwd=tmp, stdout=out, stderr=subprocess.STDOUT))
        runner_proc = procs[1]

        team = "sdk"
        boot = http_json("POST", f"{url}/api/v1/bootstrap/team", BOOTSTRAP_TOKEN,
                         {"slug": team, "name": "SDK tests"})
        token = boot["token"]

        def runner_online() -> bool:
            assert runner_proc.poll() is None, f"minitower-runner exited:\n{_tail(logs['runner'])}"
            runners = http_json("GET", f"{url}/api/v1/admin/runners", token)["runners"]
            return any(r["status"] == "online" for r in runners)

        wait_until("the runner to register", runner_online, timeout=60)

        # The README quickstart: create the app, upload a .tar.gz by multipart.
        http_json("POST", f"{url}/api/v1/apps", token, {"slug": "hello", "description": "Hello world app"})
        upload_multipart(f"{url}/api/v1/apps/hello/versions", token,
                         {"entrypoint": "main.py", "timeout_seconds": "60"},
                         tar_gz({"main.py": HELLO_PY}))

        srv = Server(url=url, token=token, team=team, tmp=tmp)
        yield srv
    except BaseException:
        for name, path in logs.items():
            print(f"--- {name} log (tail)\n{_tail(path)}")
        raise
    finally:
        for p in reversed(procs):
            _stop(p)


@pytest.fixture(scope="session")
def client(server: Server) -> Client:
    return server.client()


@pytest.fixture(scope="session")
def apps(server: Server, client: Client) -> Dict[str, int]:
    """More apps, deployed with the SDK itself (folder packing + multipart)."""
    out: Dict[str, int] = {}
    for slug, files, schema in (
        ("fail", {"main.py": FAIL_PY}, None),
        ("slow", {"main.py": SLOW_PY}, None),
        ("greet", {"main.py": HELLO_PY}, GREET_SCHEMA),
    ):
        folder = server.tmp / "apps" / slug
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        client.create_app(slug, description=f"{slug} test app")
        v = client.upload_version(slug, folder, entrypoint="main.py", timeout_seconds=120, params_schema=schema)
        out[slug] = v.version_no
    return out


class CuttingProxy:
    """A loopback TCP proxy that can cut every open connection, to test that
    a followed log stream resumes. Records each connection's request head."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.requests: List[bytes] = []
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._conns += [down, up]
                index = len(self.requests)
                self.requests.append(b"")
            threading.Thread(target=self._pump, args=(down, up, index), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, index: Optional[int]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if index is not None:
                    with self._lock:
                        self.requests[index] += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()


@pytest.fixture
def gate_dir() -> Iterator[Path]:
    """A folder for the slow app's gate files that scripts can see even when
    the runner executes them as an unprivileged user."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="minitower-sdk-gate-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def proxy(server: Server) -> Iterator[CuttingProxy]:
    port = int(server.url.rsplit(":", 1)[1])
    p = CuttingProxy(port)
    yield p
    p.close()
