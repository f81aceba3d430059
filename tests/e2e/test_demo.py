"""`make run`'s demo as a newcomer sees it: sandboxes, snapbridge connected, data flowing to the Snapshots API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_connects_everything_and_data_flows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "snapbridge", "demo", "--any-ports", "--home", str(tmp_path / "demo"),
         "--duration", "12", "--interval", "0.5"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
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
