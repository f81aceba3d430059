"""Settings: read once from the environment and `snapbridge.toml`, then passed down as a value."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from snapbridge.errors import InvalidInput

__all__ = ["Settings", "load_settings"]

ENV_PREFIX = "SNAPBRIDGE_"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    gumroad_base_url: str = "https://api.gumroad.com"
    snapshots_base_url: str = "https://services.leadconnectorhq.com"
    highlevel_base_url: str = "https://services.leadconnectorhq.com"
    key_file: Path | None = None
    secret_key: str | None = field(default=None, repr=False)
    listen: str = "127.0.0.1:8080"
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    http_timeout_seconds: float = 10.0
    max_response_bytes: int = 10_485_760

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.home / "secret.key"


_INT_FIELDS = {"max_body_bytes", "max_response_bytes"}
_FLOAT_FIELDS = {"http_timeout_seconds"}
_PATH_FIELDS = {"key_file"}
_KNOWN = {
    "database_url", "gumroad_base_url", "snapshots_base_url", "highlevel_base_url", "key_file", "secret_key", "listen",
    "allowed_hosts", "max_body_bytes", "http_timeout_seconds", "max_response_bytes",
}


def _listen(raw: str) -> str:
    """HOST:PORT, as the receiver binds it (port 0: any free port)."""
    host, _, port = raw.strip().rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise InvalidInput(f"setting listen: {raw!r} is not HOST:PORT with a port from 0 to 65535 "
                           "(e.g. 127.0.0.1:8080)")
    return f"{host}:{int(port)}"


def _coerce(name: str, raw: object) -> object:
    try:
        if name in _INT_FIELDS:
            return int(str(raw))
        if name in _FLOAT_FIELDS:
            return float(str(raw))
    except ValueError as exc:
        raise InvalidInput(f"setting {name}: {raw!r} is not a number") from exc
    if name in _PATH_FIELDS:
        return Path(str(raw)).expanduser()
    if name == "listen":
        return _listen(str(raw))
    if name == "allowed_hosts":
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(raw)


def load_settings(environ: Mapping[str, str] | None = None, toml_path: Path | None = None) -> Settings:
    """Settings from `SNAPBRIDGE_*` variables, which override `snapbridge.toml` in the data directory."""
    env = os.environ if environ is None else environ
    home = Path(env.get(f"{ENV_PREFIX}HOME", "~/.snapbridge")).expanduser()
    path = toml_path or home / "snapbridge.toml"
    values: dict[str, object] = {}
    if path.exists():
        try:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path}: {exc}") from exc
        unknown = sorted(set(loaded) - _KNOWN)
        if unknown:
            raise InvalidInput(f"{path}: unknown settings {unknown}; known: {sorted(_KNOWN)}")
        values.update(loaded)
    for name in _KNOWN:
        if f"{ENV_PREFIX}{name.upper()}" in env:
            values[name] = env[f"{ENV_PREFIX}{name.upper()}"]
    coerced = {name: _coerce(name, raw) for name, raw in values.items()}
    coerced.setdefault("database_url", f"sqlite:///{home / 'snapbridge.db'}")
    return Settings(home=home, **coerced)  # type: ignore[arg-type]
