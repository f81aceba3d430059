"""Bad input on the command line as a user meets it: one line "error: ..." on stderr and exit code 2 (usage, bad
input) or 1 (failure); never a traceback, never SQL, never a password from the database URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from snapbridge.cli.history import replay_command
from snapbridge.cli.main import _causes
from snapbridge.errors import SnapbridgeError, StoreUnavailable
from snapbridge.store import AttemptRecord, NewJob, NewRun, Store, migrate, open_engine

CANARY = "canary-pw-5150"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    environ.update({"SNAPBRIDGE_HOME": str(home), **(env or {})})
    done = subprocess.run([sys.executable, "-m", "snapbridge", *args], capture_output=True, text=True,
                          env=environ, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_error(r: Result, code: int, *says: str) -> str:
    """The whole of stderr is one line starting "error: ", holding each of `says`; the exit code is `code`."""
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert r.code == code, (r.code, r.err)
    for text in says:
        assert text in lines[0], (text, lines[0])
    assert CANARY not in r.err + r.out
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    """A plain file where a folder is expected."""
    path = tmp_path / "afile"
    path.write_text("")
    return path


@pytest.fixture
def not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{}")
    return path


TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()  # a day ahead of any time zone

# (arguments, environment, exit code, what the line says); {afile} and {bin} are filled in per test.
CASES = [
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": "sqlite:///{afile}/x.db"}, 1, ["File exists", "{afile}"],
                 id="sqlite-file-under-a-file"),
    pytest.param(["runs"], {"SNAPBRIDGE_HOME": "{afile}/home"}, 1, ["Not a directory", "{afile}/home"],
                 id="home-under-a-file"),
    pytest.param(["connections", "list"], {"SNAPBRIDGE_KEY_FILE": "{afile}/key"}, 1, ["File exists", "{afile}"],
                 id="key-file-under-a-file"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": f"postgresql://u:{CANARY}@127.0.0.1:notaport/db"}, 2,
                 ["database URL is not valid", "port is not a number"], id="url-port-not-a-number"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": f"postgresql://u:{CANARY}/db"}, 2,
                 ["database URL is not valid"], id="url-without-host-password-read-as-port"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": f"postgresql://u:{CANARY}@127.0.0.1:99999/db"}, 2,
                 ["port 99999 is not from 1 to 65535"], id="url-port-too-large"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": "not a url"}, 2, ["database URL is not valid; expected"],
                 id="url-unparsable"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": "sqlite://"}, 2, ["SQLite database in memory"],
                 id="sqlite-in-memory"),
    pytest.param(["runs"], {"SNAPBRIDGE_DATABASE_URL": "sqlite:///"}, 2, ["SQLite database in memory"],
                 id="sqlite-in-memory-slash"),
    pytest.param(["serve", "--no-pollers"], {"SNAPBRIDGE_LISTEN": "abc"}, 2, ["setting listen: 'abc'", "HOST:PORT"],
                 id="listen-without-port"),
    pytest.param(["serve", "--no-pollers"], {"SNAPBRIDGE_LISTEN": "127.0.0.1:http"}, 2, ["setting listen"],
                 id="listen-port-not-a-number"),
    pytest.param(["runs", "99999999999999999999"], {}, 2, ["99999999999999999999 is not in the range"],
                 id="run-id-past-64-bits"),
    pytest.param(["replay", "--job", "99999999999999999999"], {}, 2, ["--job"], id="job-id-past-64-bits"),
    pytest.param(["serve", "--port", "99999", "--no-pollers"], {}, 2, ["--port", "0<=x<=65535"],
                 id="serve-port-too-large"),
    pytest.param(["sandbox", "--gumroad-port", "-1"], {}, 2, ["--gumroad-port"], id="sandbox-port-negative"),
    pytest.param(["workflows", "validate", "{bin}"], {}, 2, ["{bin} is not UTF-8 text"], id="workflow-not-utf8"),
    pytest.param(["run", "purchase-event", "--event", "{bin}"], {}, 2, ["{bin} is not UTF-8 text"],
                 id="event-not-utf8"),
    pytest.param(["sync", "gumroad", "--since", TOMORROW], {}, 2, ["--since must be today (UTC) or earlier"],
                 id="sync-since-future"),
    pytest.param(["sync", "gumroad", "--since", "2010-12-31"], {}, 2, ["--since must be 2011-01-01 or later"],
                 id="sync-since-before-gumroad"),
    pytest.param(["runs", "--failed", "--status", "dead"], {}, 2, ["--failed and --status"],
                 id="runs-failed-and-status"),
    pytest.param(["replay", "--all", "--workflow", "welcome"], {}, 2, ["--all"], id="replay-all-with-a-filter"),
    pytest.param(["replay", "--all"], {}, 1, ["there are no dead letters to replay"], id="replay-all-none"),
]


@pytest.mark.parametrize(("args", "env", "code", "says"), CASES)
def test_bad_input_is_one_error_line(home: Path, afile: Path, not_utf8: Path, args: list[str],
                                     env: dict[str, str], code: int, says: list[str]) -> None:
    def fill(text: str) -> str:
        return text.replace("{afile}", str(afile)).replace("{bin}", str(not_utf8))

    r = cli(home, *map(fill, args), env={k: fill(v) for k, v in env.items()})
    assert_one_error(r, code, *map(fill, says))


def test_postgres_not_listening_is_one_line_naming_where(home: Path) -> None:
    port = _closed_port()
    r = cli(home, "runs", env={"SNAPBRIDGE_DATABASE_URL": f"postgresql://u:{CANARY}@127.0.0.1:{port}/db"})
    line = assert_one_error(r, 1, f"cannot connect to the database at 127.0.0.1:{port}: connection refused")
    assert line.count("refused") == 1 and "sqlalche.me" not in line and "OperationalError" not in line


def test_serve_on_a_port_in_use_says_so_before_any_banner(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = cli(home, "serve", "--port", str(port), "--no-pollers")
    assert_one_error(r, 1, f"cannot listen on 127.0.0.1:{port}: address already in use")
    assert "listening" not in r.out + r.err


def test_sandbox_info_file_that_cannot_be_written(home: Path, afile: Path) -> None:
    r = cli(home, "sandbox", "--gumroad-port", "0", "--snapshots-port", "0", "--highlevel-port", "0",
            "--info", str(afile / "info.json"))
    assert_one_error(r, 1, f"cannot write {afile / 'info.json'}: Not a directory")


def test_runs_says_nothing_matches_when_filters_find_nothing(home: Path) -> None:
    assert cli(home, "runs").out == "no runs yet\n"
    filtered = cli(home, "runs", "--workflow", "nosuch")
    assert (filtered.code, filtered.out, filtered.err) == (0, "no runs match\n", "")


def _dead(store: Store, workflow: str) -> tuple[int, int]:
    """A run of `workflow` whose one step died: (job id, run id)."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, None, "purchase", f"customer:{workflow}", T0))
        tx.enqueue([NewJob(run_id, 0, "s0", "customers.update", "snapshots", f"key:{run_id}", f"{run_id}-0",
                           {})], now=T0)
    (job,) = [j for j in store.claim("w", limit=50, lease_seconds=30, now=T0) if j.run_id == run_id]
    store.dead_letter(job, attempt=AttemptRecord(T0, 1.0, 422), reason="HTTP 422", now=T0)
    return job.id, run_id


