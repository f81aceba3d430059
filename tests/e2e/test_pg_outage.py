"""Store unavailable on PostgreSQL: a private PostgreSQL server that the test stops (`pg_ctl stop -m immediate`,
every connection cut, as in a crash) and starts again. While it is down every store call says StoreUnavailable,
Gumroad gets 503 and the Snapshots API 429 with Retry-After, never 200; once it is back the same engine and the
same `snapbridge serve` process work again, without a restart, and everything is delivered, once."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from test_pipeline_support import FORM, Service, Setup, connect_all, free_port, sale_ping, wait_for

from snapbridge.connectors.snapshots import parse_webhook
from snapbridge.errors import StoreUnavailable
from snapbridge.runtime import snapshots_dedupe_key
from snapbridge.sandbox import Sandboxes, start_sandboxes
from snapbridge.sandbox.snapshots import WebhookDelivery
from snapbridge.store import EventSource, NewInboundEvent, NewJob, NewRun, Store, migrate, open_engine

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# A throwaway server on loopback. fsync off: the test kills the server, never the machine, so what was written
# survives in the OS cache. synchronous_commit stays on: with it off, a commit already acknowledged (a 200)
# could be lost by the immediate stop, which is the server's doing, not the service's.
SERVER_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{base}'
fsync = off
full_page_writes = off
max_connections = 50
"""


