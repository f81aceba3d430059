"""`snapbridge templates`, `snapbridge workflows` and `snapbridge run`: install, check, switch, try workflows.

Installed workflows live in the store's workflows table (their YAML as written), so every process of a
scale-out deployment sees the same ones; `enabled` is kept in the row and in the YAML alike.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from snapbridge.cli.context import open_context, open_store
from snapbridge.config import Settings, load_settings
from snapbridge.errors import InvalidInput
from snapbridge.runtime import Connections, StepResult, execute_test_run
from snapbridge.security import REDACTED
from snapbridge.store import ConnectionStore, Store, WorkflowRecord
from snapbridge.workflows import (
    CustomerProfile,
    Event,
    Plan,
    Workflow,
    event_spec,
    format_plan,
    load_template,
    load_workflow,
    parse_event,
    plan_event,
    template_names,
    template_text,
)

__all__ = ["run_command", "templates_group", "workflows_group"]

_ENABLED_LINE = re.compile(r"^enabled:[ \t]*\S+[ \t]*(#.*)?$", re.MULTILINE)
_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)


def _describe(workflow: Workflow) -> str:
    events = ", ".join(workflow.trigger.events)
    count = len(workflow.steps)
    return f"{workflow.trigger.app} {events} → {count} step{'s' if count > 1 else ''}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None


def _installed(store: Store, name: str) -> WorkflowRecord:
    record = store.get_workflow(name)
    if record is None:
        known = ", ".join(r.name for r in store.list_workflows()) or "none"
        raise InvalidInput(f"no installed workflow {name!r}; installed: {known}")
    return record


@click.group("templates")
def templates_group() -> None:
    """The starter workflows shipped with snapbridge."""


@templates_group.command("list")
def templates_list() -> None:
    """List the starter templates."""
    for name in template_names():
        workflow = load_template(name)
        click.echo(f"{name:24} {_describe(workflow)}")
        click.echo(f"{'':24} {workflow.description}")


@templates_group.command("show")
@click.argument("name")
def templates_show(name: str) -> None:
    """Print a template's YAML."""
    click.echo(template_text(name), nl=False)


@templates_group.command("install")
@click.argument("name", required=False)
@click.option("--all", "install_all", is_flag=True, help="Install every template.")
@click.option("--force", is_flag=True, help="Replace a workflow of the same name.")
def templates_install(name: str | None, install_all: bool, force: bool) -> None:
    """Copy a template (or all) into the installed workflows."""
    if install_all == (name is not None):
        raise click.UsageError("give a template NAME or --all")
    for template in template_names() if install_all else (str(name),):
        template_text(template)  # an unknown name fails here, listing the known ones
    with open_store() as store:
        for template in template_names() if install_all else (str(name),):
            workflow = load_template(template)
            if store.get_workflow(workflow.name) is not None and not force:
                click.echo(f"{template}: already installed; --force replaces it")
                continue
            store.save_workflow(workflow.name, template_text(template), enabled=workflow.enabled)
            click.echo(f"{template}: installed ({'enabled' if workflow.enabled else 'disabled'})")


@click.group("workflows")
def workflows_group() -> None:
    """The installed workflows."""


@workflows_group.command("list")
def workflows_list() -> None:
    """List installed workflows, enabled or not."""
    with open_store() as store:
        records = store.list_workflows()
    if not records:
        click.echo("no workflows installed; try `snapbridge templates install --all`")
    for record in records:
        try:
            workflow = load_workflow(record.source_yaml, record.name)
        except InvalidInput as exc:
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            click.echo(f"{record.name:24} INVALID   {first}")
            continue
        state = "enabled" if record.enabled else "disabled"
        click.echo(f"{workflow.name:24} {state:9} {_describe(workflow)}")


@workflows_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def workflows_validate(file: Path) -> None:
    """Check a workflow file; every problem is printed with its path (exit code 2)."""
    workflow = load_workflow(_read(file), file.name)
    click.echo(f"{file.name}: ok: workflow {workflow.name}, {_describe(workflow)}")


def _set_enabled(name: str, enabled: bool) -> None:
    with open_store() as store:
        record = _installed(store, name)
        text = record.source_yaml
        line = f"enabled: {'true' if enabled else 'false'}"
        if _ENABLED_LINE.search(text):
            text = _ENABLED_LINE.sub(line, text, count=1)
        elif _NAME_LINE.search(text):
            text = _NAME_LINE.sub(lambda m: f"{m.group(0)}\n{line}", text, count=1)
        else:
            raise InvalidInput(f"{name} has no top-level name: line to put {line!r} after")
        workflow = load_workflow(text, name)
        store.save_workflow(name, text, enabled=workflow.enabled)
    click.echo(f"{workflow.name}: {'enabled' if workflow.enabled else 'disabled'}")


