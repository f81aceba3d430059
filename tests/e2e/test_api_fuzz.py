"""The management API fuzzed from its own OpenAPI document (schemathesis, bounded): no 5xx, responses conform.

The app is served on loopback with an admin API token; schemathesis runs as its CLI in a subprocess, so its
summary line is what the lead quotes, and it lands in artifacts/schemathesis-summary.txt.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, serve_app, signed_in

from snapbridge.sandbox import Sandboxes

pytest.importorskip("schemathesis")

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
# Revoking tokens by id would sooner or later revoke the fuzzer's own token and leave it with 401s only.
EXCLUDED = "DELETE /api/v1/tokens/{token_id}"
SUMMARY = Path(__file__).resolve().parents[2] / "artifacts" / "schemathesis-summary.txt"


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


def admin_token(base_url: str) -> str:
    with httpx.Client(base_url=base_url) as browser:
        csrf = signed_in(browser)
        made = browser.post("/api/v1/tokens", json={"name": "fuzz", "role": "admin"},
                            headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text[:300]
        token: str = made.json()["token"]
        return token


def test_openapi_fuzzing_finds_no_server_error(served: Served, tmp_path: Path) -> None:
    token = admin_token(served.base_url)
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{served.base_url}/api/v1/openapi.json",
               "--header", f"Authorization: Bearer {token}", "--checks", ",".join(CHECKS),
               "--exclude-name", EXCLUDED, "--max-examples", "3", "--seed", "1",
               "--generation-database", "none", "--request-timeout", "10", "--no-color"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout.replace(token, "****") + done.stderr.replace(token, "****")
    cases = re.search(r"^\s*(\d+) generated, (.+)$", output, re.MULTILINE)
    final = [line for line in output.splitlines() if line.startswith("=")][-1:]
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(f"{cases.group(0).strip() if cases else '?'}\n{final[0] if final else '?'}\n")
    assert done.returncode == 0, output[-4000:]
    assert cases is not None and cases.group(2) == f"{cases.group(1)} passed", output[-4000:]
    selected, tested = re.search(r"Selected: (\d+)/(\d+)", output), re.search(r"Tested: (\d+)", output)
    assert selected and tested, output[-2000:]
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)) - 1  # all but EXCLUDED
    assert "Authentication failed" not in output, "the token stopped working during the run"


@pytest.mark.parametrize("credential", ["tökén", "two words", "tab\there", "line\nbreak"])
def test_a_credential_that_cannot_travel_in_a_header_is_refused(served: Served, credential: str) -> None:
    # The fuzzer's first find: a non-ASCII credential reached the outgoing Authorization header and gave a 500.
    token = admin_token(served.base_url)
    answer = httpx.post(f"{served.base_url}/api/v1/connections", json={"app": "gumroad", "credential": credential},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 422, answer.text[:300]
    assert credential not in answer.text
