"""Settings: read once from the environment and `snapbridge.toml`, then passed down as a value."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from snapbridge.errors import InvalidInput

__all__ = ["Settings", "listen_address", "listen_host", "load_settings", "split_listen"]

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


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def listen_host(given: str) -> str:
    """The host of a `--host`, without brackets: a name, an IPv4 or an IPv6 address (bracketed or not)."""
    text = given.strip()
    bracketed = text.startswith("[") and text.endswith("]")
    inner = text[1:-1] if bracketed else text
    if not inner or "[" in inner or "]" in inner or ((bracketed or ":" in inner) and not _is_ipv6(inner)):
        raise InvalidInput(f"{given!r} is not a host name or an IP address (e.g. 127.0.0.1, or ::1 for IPv6)")
    return inner


def listen_address(host: str, port: int | str) -> str:
    """HOST:PORT as a URL names it: an IPv6 host in brackets, so that `http://{listen}` can be opened."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_listen(listen: str) -> tuple[str, str]:
    """(host without brackets, port) of a listen address as `listen_address` writes it."""
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), port


def _listen(raw: str) -> str:
    """HOST:PORT, or [IPv6]:PORT, as the receiver binds it (port 0: any free port).

    An IPv6 address without brackets is refused: in ::1:8080 the port could as well be part of the address."""
    text = raw.strip()
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1] if _is_ipv6(host[1:-1]) else ""
    elif ":" in host or "[" in host or "]" in host:
        host = ""
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise InvalidInput(f"setting listen: {raw!r} is not HOST:PORT with a port from 0 to 65535 "
                           "(e.g. 127.0.0.1:8080, or [::1]:8080 for IPv6)")
    return listen_address(host, int(port))


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