class PrivatePostgres:
    """A PostgreSQL server of our own in a temporary folder, run as the `postgres` user when we are root."""

    def __init__(self, bin_dir: Path, base: Path, as_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.as_user = as_user
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 30.0) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"{tool} {args[:1]} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}\n" \
                                     f"server log: {self.log()}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(SERVER_SETTINGS.format(port=self.port, base=self.base))

    def start(self) -> None:
        """Returns once the server accepts connections (`-w`)."""
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "20")

    def stop(self) -> None:
        """Immediate: the server quits without a checkpoint and every client connection is cut, like a crash."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "20")

    def pid(self) -> int | None:
        """The postmaster's process id while it runs (the first line of its lock file)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        path = self.base / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(n) for n in Path(p).parts[4].split(".") if n.isdigit()])
    return Path(found[-1]).parent if found else None


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) to start a private server")
    as_user = None
    # PostgreSQL refuses to run as root: the server runs as the `postgres` user, owning its folder.
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run a private PostgreSQL server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and there is no `runuser` to start PostgreSQL as the postgres user")
        as_user = "postgres"
    # Not under pytest's tmp_path: that folder is root's own (0700) and the postgres user cannot enter it.
    base = Path(tempfile.mkdtemp(prefix="snapbridge-pg-"))
    if as_user is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(bin_dir, base, as_user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        pid = server.pid()
        try:
            if pid is not None:
                try:
                    server.stop()
                except (AssertionError, subprocess.TimeoutExpired):
                    os.kill(pid, signal.SIGKILL)  # the server we started would not stop: it must not outlive us
                    raise
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _event(key: str) -> NewInboundEvent:
    return NewInboundEvent(EventSource.SNAPSHOTS, "hl", key, "LocationUpdate", {}, T0)


def _enqueue(store: Store, key: str) -> None:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", key, T0))
        tx.enqueue([NewJob(run_id, 0, "s0", "a", "hl", key, f"idem-{key}", {})], now=T0)


@pytest.mark.timeout(60)
def test_the_same_store_is_unavailable_while_postgres_is_down_and_works_once_it_is_back(
    private_pg: PrivatePostgres,
) -> None:
    engine = open_engine(private_pg.url)
    migrate(engine)
    store, producer = Store(engine), Store(engine)
    try:
        assert store.insert_events([_event("before")])[0].duplicate is False
        assert store.wait_for_jobs(0.0) is True  # starts listening, on a connection of its own: a wake-up
        assert store.wait_for_jobs(0.0) is False
        _enqueue(producer, "before")
        assert store.wait_for_jobs(10.0) is True
        private_pg.stop()
        private_pg.start()
        # A restart nobody saw: the pool still holds connections the stop cut, and must not hand them out.
        assert [r.duplicate for r in store.insert_events([_event("before")])] == [True]
        private_pg.stop()

        def in_transaction() -> None:
            with store.transaction() as tx:
                tx.set_cursor("c", "1")

        calls: dict[str, Callable[[], object]] = {
            "insert_events": lambda: store.insert_events([_event("during")]),
            "claim": lambda: store.claim("w", limit=5, lease_seconds=30, now=T0),
            "take_token": lambda: store.take_token("hl", capacity=5, refill_per_second=1, now=T0),
            "transaction": in_transaction,
            "counts": store.counts,
            "wait_for_jobs": lambda: store.wait_for_jobs(5.0),  # its LISTEN connection was cut
        }
        for name, call in calls.items():
            with pytest.raises(StoreUnavailable) as caught:
                call()
            # In words, what failed and why: not a driver's exception, not a hang.
            message = str(caught.value)
            assert message.startswith("cannot ") and ("refused" in message or "closed" in message), (name, message)

        private_pg.start()
        # No new engine or store: the pool replaces the connections the stop cut.
        assert [r.duplicate for r in store.insert_events([_event("before"), _event("after")])] == [True, False]
        assert [e.dedupe_key for e in store.pending_events(10)] == ["before", "after"]
        assert store.get_cursor("c") is None  # nothing tried during the outage was kept
        assert [job.ordering_key for job in store.claim("w", limit=5, lease_seconds=30, now=T0)] == ["before"]
        assert store.wait_for_jobs(0.0) is True  # listens again: a wake-up, as a notification may have been missed
        assert store.wait_for_jobs(0.0) is False
        _enqueue(producer, "after")
        assert store.wait_for_jobs(10.0) is True
    finally:
        producer.close()
        store.close()
        engine.dispose()


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    """Private sandboxes: the test subscribes to the Snapshots webhooks and reads the sandbox's whole state."""
    started = start_sandboxes(seed=17, time_factor=0.01)
    try:
        yield started
    finally:
        started.stop()


def delivered(boxes: Sandboxes, event_id: str) -> bool:
    state = boxes.snapshots._state
    with state.lock:
        return any(found == event_id for (_, found) in state.events)


def stored_keys(database_url: str) -> Counter[str]:
    engine = open_engine(database_url)
    try:
        with engine.connect() as conn:
            return Counter(str(row[0]) for row in conn.exec_driver_sql("SELECT dedupe_key FROM inbound_events"))
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_a_stopped_postgres_gets_503_and_429_never_200_and_the_same_service_recovers(
    private_pg: PrivatePostgres, boxes: Sandboxes, tmp_path: Path
) -> None:
    setup: Setup = connect_all(tmp_path, private_pg.url, boxes, verify_by_fetch=False)
    service = Service(setup, "--no-pollers", log=tmp_path / "serve.log")
    hook = f"http://127.0.0.1:{setup.port}/hooks/snapshots"
    snapshots = boxes.snapshots
    snapshots.subscribe(hook)
    snapshots.set_webhook_retry_interval(100)  # 1 s between the sender's tries at this time factor
    api = httpx.Client(base_url=boxes.snapshots_url, timeout=10,
                       headers={"Authorization": f"Bearer {setup.snapshots_key.key}", "Version": "2021-07-28"})
    http = httpx.Client(timeout=15)

    def ping(n: int) -> httpx.Response:
        body = sale_ping(setup.seller_id, f"pg-outage-{n}", f"buyer{n}@pg-outage.example", n)
        return http.post(setup.hook_url, content=body, headers={"Content-Type": FORM})

    def ours() -> list[WebhookDelivery]:
        return [d for d in snapshots.webhook_deliveries() if d.url == hook]

    service.start()
    try:
        assert ping(1).status_code == 200
        wait_for(lambda: delivered(boxes, "gumroad-sale-pg-outage-1"), timeout=20, what="the first sale delivered")

        private_pg.stop()
        stopped_at = datetime.now(UTC)  # the sandbox stamps each delivery with the (real) time its answer came
        down = ping(2)
        assert down.status_code == 503, down.text
        name = "Made while PostgreSQL was down"
        made = api.post("/locations", json={"name": name})
        assert made.status_code in (200, 201), made.text
        [first] = wait_for(lambda: [d for d in ours() if name.encode() in d.body], timeout=20,
                           what="the Snapshots webhook to reach the receiver")
        # The sender's own retry, by hand: the same bytes and signature, so this answer is the one it gets.
        resent = http.post(hook, content=first.body, headers=first.headers)
        assert resent.status_code == 429 and int(resent.headers["Retry-After"]) > 0, resent.text
        for answer in (down, resent):
            assert answer.json() == {"error": "the event could not be stored; retry later"}, answer.text
            assert "Traceback" not in answer.text and "psycopg" not in answer.text, answer.text
            assert str(private_pg.port) not in answer.text, answer.text
        assert ping(2).status_code == 503  # still down: never a 200 without a commit
        # Webhooks for the first sale's writes may have been arriving too: every answer while down was a 429.
        while_down = [d for d in ours() if d.sent_at > stopped_at]
        assert {d.status for d in while_down} == {429}, [(d.type, d.attempt, d.status) for d in while_down]

        private_pg.start()
        restarted = time.monotonic()
        # The service was not restarted: its pool must drop the dead connections and open new ones.
        assert ping(2).status_code == 200, service.tail()
        assert ping(3).status_code == 200
        wait_for(lambda: any(d.webhook_id == first.webhook_id and d.status == 200 for d in ours()), timeout=20,
                 what="the Snapshots API's retry to be accepted after the restart")
        sales = [f"gumroad-sale-pg-outage-{n}" for n in (1, 2, 3)]
        wait_for(lambda: all(delivered(boxes, event_id) for event_id in sales), timeout=30,
                 what="every sale delivered after the restart")
        recovered = time.monotonic() - restarted
        tries = [d.status for d in ours() if d.webhook_id == first.webhook_id]
        assert tries[-1] == 200 and tries.count(200) == 1 and set(tries[:-1]) == {429}, tries
        assert service.stop() == 0, service.tail()
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
        api.close()
        http.close()

    keys = stored_keys(private_pg.url)
    expected = [f"gumroad:sale:pg-outage-{n}" for n in (1, 2, 3)] + [webhook_key(first.body)]
    assert {key: keys[key] for key in expected} == dict.fromkeys(expected, 1), keys
    # Every webhook the receiver answered 200, before, during or after the outage, is stored, once.
    acknowledged = {webhook_key(d.body) for d in ours() if d.status == 200}
    assert {key: keys[key] for key in acknowledged} == dict.fromkeys(acknowledged, 1), keys
    writes = [e for e in snapshots.journal.entries()
              if e.api_key == setup.snapshots_key.fingerprint and e.method != "GET" and e.status < 300
              and not e.replayed and e.idempotency_key]
    applied = Counter(e.idempotency_key for e in writes)
    assert applied and max(applied.values()) == 1, applied
    print(f"\nPostgreSQL restarted: everything stored and delivered {recovered:.1f} s later")


def webhook_key(body: bytes) -> str:
    """The dedupe key the receiver stores a Snapshots webhook under (a location's: by its state)."""
    return snapshots_dedupe_key(parse_webhook(body))
