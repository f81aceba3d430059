"""`snapbridge dead-letters`: filters, --json, and pages (--after the last job shown, with the command for the
next page printed when a page is full), over a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_api_support import make_dead_letter

from snapbridge.cli.history import dead_letters_command
from snapbridge.store import Store, migrate, open_engine

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_engine(url)
    migrate(engine)
    store = Store(engine)
    for n in range(5):
        make_dead_letter(store, "welcome" if n % 2 else "churn", f"HTTP 422: bad field {n}",
                         at=T0 + timedelta(seconds=n))
    engine.dispose()
    return {"SNAPBRIDGE_HOME": str(tmp_path / "home"), "SNAPBRIDGE_DATABASE_URL": url}


def _invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(dead_letters_command, list(args), env=env, catch_exceptions=False)


def test_pages_follow_one_another_and_say_how_to_go_on(env: dict[str, str]) -> None:
    first = _invoke(env, "--limit", "2", "--json")
    shown = [json.loads(line)["reason"] for line in first.stdout.splitlines()]
    assert shown == ["HTTP 422: bad field 4", "HTTP 422: bad field 3"]
    last = json.loads(first.stdout.splitlines()[-1])["job"]
    assert f"more may follow: snapbridge dead-letters --after {last} --limit 2" in first.stderr
    rest: list[str] = []
    after = last
    while True:
        page = _invoke(env, "--limit", "2", "--json", "--after", str(after))
        lines = [json.loads(line) for line in page.stdout.splitlines()]
        if not lines:
            break
        rest += [line["reason"] for line in lines]
        after = lines[-1]["job"]
    assert rest == [f"HTTP 422: bad field {n}" for n in (2, 1, 0)]
    assert _invoke(env, "--after", str(after)).stdout.strip() == "no more dead letters"


def test_filters_combine_and_the_next_page_command_keeps_them(env: dict[str, str]) -> None:
    page = _invoke(env, "--workflow", "churn", "--reason", "bad field", "--limit", "1")
    assert page.exit_code == 0 and "churn/" in page.stdout and "bad field 4" in page.stdout
    assert "--workflow churn --reason 'bad field' --after" in page.stderr
    assert _invoke(env, "--connection", "elsewhere").stdout.strip() == "no dead letters match"
