"""Where the server and token come from, exactly as the ``minitower`` CLI
decides (``crates/cli/src/config.rs`` and ``commands/mod.rs``):

1. the arguments given to :class:`~minitower.Client`;
2. the environment: ``MINITOWER_SERVER_URL``, ``MINITOWER_TOKEN``;
3. the saved profile: ``MINITOWER_PROFILE`` (or ``profile=``) names it, else
   the file's ``current`` profile, else ``default``;
4. for the server only: ``http://127.0.0.1:8080``.

The profile file is ``$MINITOWER_CONFIG``, else
``$XDG_CONFIG_HOME/minitower/config.toml``, else
``~/.config/minitower/config.toml``. Empty variables count as unset. A
profile named explicitly (argument or ``MINITOWER_PROFILE``) must exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ._errors import ConfigError

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"

ENV_SERVER = "MINITOWER_SERVER_URL"
ENV_TOKEN = "MINITOWER_TOKEN"
ENV_PROFILE = "MINITOWER_PROFILE"
ENV_CONFIG = "MINITOWER_CONFIG"


@dataclass(frozen=True)
class Profile:
    """One saved server + token (``[profiles.NAME]``)."""

    server: str
    token: Optional[str] = None
    team: Optional[str] = None


@dataclass(frozen=True)
class Settings:
    """The resolved server and token, and where they came from."""

    server: str
    token: Optional[str]
    profile: Optional[str]
    config_path: Optional[Path]


def _env(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    return value if value else None


def config_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The CLI's config file path (it need not exist)."""
    env = os.environ if environ is None else environ
    explicit = _env(env, ENV_CONFIG)
    if explicit:
        return Path(explicit)
    xdg = _env(env, "XDG_CONFIG_HOME")
    if xdg:
        base = Path(xdg)
    else:
        home = _env(env, "HOME")
        base = (Path(home) if home else Path.home()) / ".config"
    return base / "minitower" / "config.toml"


def _parse_toml(text: str) -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+

        return tomllib.loads(text)
    except ModuleNotFoundError:
        pass
    try:
        import tomli  # type: ignore[import-not-found]

        return tomli.loads(text)  # type: ignore[no-any-return]
    except ModuleNotFoundError:
        return _parse_simple_toml(text)


_TABLE = re.compile(r'^\[\s*profiles\s*\.\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+))\s*\]$')
_KEY = re.compile(r'^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$')


def _unescape(s: str) -> str:
    return re.sub(
        r'\\(["\\nt])',
        lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
        s,
    )


def _parse_simple_toml(text: str) -> Dict[str, Any]:
    """The subset the CLI writes (Python < 3.11 without ``tomli``): top-level
    ``current = "..."`` and ``[profiles.NAME]`` tables of string keys."""
    out: Dict[str, Any] = {"profiles": {}}
    table: Optional[Dict[str, Any]] = out
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            m = _TABLE.match(line)
            if line.replace(" ", "") == "[profiles]":
                table = None
                continue
            if not m:
                raise ValueError(f"line {n}: unsupported table {line!r}")
            name = _unescape(m.group(1)) if m.group(1) is not None else m.group(2)
            table = out["profiles"].setdefault(name, {})
            continue
        m = _KEY.match(line)
        if not m or table is None:
            raise ValueError(f"line {n}: unsupported line {line!r}")
        table[m.group(1)] = _unescape(m.group(2))
    return out


def load_profiles(path: Path) -> Dict[str, Any]:
    """Reads the config file; a missing file is an empty config."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: {e}") from e
    try:
        data = _parse_toml(text)
    except ValueError as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path} is not a valid config file: {e}") from e
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"{path} is not a valid config file: profiles must be tables")
    current = data.get("current")
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path} is not a valid config file: current must be a string")
    return data


def check_server_url(server: str) -> str:
    """Refuses a server that is not an http(s) URL, saying how to fix it."""
    lower = server.lower()
    if lower.startswith("http://") or lower.startswith("https://"):
        return server.rstrip("/")
    if "://" in server:
        hint = "only http:// and https:// are supported"
    else:
        hint = f"add the scheme: http://{server}"
    raise ConfigError(f"invalid server URL {server!r}: {hint}")


def resolve(
    server: Optional[str] = None,
    token: Optional[str] = None,
    profile: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Resolves the server and token the way the CLI does."""
    env = os.environ if environ is None else environ
    server = server or _env(env, ENV_SERVER)
    token = token or _env(env, ENV_TOKEN)
    named = profile or _env(env, ENV_PROFILE)

    path: Optional[Path] = None
    chosen: Optional[Profile] = None
    profile_name: Optional[str] = None
    # The file is read unless both values are already known and no profile
    # was named (then there is nothing to take from it nor to check).
    if named or server is None or token is None:
        path = config_path(env)
        data = load_profiles(path)
        profiles: Dict[str, Dict[str, Any]] = data.get("profiles", {})
        if named and named not in profiles:
            known = ", ".join(sorted(profiles)) or "there are none yet: `minitower login` saves one"
            label = "existing: " + known if profiles else known
            raise ConfigError(f"no such profile {named!r} in {path} ({label})")
        profile_name = named or data.get("current") or DEFAULT_PROFILE
        raw = profiles.get(profile_name)
        if raw is not None:
            chosen = Profile(
                server=str(raw.get("server", "")),
                token=raw.get("token") or None,
                team=raw.get("team"),
            )
        else:
            profile_name = None

    if server is None and chosen is not None and chosen.server:
        server = chosen.server
    if token is None and chosen is not None:
        token = chosen.token
    return Settings(
        server=check_server_url(server or DEFAULT_SERVER),
        token=token,
        profile=profile_name,
        config_path=path,
    )
