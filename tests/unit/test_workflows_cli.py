"""The templates/workflows/run commands, the dry-run golden files, and previews agreeing with the runner."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import click
import pytest
from click.testing import CliRunner, Result

from snapbridge.catalog.runner import prepare_request
from snapbridge.cli.context import open_store
from snapbridge.cli.workflows import run_command, templates_group, workflows_group
from snapbridge.config import load_settings
from snapbridge.errors import InvalidInput
from snapbridge.store import ConnectionRecord, ConnectionStore, migrate, open_engine
from snapbridge.workflows import (
    CustomerProfile,
    PlannedStep,
    event_spec,
    find_action,
    load_template,
    plan_event,
    preview_step,
    resolve_step,
    template_names,
)

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "workflows" / "dry_run"
INVALID = DATA / "invalid"
BASE_URLS = {"gumroad": "http://127.0.0.1:8701", "snapshots": "http://127.0.0.1:8702"}


@click.group()
def root() -> None:
    """Stands in for `snapbridge` until the lead wires these commands into cli/main.py."""


root.add_command(templates_group)
root.add_command(workflows_group)
root.add_command(run_command)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SNAPBRIDGE_HOME": str(tmp_path / "home"), "SNAPBRIDGE_GUMROAD_BASE_URL": BASE_URLS["gumroad"],
            "SNAPBRIDGE_SNAPSHOTS_BASE_URL": BASE_URLS["snapshots"]}


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(root, list(args), env=env, catch_exceptions=True)


@pytest.mark.parametrize("name", template_names())
def test_the_dry_run_of_each_template_matches_its_golden_file(env: dict[str, str], name: str) -> None:
    result = invoke(env, "run", name, "--dry-run")
    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("SNAPBRIDGE_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(result.output, encoding="utf-8")
    assert result.output == golden.read_text(encoding="utf-8")


def test_every_golden_file_belongs_to_a_template() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(template_names())


def test_a_dry_run_never_shows_a_credential(env: dict[str, str]) -> None:
    secret = "sk_live_canary_0123456789"
    result = invoke({**env, "SNAPBRIDGE_SECRET_KEY": secret}, "run", "purchase-event", "--dry-run")
    assert result.exit_code == 0
    assert "Authorization: Bearer ****" in result.output and secret not in result.output


def test_run_with_an_event_file_and_another_sample(env: dict[str, str], tmp_path: Path) -> None:
    data = event_spec("gumroad", "cancellation").sample_event().model_dump(mode="json")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    by_file = invoke(env, "run", "churn", "--event", str(path), "--dry-run")
    by_sample = invoke(env, "run", "churn", "--sample", "cancellation", "--dry-run")
    assert by_file.exit_code == by_sample.exit_code == 0
    assert by_file.output == by_sample.output
    assert '"plan": "cancelled"' in by_file.output


def test_run_when_nothing_matches(env: dict[str, str]) -> None:
    result = invoke(env, "run", "churn", "--sample", "dispute", "--dry-run")
    assert result.exit_code == 0 and "nothing would run" in result.output


def test_run_of_an_unknown_workflow_or_event(env: dict[str, str]) -> None:
    unknown = invoke(env, "run", "nope", "--dry-run")
    assert isinstance(unknown.exception, InvalidInput)
    assert "templates: churn, customer-sync" in str(unknown.exception)
    wrong = invoke(env, "run", "churn", "--sample", "purchased", "--dry-run")
    assert isinstance(wrong.exception, InvalidInput) and "unknown gumroad event 'purchased'" in str(wrong.exception)


def test_templates_list_show_and_install(env: dict[str, str]) -> None:
    listed = invoke(env, "templates", "list")
    assert listed.exit_code == 0 and all(name in listed.output for name in template_names())
    shown = invoke(env, "templates", "show", "churn")
    assert shown.output.startswith("# Starter 5") and "name: churn" in shown.output
    assert invoke(env, "templates", "install").exit_code == 2
    installed = invoke(env, "templates", "install", "--all")
    assert installed.exit_code == 0 and installed.output.count("installed (") == 5
    again = invoke(env, "templates", "install", "churn")
    assert "already installed" in again.output
    assert "installed (" in invoke(env, "templates", "install", "churn", "--force").output


def test_workflows_list_enable_disable(env: dict[str, str]) -> None:
    assert "no workflows installed" in invoke(env, "workflows", "list").output
    invoke(env, "templates", "install", "--all")
    assert invoke(env, "workflows", "disable", "churn").output == "churn: disabled\n"
    listed = invoke(env, "workflows", "list").output
    assert "churn                    disabled" in listed
    assert "purchase-event           enabled" in listed
    assert invoke(env, "workflows", "enable", "churn").output == "churn: enabled\n"
    with open_store(load_settings(env)) as store:
        record = store.get_workflow("churn")
    assert record is not None and record.enabled
    text = record.source_yaml
    assert text.count("enabled:") == 1 and "# Starter 5" in text
    missing = invoke(env, "workflows", "enable", "nope")
    assert isinstance(missing.exception, InvalidInput) and "installed: churn, customer-sync" in str(
        missing.exception)


def test_workflows_list_shows_an_invalid_file(env: dict[str, str]) -> None:
    with open_store(load_settings(env)) as store:
        store.save_workflow("broken", (INVALID / "unknown_app.yaml").read_text(encoding="utf-8"))
    assert "broken                   INVALID   trigger.app: unknown app 'shopify'" in invoke(
        env, "workflows", "list").output


def test_validate_prints_ok_or_every_problem(env: dict[str, str]) -> None:
    ok = invoke(env, "workflows", "validate", str(Path(__file__).parents[2] / "src" / "snapbridge" / "workflows"
                                                  / "templates" / "churn.yaml"))
    assert ok.exit_code == 0 and ok.output == "churn.yaml: ok: workflow churn, gumroad refund, cancellation, " \
                                              "subscription.ended → 3 steps\n"
    bad = invoke(env, "workflows", "validate", str(INVALID / "many_problems.yaml"))
    expected = (INVALID / "many_problems.expected.txt").read_text(encoding="utf-8").rstrip("\n")
    assert isinstance(bad.exception, InvalidInput) and str(bad.exception) == expected


def _concrete(step: PlannedStep) -> PlannedStep:
    """The step with its deferred inputs resolved from made-up outputs of the earlier steps."""
    made_up = {"location_id": "loc_9", "name": "Ada", "timezone": "Europe/London"}
    template = next(name for name in template_names() if load_template(name).name == step.workflow)
    event = event_spec(load_template(template).trigger.app, load_template(template).trigger.events[0]).sample_event()
    profile = CustomerProfile(email="ada@example.com", first_seen_at=event.occurred_at)
    outputs: dict[str, object] = {"find": [made_up], "create": made_up, "update": None}
    resolved = resolve_step(step, event, profile, outputs)
    return PlannedStep(step.workflow, step.step_id, step.position, step.action, resolved.input,
                       step.idempotency_key, step.ordering_key)


def _all_steps() -> list[PlannedStep]:
    steps: list[PlannedStep] = []
    for name in template_names():
        workflow = load_template(name)
        for kind in workflow.trigger.events:
            event = event_spec(workflow.trigger.app, kind).sample_event()
            profile = CustomerProfile(email="ada@example.com", first_seen_at=event.occurred_at)
            for plan in plan_event(event, profile, [workflow]):
                steps.extend(_concrete(step) for step in plan.steps)
    return steps


@pytest.mark.parametrize("step", _all_steps(), ids=lambda s: f"{s.workflow}.{s.step_id}")
def test_previews_agree_with_the_catalog_runner(step: PlannedStep) -> None:
    op = find_action(step.action).operation
    preview = preview_step(step, BASE_URLS)
    if op is None:
        assert preview.method is None and json.loads(preview.body or "") == dict(step.input)
        return
    request = prepare_request(op, step.input)
    url = urlsplit(preview.url)
    assert (preview.method, url.path) == (request.method, request.path)
    assert tuple(parse_qsl(url.query)) == request.query
    headers = {k: v for k, v in preview.headers.items() if k not in ("Idempotency-Key", "Content-Type")}
    assert headers == {k: v for k, v in request.headers.items() if k != "Content-Type"}
    if request.json is not None:
        assert json.loads(preview.body or "") == request.json
    if request.content is not None:
        assert (preview.body or "").encode("ascii") == request.content
    assert ("Idempotency-Key" in preview.headers) == (op.idempotency_header and op.is_write)


def test_a_dry_run_shows_the_connected_accounts_urls(env: dict[str, str]) -> None:
    settings = load_settings(environ=env)
    settings.home.mkdir(parents=True)
    engine = open_engine(settings.database_url)
    try:
        migrate(engine)
        ConnectionStore(engine).save(ConnectionRecord(
            name="snapshots", app="snapshots", base_url="http://127.0.0.1:40404", credential="v1.k.cipher",
            webhook_key=None, account="Studio", scopes=("events.write",), options={}))
    finally:
        engine.dispose()
    result = invoke(env, "run", "purchase-event", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "POST http://127.0.0.1:40404/events" in result.output
    assert BASE_URLS["snapshots"] not in result.output