@workflows_group.command("enable")
@click.argument("name")
def workflows_enable(name: str) -> None:
    """Enable an installed workflow."""
    _set_enabled(name, True)


@workflows_group.command("disable")
@click.argument("name")
def workflows_disable(name: str) -> None:
    """Disable an installed workflow."""
    _set_enabled(name, False)


def _resolve_workflow(settings: Settings, ref: str) -> Workflow:
    """A workflow file path, an installed workflow's name, or a template's name, in that order."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_workflow(_read(path), path.name)
    with open_store(settings) as store:
        record = store.get_workflow(ref)
    if record is not None:
        return load_workflow(record.source_yaml, record.name)
    if ref in template_names():
        return load_template(ref)
    raise InvalidInput(f"no workflow file, installed workflow or template named {ref!r}; "
                       f"templates: {', '.join(template_names())}")


def _sample_profile(event: Event) -> CustomerProfile | None:
    customer = getattr(event, "customer", None)
    email = getattr(customer, "email", None)
    if not isinstance(email, str):
        return None
    fields = {key: getattr(customer, key, None) for key in ("name", "plan", "purchaser_id", "country",
                                                             "country_code")}
    moment: datetime = event.occurred_at
    return CustomerProfile.model_validate(
        {"email": email, **{k: v for k, v in fields.items() if v is not None}, "first_seen_at": moment}
    )


def _live_run(plans: Sequence[Plan], event: Event, profile: CustomerProfile | None) -> int:
    """Send the steps now through the stored connections and print each step's result."""
    ctx = open_context()
    failed = False
    try:
        connections = Connections(ctx.connections, ctx.vault, allowed_hosts=ctx.settings.allowed_hosts,
                                  timeout=ctx.settings.http_timeout_seconds)

        async def run_all() -> list[tuple[Plan, list[StepResult]]]:
            try:
                return [(plan, await execute_test_run(plan, event, profile, connections)) for plan in plans
                        if plan.error is None]
            finally:
                await connections.aclose()

        for plan in plans:
            if plan.error is not None:
                click.echo(f"{plan.workflow}: cannot run: {plan.error}")
                failed = True
        for plan, results in asyncio.run(run_all()):
            click.echo(f"test run of {plan.workflow} for {event.type} {event.id}:")
            for r in results:
                click.echo(f"  {r.step_id:<14} {r.action:<30} {r.status:<8} {r.detail}")
                failed = failed or r.status == "failed"
    finally:
        ctx.close()
    return 1 if failed else 0


def _load_event(workflow: Workflow, sample: str | None, event_file: Path | None) -> Event:
    if event_file is not None:
        try:
            data = json.loads(_read(event_file))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{event_file.name}: not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{event_file.name}: an event is a JSON object")
        return parse_event(data)
    kind = sample or workflow.trigger.events[0]
    return event_spec(workflow.trigger.app, kind).sample_event()


def _base_urls(settings: Settings) -> dict[str, str]:
    """Where a live run would send each app's requests: its connected account's URL, else the default."""
    urls = {"gumroad": settings.gumroad_base_url, "snapshots": settings.snapshots_base_url}
    with open_store(settings) as store:  # no vault: a dry run reads no credential
        records = sorted(ConnectionStore(store.engine).list(), key=lambda r: r.name != r.app)  # own name first
    for record in reversed(records):
        urls[record.app] = record.base_url
    return urls


@click.command("run")
@click.argument("workflow")
@click.option("--sample", "sample", metavar="EVENT_TYPE",
              help="Use the sample event of this type (default: the trigger's first event type).")
@click.option("--event", "event_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this event (JSON, as the event schemas describe) instead of a sample.")
@click.option("--dry-run", is_flag=True, help="Print the exact requests; send nothing.")
def run_command(workflow: str, sample: str | None, event_file: Path | None, dry_run: bool) -> int:
    """Run a workflow once for a sample or given event ("run a test to verify data sync")."""
    settings = load_settings()
    chosen = _resolve_workflow(settings, workflow).model_copy(update={"enabled": True})
    event = _load_event(chosen, sample, event_file)
    plans = plan_event(event, _sample_profile(event), [chosen])
    if not plans:
        click.echo(f"the trigger or filter of {chosen.name} does not match {event.app.value} {event.type} "
                   f"{event.id}; nothing would run")
        return 0
    if not dry_run:
        return _live_run(plans, event, _sample_profile(event))
    base_urls = _base_urls(settings)
    click.echo("dry run: nothing is sent")
    for plan in plans:
        click.echo("")
        click.echo(format_plan(plan, base_urls, f"Bearer {REDACTED}"), nl=False)
    return 1 if any(plan.error for plan in plans) else 0
