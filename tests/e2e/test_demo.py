"""`make run`'s demo as a newcomer sees it: sandboxes, snapbridge connected, data flowing to the Snapshots API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from snapbridge.cli.demo import _fresh_home


def test_demo_connects_everything_and_data_flows(tmp_path: Path) -> None:
    # A real installation's settings exported in the shell: the demo must leave that installation alone.
    real = tmp_path / "real"
    env = {**os.environ, "SNAPBRIDGE_HOME": str(real), "SNAPBRIDGE_DATABASE_URL": f"sqlite:///{real / 'prod.db'}",
           "SNAPBRIDGE_KEY_FILE": str(real / "prod.key")}
    done = subprocess.run(
        [sys.executable, "-m", "snapbridge", "demo", "--any-ports", "--home", str(tmp_path / "demo"),
         "--duration", "12", "--interval", "0.5"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not real.exists()
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) >= [".snapbridge-demo", "secret.key",
                                                                     "snapbridge.db"]
    out = done.stdout
    assert "Saved connection 'gumroad'" in out and "Saved connection 'snapshots'" in out
    assert "8 new subscription(s)" in out
    status = [line for line in out.splitlines() if line.startswith("snapshots sandbox writes:")]
    assert status, out[-2000:]
    last = status[-1]
    assert "POST /locations" in last and "POST /events" in last
    succeeded = int(re.search(r"runs: (\d+) succeeded", last).group(1))  # type: ignore[union-attr]
    dead = int(re.search(r"(\d+) dead", last).group(1))  # type: ignore[union-attr]
    assert succeeded > 0 and dead == 0
    assert "Traceback" not in done.stderr


def test_a_home_the_demo_did_not_make_is_not_wiped(tmp_path: Path) -> None:
    home = tmp_path / "mine"
    home.mkdir()
    (home / "important.txt").write_text("keep me")
    done = subprocess.run([sys.executable, "-m", "snapbridge", "demo", "--any-ports", "--home", str(home)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "refusing to wipe --home" in done.stderr and "important.txt" in done.stderr
    assert (home / "important.txt").read_text() == "keep me"


def test_a_home_the_demo_made_is_wiped_even_with_more_in_it(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    _fresh_home(home)
    (home / "snapbridge.db").write_text("old run")
    (home / "notes.txt").write_text("written into the demo's directory")
    _fresh_home(home)
    assert sorted(p.name for p in home.iterdir()) == [".snapbridge-demo"]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(click.UsageError, match="is a file"):
        _fresh_home(file)