def test_replay_options_narrow_each_other(home: Path) -> None:
    home.mkdir()
    engine = open_engine(f"sqlite:///{home / 'snapbridge.db'}")
    try:
        migrate(engine)
        store = Store(engine)
        (job1, run1), (_job2, run2) = _dead(store, "welcome"), _dead(store, "upsell")
        store.close()
    finally:
        engine.dispose()
    assert_one_error(cli(home, "replay", "--job", str(job1), "--run", str(run2)), 1,
                     f"error: no dead letter matches --job {job1} --run {run2}")
    assert_one_error(cli(home, "replay", "--job", "424242"), 1, "error: no dead letter matches --job 424242")
    both = cli(home, "replay", "--job", str(job1), "--run", str(run1))
    assert (both.code, both.out, both.err) == (0, "queued 1 job(s) again\n", "")


def test_replay_help_says_the_options_narrow_each_other() -> None:
    text = " ".join(replay_command.get_help(click.Context(replay_command, info_name="replay")).split())
    assert "narrow each other" in text and "--all, given alone, replays every dead letter" in text
    assert "Every dead letter (given alone)" in text


def test_causes_say_each_thing_once_and_only_a_library_errors_first_line() -> None:
    try:
        try:
            try:
                raise OSError("All connection attempts failed")
            except OSError as exc:
                raise ConnectionError("All connection attempts failed") from exc
        except ConnectionError as exc:
            raise SnapbridgeError("GET /v2/sales failed (ConnectError): All connection attempts failed") from exc
    except SnapbridgeError as exc:
        assert _causes(exc) == "GET /v2/sales failed (ConnectError): All connection attempts failed"

    class OperationalError(Exception):
        pass

    library = OperationalError(f"(sqlite3.OperationalError) database is locked\n[SQL: SELECT '{CANARY}']\n"
                               "(Background on this error at: https://sqlalche.me/e/21/e3q8)")
    wrapped = StoreUnavailable("cannot migrate the database: OperationalError")
    wrapped.__cause__ = library
    assert _causes(wrapped) == "cannot migrate the database: database is locked"
