"""The dashboard in headless Chromium over a full running service (receiver, deriver, worker) on the sandboxes.

One journey, as a seller would click it: create the admin, sign in, add both connections, install a template,
map a field in the builder and watch the live preview, cause a run, see it succeed; then make the Snapshots
sandbox fail, see the dead letter, clear the fault, filter the dead letters and replay the matching ones from the
trigger, and see it succeed; then the usage charts, drawn from the requests the worker made.

Screenshots of the main pages (desktop, and a phone-sized screen for three of them) go to artifacts/screenshots/,
listed with their pages in artifacts/screenshots/INDEX.txt; the test prints the list (pytest -rP shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_support import cheap_passwords

from snapbridge.config import Settings
from snapbridge.runtime import ServiceOptions, WorkerConfig, hook_urls, run_service
from snapbridge.sandbox import Sandboxes, bind_socket
from snapbridge.security import Vault
from snapbridge.store import ConnectionStore, Store, migrate, open_engine
from snapbridge.web import create_app

pw = pytest.importorskip("playwright.sync_api")
expect = pw.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
INDEX = SCREENSHOTS / "INDEX.txt"
PHONE = {"width": 390, "height": 844}
ALL_SCOPES = ["customers.readonly", "customers.write", "events.readonly", "events.write",
              "saas/location.read", "saas/location.write"]
ADMIN, PASSWORD = "grace", "a long enough browser password"
WAIT_MS = 10_000

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


@dataclass
class Service:
    base_url: str
    connections: ConnectionStore
    vault: Vault


@contextlib.contextmanager
def running_service(tmp_path: Path, boxes: Sandboxes) -> Iterator[Service]:
    """run_service (receiver + deriver + one worker) on its own loop in a thread, on a free loopback port."""
    sock = bind_socket()
    port = sock.getsockname()[1]
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'service.db'}",
                        gumroad_base_url=boxes.gumroad_url, snapshots_base_url=boxes.snapshots_url,
                        allowed_hosts=("127.0.0.1",), http_timeout_seconds=5.0, listen=f"127.0.0.1:{port}")
    engine = open_engine(settings.database_url)
    migrate(engine)
    store, records, vault = Store(engine), ConnectionStore(engine), Vault.open(tmp_path / "key")
    # Retries end after about a second, so a 5xx storm makes a dead letter within the test's budget.
    options = ServiceOptions(pollers=False, worker=WorkerConfig(
        idle_seconds=0.2, horizon=timedelta(seconds=1), base_delay=timedelta(milliseconds=50),
        max_delay=timedelta(milliseconds=200)))
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        await run_service(settings, store, vault, records, options, stop, sock=sock, on_ready=ready.set,
                          make_app=lambda s, st, h, cb: create_app(
                              s, st, h, on_commit=cb, vault=vault, connections=records,
                              passwords=cheap_passwords()))

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            holder["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="snapbridge-service", daemon=True)
    thread.start()
    try:
        assert ready.wait(15), "the service did not start"
        assert "error" not in holder, f"the service failed to start: {holder.get('error')!r}"
        yield Service(f"http://127.0.0.1:{port}", records, vault)
    finally:
        if "loop" in holder:
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(20)
        sock.close()
        store.close()
        engine.dispose()
    assert not thread.is_alive(), "the service did not stop"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return value


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    size = page.viewport_size
    with INDEX.open("a", encoding="utf-8") as index:
        index.write(f"{path}  {page.url}  {size['width']}x{size['height']}\n")


def fresh_screenshots() -> None:
    """Only this run's screenshots stay in the folder, so a stale failure.png cannot mislead."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    INDEX.write_text("")


def run_statuses(page: Any, base: str) -> list[str]:
    page.goto(f"{base}/runs?workflow=purchase-event")
    statuses: list[str] = page.locator("table tbody span.status").all_inner_texts()
    return statuses


def test_browser_journey(tmp_path: Path, sandboxes: Sandboxes) -> None:
    snapshots_key = sandboxes.snapshots.create_key(ALL_SCOPES)
    fresh_screenshots()
    with running_service(tmp_path, sandboxes) as service, pw.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(WAIT_MS)
            base = service.base_url
            try:
                _journey(page, base, service, sandboxes, snapshots_key.key)
            except BaseException:
                with contextlib.suppress(Exception):
                    shot(page, "failure")
                raise
        finally:
            sandboxes.snapshots.clear_faults()
            browser.close()
            print(f"screenshots ({INDEX}):\n{INDEX.read_text(encoding='utf-8')}")


