"""The SDK against a real minitowerd + minitower-runner (see conftest)."""

from __future__ import annotations

import builtins
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

import minitower
from minitower import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    InvalidInput,
    LogLine,
    NotFound,
    Run,
    Unauthorized,
    WaitTimeout,
)

from conftest import CuttingProxy, Server, free_port, http_json


def test_run_and_wait(client: Client) -> None:
    run = client.run("hello", {"name": "Ada"})
    assert isinstance(run, Run)
    assert isinstance(run.id, int) and run.id > 0
    assert run.status in {"queued", "leased", "running", "completed"}
    assert run.app == "hello" and run.input == {"name": "Ada"}
    assert run.environment == "default" and run.priority == 0

    done = run.wait(timeout=60)
    assert done.id == run.id
    assert done.status == "completed", done
    assert done.finished and done.succeeded
    assert done.exit_code == 0 and done.error_message is None
    assert done.finished_at is not None and done.started_at is not None
    assert done.attempts is not None and [a.status for a in done.attempts] == ["completed"]
    lines = list(client.logs(run.id))
    assert [l.line for l in lines if l.stream == "stdout"] == ["Hello, Ada!"]
    assert {l.stream for l in lines} <= {"stdout", "setup", "system", "event"}  # the runner adds its own

    # Waiting on a finished run answers at once; get_run agrees.
    assert client.wait(run.id).status == "completed"
    assert client.get_run(run.id).status == "completed"


def test_run_options_are_sent(client: Client) -> None:
    first = client.run("hello", {"name": "Key"}, version=1, priority=5, idempotency_key="sdk-idem-1")
    again = client.run("hello", {"name": "Key"}, idempotency_key="sdk-idem-1")
    assert again.id == first.id, "the idempotency key returns the first run"
    assert first.priority == 5 and first.version_no == 1
    assert first.wait(timeout=60).status == "completed"


def test_named_priority_and_job_overrides(client: Client) -> None:
    # Parked where no runner serves, then cancelled: only the fields matter.
    client._json("POST", "/api/v1/environments", json_body={"name": "parked"})
    run = client.run(
        "hello",
        {"name": "Jobs"},
        priority="best_effort",
        pty=(100, 30),
        limits={"memory": "64MiB"},
        environment="parked",
    )
    assert (run.priority, run.priority_name) == (-100, "best_effort")
    assert run.raw["job_overrides"] == {"pty": {"cols": 100, "rows": 30}, "limits": {"memory": "64MiB"}}
    client.cancel(run.id)
    with pytest.raises(BadRequest) as e:
        client.run("hello", {"name": "Jobs"}, ref="v1")
    assert "ref" in str(e.value)


def test_wait_by_polling(client: Client) -> None:
    run = client.run("hello", {"name": "Poll"})
    done = client._wait_poll(run.id, time.monotonic() + 60)
    assert done.status == "completed"


