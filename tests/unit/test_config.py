"""Settings: defaults for the embedded deployment, the toml file, and environment variables over both."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapbridge.config import load_settings
from snapbridge.errors import InvalidInput


def test_defaults_serve_the_embedded_deployment(tmp_path: Path) -> None:
    settings = load_settings({"SNAPBRIDGE_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'snapbridge.db'}"
    assert settings.resolved_key_file == tmp_path / "secret.key"
    assert settings.allowed_hosts == ()


def test_environment_overrides_toml(tmp_path: Path) -> None:
    (tmp_path / "snapbridge.toml").write_text(
        'gumroad_base_url = "http://a.example"\nmax_body_bytes = 10\nallowed_hosts = ["127.0.0.1"]\n'
    )
    settings = load_settings({
        "SNAPBRIDGE_HOME": str(tmp_path),
        "SNAPBRIDGE_GUMROAD_BASE_URL": "http://b.example",
        "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1, 10.0.0.0/8",
    })
    assert settings.gumroad_base_url == "http://b.example"
    assert settings.max_body_bytes == 10
    assert settings.allowed_hosts == ("127.0.0.1", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("nope = 1\n", {}, "unknown settings ['nope']"),
        ("max_body_bytes = [\n", {}, "snapbridge.toml"),
        ("", {"SNAPBRIDGE_MAX_BODY_BYTES": "lots"}, "setting max_body_bytes: 'lots' is not a number"),
    ],
)
def test_bad_settings_are_reported(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    (tmp_path / "snapbridge.toml").write_text(toml)
    with pytest.raises(InvalidInput, match=None) as info:
        load_settings({"SNAPBRIDGE_HOME": str(tmp_path), **env})
    assert message in str(info.value)


def test_secret_key_is_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings({"SNAPBRIDGE_HOME": str(tmp_path), "SNAPBRIDGE_SECRET_KEY": "canary-7f3a"})
    assert "canary-7f3a" not in repr(settings)
