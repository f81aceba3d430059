"""`snapbridge connect` and `connections` as a user runs them, against the sandboxes, and a canary leak search."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapbridge.sandbox import Sandboxes

SNAPSHOTS_SCOPES = ["saas/location.read", "saas/location.write", "events.write", "customers.write",
                    "events.readonly", "customers.readonly"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    environ.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
                    "SNAPBRIDGE_LOG_LEVEL": "DEBUG", **(env or {})})
    done = subprocess.run([sys.executable, "-m", "snapbridge", *args], capture_output=True, text=True,
                          env=environ, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


def test_gumroad_connects_and_names_the_seller(sandboxes: Sandboxes, home: Path) -> None:
    r = cli(home, "connect", "gumroad", "--access-token", sandboxes.gumroad.access_token,
            "--base-url", sandboxes.gumroad_url)
    assert r.code == 0, r.err
    assert f"seller id {sandboxes.gumroad.seller_id}" in r.out
    listed = cli(home, "connections", "list")
    assert listed.out.startswith("gumroad ") and "view_sales" in listed.out


def test_gumroad_token_without_view_sales_names_the_scope(sandboxes: Sandboxes, home: Path) -> None:
    token = sandboxes.gumroad.create_token(["view_profile"])
    r = cli(home, "connect", "gumroad", "--access-token", token, "--base-url", sandboxes.gumroad_url)
    assert r.code == 1
    assert "MISSING view_sales" in r.out and "nothing was stored" in r.err
    assert "no connections yet" in cli(home, "connections", "list").out


def test_snapshots_key_lacking_location_read_exits_1_and_names_it(sandboxes: Sandboxes, home: Path) -> None:
    key = sandboxes.snapshots.create_key([s for s in SNAPSHOTS_SCOPES if s != "saas/location.read"])
    r = cli(home, "connect", "snapshots", "--api-key", key.key, "--base-url", sandboxes.snapshots_url)
    assert r.code == 1
    assert "MISSING saas/location.read" in r.out
    assert "lacks saas/location.read" in r.err


def test_snapshots_full_key_exits_0_and_names_the_company(sandboxes: Sandboxes, home: Path) -> None:
    key = sandboxes.snapshots.create_key(SNAPSHOTS_SCOPES)
    r = cli(home, "connect", "snapshots", "--api-key", key.key, "--base-url", sandboxes.snapshots_url,
            "--webhook-public-key", sandboxes.snapshots.webhook_public_key)
    assert r.code == 0, r.err
    assert f"company {sandboxes.snapshots.company_id}" in r.out
    assert cli(home, "connections", "test", "snapshots").code == 0


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://127.0.0.1:1", "cannot reach Gumroad at http://127.0.0.1:1"),
        ("http://169.254.169.254", "refused http://169.254.169.254"),
        ("ftp://example.com", "only http and https"),
    ],
)
def test_unusable_url_is_one_line_and_stores_nothing(home: Path, base_url: str, message: str) -> None:
    r = cli(home, "connect", "gumroad", "--access-token", "whatever-token", "--base-url", base_url)
    assert r.code == 1
    assert message in r.err
    assert "no connections yet" in cli(home, "connections", "list").out


@pytest.mark.parametrize(("app", "flag", "credential", "message"), [
    ("gumroad", "--access-token", "OHOQy4_F3wAD3jvPx\nBbEdgOJ1eqI4djFWmbGmotDvKk", "holds a line break"),
    ("snapshots", "--api-key", "sk_live_9f3Kq 2xLmP0vT7rW4yZ8", "holds a line break, a space"),
    ("gumroad", "--access-token", "tok\u00e9n_9f3Kq2xLmP0vT7rW4yZ8", "holds a line break"),
    ("gumroad", "--access-token", "   ", "is empty"),
])
def test_a_credential_that_cannot_be_a_token_is_a_usage_error_never_echoed(
    home: Path, app: str, flag: str, credential: str, message: str
) -> None:
    r = cli(home, "connect", app, flag, credential, "--base-url", "http://127.0.0.1:1")
    assert r.code == 2 and message in r.err, r.err
    for part in credential.replace("\n", " ").split():
        assert part[:6] not in r.out + r.err  # no piece of it, however quoted
    assert "no connections yet" in cli(home, "connections", "list").out


def test_wrong_token_is_one_line(sandboxes: Sandboxes, home: Path) -> None:
    r = cli(home, "connect", "gumroad", "--access-token", "not-a-real-token", "--base-url", sandboxes.gumroad_url)
    assert r.code == 1
    assert "Gumroad refused the credential (401)" in r.err


def test_rotate_key_keeps_connections_working(sandboxes: Sandboxes, home: Path) -> None:
    assert cli(home, "connect", "gumroad", "--access-token", sandboxes.gumroad.access_token,
               "--base-url", sandboxes.gumroad_url).code == 0
    key_before = (home / "secret.key").read_bytes()
    r = cli(home, "connections", "rotate-key")
    assert r.code == 0 and "Re-encrypted 1 connection(s)" in r.out and "retired 1 old key(s)" in r.out
    assert (home / "secret.key").read_bytes() != key_before
    assert cli(home, "connections", "test", "gumroad").code == 0
    assert cli(home, "connections", "remove", "gumroad").code == 0
    assert cli(home, "connections", "test", "gumroad").code == 1


def test_unknown_connection_lists_the_known_ones(sandboxes: Sandboxes, home: Path) -> None:
    cli(home, "connect", "gumroad", "--access-token", sandboxes.gumroad.access_token,
        "--base-url", sandboxes.gumroad_url)
    r = cli(home, "connections", "test", "gumroads")
    assert r.code == 1 and "known: gumroad" in r.err


def test_canary_credentials_never_leak(sandboxes: Sandboxes, home: Path) -> None:
    """Every credential is a fresh canary; search every output, debug log, error and file we write for it."""
    gumroad_canary = sandboxes.gumroad.create_token(["view_sales"])
    snapshots_canary = sandboxes.snapshots.create_key(SNAPSHOTS_SCOPES).key
    webhook_canary = sandboxes.snapshots.webhook_public_key
    wrong_canary = "canary-wrong-7d1f0c2b9e"
    runs = [
        cli(home, "connect", "gumroad", "--access-token", gumroad_canary, "--base-url", sandboxes.gumroad_url),
        cli(home, "connect", "snapshots", "--api-key", snapshots_canary, "--base-url", sandboxes.snapshots_url,
            "--webhook-public-key", webhook_canary),
        cli(home, "connect", "gumroad", "--name", "bad", "--access-token", wrong_canary,
            "--base-url", sandboxes.gumroad_url),
        cli(home, "connect", "snapshots", "--name", "bad2", "--api-key", wrong_canary,
            "--base-url", sandboxes.snapshots_url),
        cli(home, "connect", "gumroad", "--name", "down", "--access-token", wrong_canary,
            "--base-url", "http://127.0.0.1:1"),
        cli(home, "connections", "list"),
        cli(home, "connections", "test", "gumroad"),
        cli(home, "connections", "test", "snapshots"),
        cli(home, "connections", "rotate-key"),
        cli(home, "connections", "test", "snapshots"),
    ]
    assert [r.code for r in runs] == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert any("DEBUG" in r.err for r in runs), "debug logging was not on, so the log search proves nothing"
    canaries = [gumroad_canary, snapshots_canary, webhook_canary, wrong_canary]
    for r in runs:
        for canary in canaries:
            assert canary not in r.out and canary not in r.err
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    for path in files:
        data = path.read_bytes()
        for canary in canaries:
            assert canary.encode() not in data, f"{canary[:6]}… found in {path.name}"


def test_a_test_run_sends_each_step_once_and_a_second_test_is_a_replay(sandboxes: Sandboxes, home: Path) -> None:
    key = sandboxes.snapshots.create_key(SNAPSHOTS_SCOPES)
    assert cli(home, "connect", "gumroad", "--access-token", sandboxes.gumroad.access_token,
               "--base-url", sandboxes.gumroad_url).code == 0
    assert cli(home, "connect", "snapshots", "--api-key", key.key, "--base-url", sandboxes.snapshots_url).code == 0
    first = cli(home, "run", "purchase-event", "--sample", "purchase")
    assert first.code == 0, first.out + first.err
    # purchase-event has two steps: the purchase event and an activity-log event.
    assert first.out.count(" sent ") == 2 and first.out.count("POST /events → 201") == 2
    second = cli(home, "run", "purchase-event", "--sample", "purchase")
    assert second.code == 0 and second.out.count("already applied by an earlier test") == 2
    fingerprint = [e.api_key for e in sandboxes.snapshots.journal.entries(method="POST", path="/events")][-1]
    sent = [e for e in sandboxes.snapshots.journal.entries(method="POST", path="/events") if e.api_key == fingerprint]
    assert [e.replayed for e in sent[-4:]] == [False, False, True, True]


def test_a_test_run_without_connections_says_what_to_do(home: Path) -> None:
    r = cli(home, "run", "purchase-event", "--sample", "purchase")
    assert r.code == 1 and "no connection named 'snapshots'" in r.out


@pytest.mark.parametrize("args", [["hooks", "--public-url", "not a url"],
                                  ["hooks", "register", "--public-url", "ftp://sync.example.com"],
                                  ["hooks", "--public-url", "https://sync.example.com/?x=1", "register"]])
def test_a_public_url_the_apps_could_not_post_to_is_a_usage_error(home: Path, args: list[str]) -> None:
    r = cli(home, *args)
    assert r.code == 2 and "--public-url must be an http(s) address" in r.err, r.err