def _journey(page: Any, base: str, service: Service, boxes: Sandboxes, snapshots_key: str) -> None:
    # First run: the dashboard sends a new install to the admin setup, then to sign-in.
    page.goto(base + "/")
    page.wait_for_url(f"{base}/setup")
    shot(page, "01-setup")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Create admin')")
    page.wait_for_url(f"{base}/signin*")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")
    page.wait_for_selector(f"nav >> text=Sign out {ADMIN}")

    # Both connections, each tested on save.
    page.goto(base + "/connections")
    page.select_option("#add-connection select[name=app]", "gumroad")
    page.fill("#add-connection input[name=credential]", boxes.gumroad.access_token)
    page.click("#add-connection button:has-text('Test and save')")
    page.wait_for_selector("p.result.good")
    page.select_option("#add-connection select[name=app]", "snapshots")
    page.fill("#add-connection input[name=credential]", snapshots_key)
    page.fill("#add-connection textarea[name=webhook_public_key]", boxes.snapshots.webhook_public_key)
    page.click("#add-connection button:has-text('Test and save')")
    page.wait_for_selector("p.result.good")
    page.wait_for_selector("table td:text-is('snapshots')")
    assert page.locator("table td:text-is('gumroad')").count() >= 1
    assert snapshots_key not in page.content() and boxes.gumroad.access_token not in page.content()
    page.click("tr:has(td:text-is('snapshots')) button:has-text('Test connection')")
    page.wait_for_selector("p.result.good")
    shot(page, "02-connections")

    # One-click template install.
    page.goto(base + "/templates")
    shot(page, "03-templates")
    page.click("button:has-text('Install purchase-event')")
    page.wait_for_url(f"{base}/workflows*")
    page.wait_for_selector("tr:has(a:text-is('purchase-event')) >> text=enabled")
    shot(page, "04-workflows")

    # The builder: pick a trigger and a field from its sample event; the live preview renders it.
    page.goto(base + "/workflows/builder")
    # Conditions are waited on with `expect` (selector engine): the dashboard's CSP forbids eval'd predicates.
    expect(page.locator("#preview")).to_contain_text("POST")
    page.select_option("#pick-trigger", "gumroad:purchase")
    page.click("#use-trigger")
    fields: list[str] = page.locator("#pick-field option").all_inner_texts()
    assert "event.sale.product_name" in fields, fields[:20]
    page.select_option("#pick-field", "event.sale.product_name")
    page.fill("#yaml", page.input_value("#yaml").replace('type: "{{ event.type }}"', 'type: "sale-of-"'))
    page.focus("#yaml")
    caret = page.input_value("#yaml").index("sale-of-") + len("sale-of-")
    page.locator("#yaml").evaluate("(t, at) => { t.selectionStart = t.selectionEnd = at; }", caret)
    page.click("#insert-field")
    assert "sale-of-{{ event.sale.product_name }}" in page.input_value("#yaml")
    expect(page.locator("#preview")).to_contain_text("sale-of-")
    preview = page.inner_text("#preview")
    assert "POST" in preview and "/events" in preview and "sale-of-{{" not in preview, preview
    shot(page, "05-builder")
    # A test run sends the mapped steps through the connections just added, and shows each step's answer.
    page.click("#test-run")
    expect(page.locator("#test-result")).to_contain_text("sent")
    assert "sale-of-{{ event.sale.product_name }}" in page.input_value("#yaml")
    shot(page, "05b-test-run")
    page.fill("#yaml", page.input_value("#yaml").replace("name: my-workflow", "name: browser-mapped"))
    page.click("#builder button:has-text('Save')")
    page.wait_for_url(f"{base}/workflows*")
    page.wait_for_selector("a:text-is('browser-mapped')")

    # The hook URL is registered with Gumroad (as `snapbridge hooks register` does); a scenario sells.
    hook = next(h for h in hook_urls(service.connections, service.vault, base) if h.app == "gumroad")
    with gumroad_subscription(boxes, hook.url):
        _runs_and_replay(page, base, boxes)