def test_wait_times_out_then_cancel(client: Client) -> None:
    # No runner serves this environment: the run stays queued. (The team must
    # have the environment; the SDK has no call for that, the API does.)
    client._json("POST", "/api/v1/environments", json_body={"name": "nowhere"})
    run = client.run("hello", {"name": "Nobody"}, environment="nowhere")
    assert run.environment == "nowhere" and run.status == "queued"
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        run.wait(timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 10, elapsed
    assert isinstance(info.value, TimeoutError)
    assert info.value.run is not None and info.value.run.status == "queued"

    cancelled = run.cancel()
    assert cancelled.status == "cancelled"
    assert run.wait(timeout=10).status == "cancelled"
    # Cancelling a finished run is a conflict.
    with pytest.raises(Conflict) as err:
        client.cancel(run.id)
    assert err.value.status == 409 and err.value.code == "conflict"


def test_logs_plain(client: Client, apps: Dict[str, int], gate_dir: Path) -> None:
    run = client.run("slow", {"lines": 4})
    assert run.wait(timeout=60).status == "completed"
    everything = list(client.logs(run.id))
    seqs = [l.seq for l in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "ascending, no repeats"
    assert all(isinstance(l, LogLine) and l.attempt_no == 1 and l.logged_at for l in everything)
    lines = [l for l in everything if l.stream == "stdout"]
    assert [l.line for l in lines] == [f"line {i}" for i in range(1, 5)]
    # after_seq skips what was read already.
    after = [l.line for l in client.logs(run.id, after_seq=lines[1].seq) if l.stream == "stdout"]
    assert after == ["line 3", "line 4"]
    # follow on a finished run replays everything and ends.
    stream = client.logs(run.id, follow=True)
    assert [(l.seq, l.line) for l in stream] == [(l.seq, l.line) for l in everything]
    assert stream.status == "completed"


def test_logs_follow_live(client: Client, apps: Dict[str, int], gate_dir: Path) -> None:
    gate = gate_dir / "live"
    run = client.run("slow", {"lines": 3, "gate": str(gate)})
    got: List[LogLine] = []
    with client.logs(run.id, follow=True) as stream:
        for line in stream:
            if line.stream != "stdout":
                continue
            got.append(line)
            nxt = len(got) + 1
            if nxt <= 3:
                # The script prints the next line only once this one has
                # arrived here: the stream delivers lines live.
                assert client.get_run(run.id).status == "running"
                (gate_dir / f"live.{nxt}").touch()
    assert [l.line for l in got] == ["line 1", "line 2", "line 3"]
    assert stream.status == "completed"


def test_logs_follow_resumes_after_a_dropped_connection(
    server: Server, apps: Dict[str, int], gate_dir: Path, proxy: CuttingProxy
) -> None:
    client = Client(server=proxy.url, token=server.token)
    gate = gate_dir / "cut"
    run = client.run("slow", {"lines": 4, "gate": str(gate)})
    got: List[str] = []
    stream = client.logs(run.id, follow=True)
    for line in stream:
        if line.stream != "stdout":
            continue
        got.append(line.line)
        if len(got) == 2:
            cut_at = stream.last_seq
            proxy.cut()  # the connection drops mid-stream
        nxt = len(got) + 1
        if nxt <= 4:
            (gate_dir / f"cut.{nxt}").touch()
    assert got == ["line 1", "line 2", "line 3", "line 4"], "no line lost or repeated"
    assert stream.status == "completed"
    resumed = [r for r in proxy.requests if b"/logs/stream" in r and b"last-event-id" in r.lower()]
    assert resumed, "the reconnect carries Last-Event-ID"
    assert any(f"last-event-id: {cut_at}\r\n".encode() in r.lower() for r in resumed), resumed


def test_failing_script_result(client: Client, apps: Dict[str, int]) -> None:
    run = client.run("fail")
    done = run.wait(timeout=60)
    assert done.status == "failed" and not done.succeeded and done.finished
    assert done.exit_code == 3
    result = client.result(run.id)
    assert (result.status, result.exit_code, result.finished, result.succeeded) == ("failed", 3, True, False)
    assert done.attempts and done.attempts[-1].exit_code == 3
    streams = {(l.stream, l.line) for l in client.logs(run.id)}
    assert ("stdout", "about to fail") in streams
    assert ("stderr", "something went wrong") in streams
    assert any(r.id == run.id for r in client.runs(status="failed"))


def test_lists(client: Client, apps: Dict[str, int]) -> None:
    slugs = {a.slug: a for a in client.apps()}
    assert {"hello", "fail", "slow", "greet"} <= set(slugs)
    assert slugs["hello"].latest_version == 1
    assert client.app("greet").latest_version == apps["greet"]
    versions = client.versions("greet")
    assert versions[0].version_no == apps["greet"] and versions[0].params_schema is not None
    assert versions[0].entrypoint == "main.py" and len(versions[0].artifact_sha256) == 64

    run = client.run("hello", {"name": "Listed"})
    run.wait(timeout=60)
    listed = client.runs(app="hello", limit=5)
    assert 1 <= len(listed) <= 5 and all(r.app == "hello" for r in listed)
    assert listed[0].id == run.id, "newest first"
    assert [r.id for r in client.runs(app="hello", status="completed", limit=500)].count(run.id) == 1
    assert client.runs(app="no-such-app") == []
    summary = client.summary()
    assert summary["completed"] >= 1 and "queued" in summary
    me = client.me()
    assert me.team.slug == "sdk" and me.role == "admin"


def test_error_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as err:
        client.get_run(987654321)
    assert err.value.status == 404 and err.value.code == "not_found"
    assert isinstance(err.value, ApiError)
    with pytest.raises(NotFound):
        client.app("no-such-app")
    with pytest.raises(NotFound):
        client.run("no-such-app")
    with pytest.raises(NotFound):
        list(client.logs(987654321))
    with pytest.raises(NotFound):
        list(client.logs(987654321, follow=True))


def test_error_unauthorized(server: Server) -> None:
    bad = Client(server=server.url, token="not-a-token")
    with pytest.raises(Unauthorized) as err:
        bad.apps()
    assert err.value.status == 401 and err.value.code == "unauthorized"
    none = Client(server=server.url, token=None)
    none.token = None  # whatever the environment holds
    with pytest.raises(Unauthorized) as err:
        none.runs()
    assert "MINITOWER_TOKEN" in err.value.message


def test_error_forbidden(server: Server, client: Client) -> None:
    member = http_json("POST", f"{server.url}/api/v1/tokens", server.token, {"name": "sdk-member", "role": "member"})
    c = Client(server=server.url, token=member["token"])
    assert c.me().role == "member"
    with pytest.raises(Forbidden) as err:
        c.runners()
    assert err.value.status == 403 and err.value.code == "forbidden"
    assert any(r.name == "sdk-test-runner" and r.status == "online" for r in client.runners())


def test_error_invalid_input(client: Client, apps: Dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as err:
        client.run("greet", {"name": 5})
    e = err.value
    assert e.status == 400 and e.code == "invalid_input"
    assert isinstance(e, BadRequest) and "/name" in e.message
    with pytest.raises(InvalidInput):
        client.run("greet", {})  # required property missing
    ok = client.run("greet", {"name": "Schema"}).wait(timeout=60)
    assert ok.status == "completed"


def test_error_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest) as err:
        client.runs(limit=0)
    assert err.value.status == 400 and err.value.code == "invalid_request"
    assert not isinstance(err.value, InvalidInput)
    assert minitower.InvalidRequest is BadRequest
    with pytest.raises(BadRequest) as err:
        client.create_app("Not A Slug")
    assert err.value.code == "invalid_request"
    with pytest.raises(Conflict):
        client.create_app("hello")


def test_error_connection() -> None:
    c = Client(server=f"http://127.0.0.1:{free_port()}", token="x", timeout=5)
    with pytest.raises(minitower.ConnectionError) as err:
        c.apps()
    assert err.value.status is None and err.value.code == "connection_error"
    assert isinstance(err.value, builtins.ConnectionError) and isinstance(err.value, ApiError)


def test_client_from_environment(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("MINITOWER_CONFIG", "XDG_CONFIG_HOME", "MINITOWER_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MINITOWER_SERVER_URL", server.url)
    monkeypatch.setenv("MINITOWER_TOKEN", server.token)
    assert Client().me().team.slug == server.team


def test_client_from_a_profile_the_cli_wrote(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Path(os.environ.get("MINITOWER_CLI_BIN") or
               Path(os.environ.get("CARGO_TARGET_DIR") or Path(__file__).resolve().parents[3] / "target")
               / "debug" / "minitower")
    if not cli.is_file():
        pytest.skip(f"{cli} is not built (cargo build -p minitower-cli)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINITOWER_")}
    env["HOME"] = str(tmp_path)
    env.pop("XDG_CONFIG_HOME", None)
    subprocess.run([str(cli), "login", "--server", server.url, "--token", server.token],
                   env=env, check=True, capture_output=True, timeout=60)
    assert (tmp_path / ".config/minitower/config.toml").is_file()
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("MINITOWER_CONFIG", "XDG_CONFIG_HOME", "MINITOWER_PROFILE", "MINITOWER_SERVER_URL", "MINITOWER_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    c = Client()
    assert c.server == server.url and c.token == server.token
    assert c.me().team.slug == server.team
