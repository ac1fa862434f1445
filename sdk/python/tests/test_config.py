"""Profile and environment resolution (no server): the same order as the
CLI, with a temporary HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from minitower import Client, ConfigError
from minitower._config import DEFAULT_SERVER, _parse_simple_toml, config_path, resolve

CLI_WRITTEN = """\
current = "work"

[profiles.default]
server = "http://default.example:8080"
token = "tok-default"
team = "acme"

[profiles.work]
server = "http://work.example:9000"
token = "tok-work"

[profiles."with.dot"]
server = "https://dot.example"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("MINITOWER_CONFIG", "XDG_CONFIG_HOME", "MINITOWER_PROFILE",
              "MINITOWER_SERVER_URL", "MINITOWER_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    yield tmp_path


def write(path: Path, text: str = CLI_WRITTEN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nothing_configured(home: Path) -> None:
    s = resolve()
    assert s.server == DEFAULT_SERVER == "http://127.0.0.1:8080"
    assert s.token is None and s.profile is None
    assert s.config_path == home / ".config/minitower/config.toml"
    c = Client()
    assert c.server == DEFAULT_SERVER and c.token is None


def test_current_profile_then_named(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config/minitower/config.toml")
    s = resolve()
    assert (s.server, s.token, s.profile) == ("http://work.example:9000", "tok-work", "work")
    monkeypatch.setenv("MINITOWER_PROFILE", "default")
    s = resolve()
    assert (s.server, s.token, s.profile) == ("http://default.example:8080", "tok-default", "default")
    # The argument beats the variable.
    c = Client(profile="with.dot")
    assert (c.server, c.token, c.profile) == ("https://dot.example", None, "with.dot")


def test_default_profile_when_no_current(home: Path) -> None:
    write(home / ".config/minitower/config.toml", CLI_WRITTEN.replace('current = "work"\n', ""))
    assert resolve().token == "tok-default"


def test_config_file_location(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config/minitower/config.toml")
    xdg = write(tmp_path / "xdg/minitower/config.toml",
                '[profiles.default]\nserver = "http://xdg.example"\ntoken = "tok-xdg"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == xdg
    assert resolve().token == "tok-xdg"
    explicit = write(tmp_path / "elsewhere.toml",
                     '[profiles.default]\nserver = "http://explicit.example"\ntoken = "tok-explicit"\n')
    monkeypatch.setenv("MINITOWER_CONFIG", str(explicit))
    assert config_path() == explicit
    assert resolve().server == "http://explicit.example"


def test_variables_override_the_profile_each_on_its_own(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config/minitower/config.toml")
    monkeypatch.setenv("MINITOWER_TOKEN", "tok-env")
    s = resolve()
    assert (s.server, s.token) == ("http://work.example:9000", "tok-env")
    monkeypatch.setenv("MINITOWER_SERVER_URL", "http://env.example/")
    s = resolve()
    assert (s.server, s.token) == ("http://env.example", "tok-env")
    # Arguments beat variables.
    c = Client(server="http://arg.example", token="tok-arg")
    assert (c.server, c.token) == ("http://arg.example", "tok-arg")


def test_empty_variables_count_as_unset(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config/minitower/config.toml")
    for k in ("MINITOWER_TOKEN", "MINITOWER_SERVER_URL", "MINITOWER_PROFILE", "MINITOWER_CONFIG"):
        monkeypatch.setenv(k, "")
    s = resolve()
    assert (s.server, s.token, s.profile) == ("http://work.example:9000", "tok-work", "work")


def test_unknown_profile_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no such profile 'nope'.*none yet"):
        Client(profile="nope")
    write(home / ".config/minitower/config.toml")
    monkeypatch.setenv("MINITOWER_PROFILE", "nope")
    with pytest.raises(ConfigError, match="existing: default, w"):
        Client()


def test_server_url_needs_a_scheme(home: Path) -> None:
    with pytest.raises(ConfigError, match="add the scheme: http://localhost:8080"):
        Client(server="localhost:8080")
    with pytest.raises(ConfigError, match="only http"):
        Client(server="ftp://x")


def test_bad_config_file(home: Path) -> None:
    write(home / ".config/minitower/config.toml", "profiles = 3\n")
    with pytest.raises(ConfigError, match="not a valid config file"):
        Client()
    write(home / ".config/minitower/config.toml", "this is [ not toml\n")
    with pytest.raises(ConfigError, match="not a valid config file"):
        Client()


def test_fallback_parser_reads_what_the_cli_writes() -> None:
    tomllib = pytest.importorskip("tomllib")

    assert _parse_simple_toml(CLI_WRITTEN) == tomllib.loads(CLI_WRITTEN)
    escaped = '[profiles.default]\nserver = "http://x"\ntoken = "a\\"b\\\\c"\n'
    assert _parse_simple_toml(escaped) == tomllib.loads(escaped)
