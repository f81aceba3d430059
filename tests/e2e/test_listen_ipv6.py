"""An IPv6 listen address as a user gives it: the `listen` setting as [::1]:PORT, `serve --host ::1` or
`--host [::1]`; the receiver binds it, and every URL printed from it (the banner, `snapbridge hooks`) has the
address in brackets, so it can be opened. A bare IPv6 address with a port (::1:8080) is ambiguous and refused
with the one error line every bad listen address gets.

The serve tests need an IPv6 loopback; a machine without one skips them (the parsing tests still run).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from snapbridge.config import listen_address, listen_host, load_settings, split_listen
from snapbridge.errors import InvalidInput
from snapbridge.sandbox import Sandboxes

SNAPSHOTS_SCOPES = ["saas/location.read", "saas/location.write", "events.write", "customers.write",
                    "events.readonly", "customers.readonly"]
BAD_LISTEN = "is not HOST:PORT with a port from 0 to 65535"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")


def _free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def _env(home: Path, **settings: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    environ.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1"})
    environ.update({f"SNAPBRIDGE_{name.upper()}": value for name, value in settings.items()})
    return environ


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snapbridge", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _assert_one_error(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    for text in says:
        assert text in lines[0], (text, lines[0])


# The listen setting: what it becomes, or None when it is refused.
@pytest.mark.parametrize(
    ("given", "listen"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("localhost:0", "localhost:0"),
        ("0.0.0.0:08080", "0.0.0.0:8080"),
        ("[::1]:8080", "[::1]:8080"),
        (" [::1]:65535 ", "[::1]:65535"),
        ("[::]:0", "[::]:0"),
        ("[fe80::1%eth0]:80", "[fe80::1%eth0]:80"),
        ("::1:8080", None),  # ambiguous: 8080 may be the address's last group
        ("::1", None),
        ("[::1", None),
        ("[::1]", None),
        ("[::1]:", None),
        ("[::1]8080", None),
        ("::1]:8080", None),
        ("[::1]:65536", None),  # one past the highest port
        ("[::1]:-1", None),
        ("[127.0.0.1]:80", None),  # brackets hold IPv6 only
        ("[example.com]:80", None),
        ("[]:80", None),
        (":8080", None),
    ],
)
def test_the_listen_setting(tmp_path: Path, given: str, listen: str | None) -> None:
    environ = {"SNAPBRIDGE_HOME": str(tmp_path), "SNAPBRIDGE_LISTEN": given}
    if listen is None:
        with pytest.raises(InvalidInput, match=BAD_LISTEN) as caught:
            load_settings(environ)
        assert "[::1]:8080" in str(caught.value)  # the message shows the IPv6 form
    else:
        assert load_settings(environ).listen == listen


@pytest.mark.parametrize(
    ("given", "host"),
    [("127.0.0.1", "127.0.0.1"), ("localhost", "localhost"), ("::1", "::1"), ("[::1]", "::1"), ("::", "::"),
     ("::1:8080", "::1:8080"),  # as a host alone it is one address: no port to confuse it with
     ("[::1", None), ("::1]", None), ("[]", None), ("", None), ("a:b", None), ("[127.0.0.1]", None)],
)
def test_a_host_given_alone(given: str, host: str | None) -> None:
    if host is None:
        with pytest.raises(InvalidInput, match="is not a host name or an IP address"):
            listen_host(given)
    else:
        assert listen_host(given) == host


@pytest.mark.parametrize(("host", "port", "listen"),
                         [("127.0.0.1", 8080, "127.0.0.1:8080"), ("::1", 8080, "[::1]:8080"), ("::", 0, "[::]:0")])
def test_listen_address_and_back(host: str, port: int, listen: str) -> None:
    assert listen_address(host, port) == listen
    assert split_listen(listen) == (host, str(port))
    url = httpx.URL(f"http://{listen}/healthz")  # the URL built from it names the same host and port
    assert (url.host, url.port) == (host, port)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["serve", "--no-pollers"], {"listen": "::1:8080"}, ["setting listen: '::1:8080'", BAD_LISTEN]),
        (["serve", "--no-pollers"], {"listen": "[::1"}, ["setting listen: '[::1'", BAD_LISTEN]),
        (["serve", "--no-pollers"], {"listen": "[::1]:70000"}, ["setting listen: '[::1]:70000'", BAD_LISTEN]),
        (["hooks"], {"listen": "::1:8080"}, ["setting listen: '::1:8080'"]),
        (["serve", "--host", "[::1", "--no-pollers"], {}, ["--host", "'[::1' is not a host name"]),
        (["serve", "--host", "a:b", "--no-pollers"], {}, ["--host", "'a:b' is not a host name"]),
        (["serve", "--host", "::1", "--port", "65536", "--no-pollers"], {}, ["--port", "0<=x<=65535"]),
        (["hooks", "--public-url", "http://[::1"], {}, ["--public-url must be", "http://[::1]:8080"]),
        (["hooks", "--public-url", "http://::1:8080"], {}, ["--public-url must be"]),
        (["hooks", "--public-url", "http://[::1]:99999"], {}, ["--public-url must be"]),
    ],
)
def test_a_bad_address_is_one_error_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                         says: list[str]) -> None:
    _assert_one_error(_cli(_env(tmp_path / "home", **env), *args), *says)


@pytest.fixture
def connected(sandboxes: Sandboxes, tmp_path: Path) -> Path:
    """A data directory with a Gumroad and a Snapshots connection, so there are hook URLs to print."""
    home = tmp_path / "home"
    key = sandboxes.snapshots.create_key(SNAPSHOTS_SCOPES)
    for args in (["connect", "gumroad", "--access-token", sandboxes.gumroad.access_token,
                  "--base-url", sandboxes.gumroad_url],
                 ["connect", "snapshots", "--api-key", key.key, "--base-url", sandboxes.snapshots_url,
                  "--webhook-public-key", sandboxes.snapshots.webhook_public_key]):
        done = _cli(_env(home), *args)
        assert done.returncode == 0, done.stderr
    return home


def test_hooks_put_an_ipv6_listen_address_in_brackets(connected: Path) -> None:
    done = _cli(_env(connected, listen="[::1]:8080"), "hooks", "--json")
    assert done.returncode == 0, done.stderr
    urls = {h["app"]: h["url"] for h in json.loads(done.stdout)}
    assert urls["snapshots"] == "http://[::1]:8080/hooks/snapshots"
    assert urls["gumroad"].startswith("http://[::1]:8080/hooks/gumroad/")
    for url in urls.values():
        assert httpx.URL(url).host == "::1" and httpx.URL(url).port == 8080

    plain = _cli(_env(connected, listen="[::1]:8080"), "hooks")
    assert plain.returncode == 0 and "http://[::1]:8080/hooks/snapshots" in plain.stdout, plain.stderr
    given = _cli(_env(connected), "hooks", "--json", "--public-url", "http://[::1]:9000/")
    assert {h["url"] for h in json.loads(given.stdout) if h["app"] == "snapshots"} == {
        "http://[::1]:9000/hooks/snapshots"}


class Serving:
    """`snapbridge serve` in a child process, its stderr read line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "snapbridge", "serve", "--no-pollers", *args],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, start: str, timeout: float = 30.0) -> str:
        """The first stderr line starting with `start`, once printed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {start!r} within {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"serve ended ({self.proc.wait()}) before {start!r}: {self.seen}")
            self.seen.append(line)
            if line.startswith(start):
                return line

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._reader.join(timeout=10)  # the pipe is read to its end before it is closed
            assert self.proc.stderr is not None
            self.proc.stderr.close()


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    started: list[Serving] = []
    try:
        yield started
    finally:
        for each in started:
            each.stop()


LISTENING = "snapbridge is listening on "


@needs_ipv6
@pytest.mark.parametrize("how", ["setting", "host", "bracketed-host"])
def test_serve_binds_ipv6_loopback_and_prints_usable_urls(connected: Path, serving: list[Serving],
                                                          how: str) -> None:
    port = _free_ipv6_port()
    if how == "setting":
        service = Serving(_env(connected, listen=f"[::1]:{port}"))
    else:
        service = Serving(_env(connected), "--host", "::1" if how == "host" else "[::1]", "--port", str(port))
    serving.append(service)

    base = service.wait_for(LISTENING).removeprefix(LISTENING)
    assert base == f"http://[::1]:{port}"
    service.wait_for("  workers:")  # the banner's last line: ready
    hooks = {line.split()[0]: line.split()[2] for line in service.seen if "webhooks" in line}
    assert hooks == {"gumroad": f"{base}/hooks/gumroad/****", "snapshots": f"{base}/hooks/snapshots"}

    answer = httpx.get(f"{base}/healthz", timeout=10)  # the printed URL, as printed
    assert answer.status_code == 200
    with pytest.raises(httpx.ConnectError):  # on ::1 only, as asked, not on IPv4 too
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert service.stop() == 0


@needs_ipv6
def test_serve_on_port_0_names_the_ipv6_port_it_got(connected: Path, serving: list[Serving]) -> None:
    service = Serving(_env(connected, listen="[::1]:0"))
    serving.append(service)
    base = service.wait_for(LISTENING).removeprefix(LISTENING)
    url = httpx.URL(base)
    assert base.startswith("http://[::1]:") and url.host == "::1" and url.port not in (None, 0)
    service.wait_for("  workers:")
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    assert service.stop() == 0


@needs_ipv6
def test_serve_on_an_ipv6_port_in_use_says_so_in_one_line(connected: Path) -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _cli(_env(connected), "serve", "--host", "::1", "--port", str(port), "--no-pollers")
    assert "Traceback" not in done.stderr
    assert done.returncode == 1 and done.stderr.splitlines() == [
        f"error: cannot listen on [::1]:{port}: address already in use"], done.stderr