@contextlib.contextmanager
def gumroad_subscription(boxes: Sandboxes, url: str) -> Iterator[None]:
    """Subscribe `url` to Gumroad's sale pings; removed again after, as the session sandbox is shared."""
    api = f"{boxes.gumroad_url}/v2/resource_subscriptions"
    token = boxes.gumroad.access_token
    made = httpx.put(api, data={"access_token": token, "resource_name": "sale", "post_url": url}, timeout=10)
    assert made.status_code == 200 and made.json()["success"], made.text[:300]
    try:
        yield
    finally:
        sub_id = made.json()["resource_subscription"]["id"]
        httpx.delete(f"{api}/{sub_id}", params={"access_token": token}, timeout=10)


def _runs_and_replay(page: Any, base: str, boxes: Sandboxes) -> None:
    def sell() -> None:
        boxes.gumroad.emit("first_purchase")

    sell()
    wait_until(lambda: run_statuses(page, base) == ["succeeded"], "the first run to succeed")
    shot(page, "06-runs")
    page.click("table tbody a")
    page.wait_for_selector("h1 >> text=succeeded")
    page.wait_for_selector("summary >> text=HTTP 20")
    shot(page, "07-run-detail")

    # The Snapshots sandbox fails every request: the retries run out and the job becomes a dead letter.
    boxes.snapshots.set_faults(error_rate=1.0, error_statuses=[503])
    try:
        sell()
        wait_until(lambda: "dead" in run_statuses(page, base), "a dead run")
        page.goto(base + "/dead-letters")
        page.wait_for_selector("table tbody button:has-text('Replay')")
        assert "purchase-event" in page.inner_text("table tbody")
        shot(page, "08-dead-letters")
    finally:
        boxes.snapshots.clear_faults()

    # Once the fault is gone, the dead letters of this workflow are replayed from the trigger, and succeed.
    page.fill("#dead-filter input[name=workflow]", "purchase-event")
    page.click("#dead-filter button:has-text('Filter')")
    page.wait_for_url(f"{base}/dead-letters?*workflow=purchase-event*")
    page.select_option("#replay-matching select[name=from]", "trigger")
    page.click("#replay-matching button:has-text('Replay matching (1)')")
    page.wait_for_selector("p.flash >> text=Replayed 1 matching dead letter from the trigger.")
    wait_until(lambda: run_statuses(page, base) == ["succeeded", "succeeded"], "the replayed run to succeed")
    page.goto(base + "/dead-letters")
    page.wait_for_selector("td >> text=No dead letters.")

    page.goto(base + "/customers")
    page.wait_for_selector("table tbody td >> text=@")
    shot(page, "09-customers")
    _usage_charts(page, base)


def _usage_charts(page: Any, base: str) -> None:
    """The overview and usage pages chart the worker's requests: bars, lines, and the per-connection table."""
    def overview_has_requests() -> bool:
        page.goto(base + "/")
        return page.locator("#overview-requests svg.chart rect.ok").count() > 0

    wait_until(overview_has_requests, "the overview's requests chart to show the worker's requests")
    for chart in ("requests", "outcomes", "latency"):
        expect(page.locator(f"#overview-{chart} svg.chart")).to_be_visible()
    expect(page.locator("#overview-outcomes polyline.line.ok")).to_have_count(1)
    expect(page.locator("#overview-latency svg.chart")).to_have_accessible_name(re.compile("Mean latency"))
    shot(page, "10-overview")
    page.click("nav a:text-is('Usage')")
    page.wait_for_url(f"{base}/usage")
    expect(page.locator("table tbody td:text-is('snapshots')")).to_be_visible()
    expect(page.locator("#usage-latency polyline.line.latency, #usage-latency circle.dot")).not_to_have_count(0)
    shot(page, "11-usage")

    page.set_viewport_size(PHONE)
    for path, name in (("/", "12-overview-phone"), ("/usage", "13-usage-phone"), ("/runs", "14-runs-phone")):
        page.goto(base + path)
        shot(page, name)
    # On a phone the charts fit the screen's width: nothing to scroll sideways.
    page.goto(base + "/usage")
    box = page.locator("#usage-requests svg.chart").bounding_box()
    assert box is not None and 0 < box["width"] <= PHONE["width"] and box["height"] > 80, box
