"""`snapbridge sandbox` as a user runs it: a real process that serves, describes itself and stops on a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text(encoding="utf-8").strip():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"sandbox exited early with {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError("sandbox did not write its info file in time")
        time.sleep(0.05)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sandbox_serves_both_apps_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    info_file = tmp_path / "info.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapbridge", "sandbox", "--gumroad-port", "0", "--snapshots-port", "0",
         "--highlevel-port", "0", "--time-factor", "0.01", "--info", str(info_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(info_file, proc)
        info = json.loads(info_file.read_text(encoding="utf-8"))
        gumroad, snapshots = info["gumroad"], info["snapshots"]
        assert set(gumroad) == {"base_url", "access_token", "seller_id"}
        assert set(snapshots) == {"base_url", "keys", "webhook_public_key"}
        highlevel = info["highlevel"]
        locations = httpx.get(f"{highlevel['base_url']}/locations/{highlevel['location_id']}",
                              headers={"Authorization": f"Bearer {highlevel['agency_token']}",
                                       "Version": "2021-07-28"})
        assert locations.status_code == 200, locations.text
        user = httpx.get(f"{gumroad['base_url']}/v2/user",
                         headers={"Authorization": f"Bearer {gumroad['access_token']}"}).json()
        assert user["success"] is True
        full = next(k for k in snapshots["keys"] if "saas/location.read" in k["scopes"])
        page = httpx.get(f"{snapshots['base_url']}/locations",
                         headers={"Authorization": f"Bearer {full['key']}", "Version": "2021-07-28"}).json()
        assert set(page) == {"locations", "meta"}
    finally:
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert gumroad["base_url"] in out and snapshots["base_url"] in out
    assert gumroad["access_token"] in out  # the demo prints its own sandbox credentials on purpose
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["sandbox", "--help"], ["--help"], ["--version"]])
def test_help_and_version_exit_zero(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "snapbridge", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout


def test_bad_option_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "snapbridge", "sandbox", "--time-factor", "-1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--time-factor" in result.stderr and "Traceback" not in result.stderr
