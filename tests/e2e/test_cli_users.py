"""`snapbridge users` as an operator runs it: add a user to a workspace from a password on stdin, list them, and a
name that differs from an existing one only in letter case is refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _snapbridge(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    environ["SNAPBRIDGE_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "snapbridge", *args], input=stdin, capture_output=True, text=True,
                          env=environ, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_users_are_added_listed_and_a_case_twin_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "no users yet" in _snapbridge(home, "users", "list").stdout
    added = _snapbridge(home, "users", "add", "cleo", "--role", "admin", "--workspace", "acme", "--password-stdin",
                        stdin="a long enough password\n")
    assert added.returncode == 0 and "Added admin 'cleo' to workspace 'acme' (new)." in added.stdout
    twin = _snapbridge(home, "users", "add", "Cleo", "--password-stdin", stdin="a long enough password\n")
    assert twin.returncode != 0
    assert twin.stderr.strip().splitlines() == ["error: user 'Cleo' already exists (as 'cleo')"]
    listed = _snapbridge(home, "users", "list").stdout.split()
    assert listed == ["cleo", "admin", "acme"]
