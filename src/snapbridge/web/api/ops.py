"""What the API and the dashboard do, once: connect, rotate, install, save, dry-run, replay, summarise usage."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from snapbridge.errors import AuthFailed, DeliveryError, InvalidInput, Retryable, SnapbridgeError
from snapbridge.runtime import ConnectionReport, Connections, check_connection, execute_test_run, new_webhook_secret
from snapbridge.security import Secret, Vault, redact_text
from snapbridge.store import (
    DEFAULT_WORKSPACE,
    ConnectionRecord,
    ConnectionStore,
    RunStatus,
    WorkflowRecord,
)
from snapbridge.web.api.context import ApiProblem, WebContext
from snapbridge.web.api.history_ops import DeadFilter, HistoryOperations
from snapbridge.web.api.models import (
    ConnectionIn,
    ConnectionOut,
    ConnectionTest,
    Counts,
    CredentialIn,
    DryRunOut,
    PlanOut,
    RequestOut,
    RunTestOut,
    RunTestStepOut,
    ScopeOut,
    TemplateOut,
    WorkflowOut,
)
from snapbridge.workflows import (
    CustomerProfile,
    Event,
    Workflow,
    check_workflow,
    event_spec,
    format_plan,
    load_template,
    load_workflow,
    parse_document,
    plan_event,
    preview_step,
    template_names,
    template_text,
)

__all__ = ["DeadFilter", "Operations"]  # DeadFilter: from history_ops

APP_TITLES = {"gumroad": "Gumroad", "snapshots": "the Snapshots API"}
# The option that names the account a connection reached (Gumroad checks the seller id on every ping).
ACCOUNT_OPTION = {"gumroad": "seller_id", "snapshots": "company_id"}


_ENABLED_LINE = re.compile(r"^enabled:[ \t]*\S+[ \t]*(#.*)?$", re.MULTILINE)
_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)


def describe(workflow: Workflow) -> str:
    return f"{workflow.trigger.app} {', '.join(workflow.trigger.events)}"


def explain_failure(exc: SnapbridgeError, app: str, base_url: str, secret: Secret) -> str:
    """One plain line for a failed connection test; never the credential."""
    title = APP_TITLES.get(app, app)
    if isinstance(exc, AuthFailed):
        return f"{title} refused the credential ({exc.status or 401}): check that it is complete and not revoked"
    if isinstance(exc, Retryable) and exc.status is None:
        return f"cannot reach {title} at {base_url}: {redact_text(str(exc), [secret])}"
    if isinstance(exc, DeliveryError):
        return f"{title} at {base_url} answered with an error: {redact_text(str(exc), [secret])}"
    return redact_text(str(exc), [secret])




def _scopes(report: ConnectionReport) -> list[ScopeOut]:
    return [ScopeOut(scope=s.scope, held=s.held, required=s.need.required, needed_for=s.need.needed_for)
            for s in report.scopes]


def report_words(report: ConnectionReport) -> ConnectionTest:
    scopes = _scopes(report)
    missing = [s for s in scopes if not s.held and s.required]
    message = f"Reached {APP_TITLES[report.app]}: {report.account}."
    if missing:
        message += " Missing scopes: " + "; ".join(
            f"{s.scope} (without it snapbridge cannot {s.needed_for})" for s in missing)
    else:
        message += " All required scopes are granted."
    return ConnectionTest(ok=not missing, message=message, account=report.account, missing_scopes=missing,
                          scopes=scopes)


def connection_out(record: ConnectionRecord) -> ConnectionOut:
    return ConnectionOut(name=record.name, app=record.app, base_url=record.base_url, account=record.account,
                         scopes=list(record.scopes), has_webhook_key=bool(record.webhook_key),
                         created_at=record.created_at, updated_at=record.updated_at)


def workflow_out(record: WorkflowRecord) -> WorkflowOut:
    try:
        workflow = load_workflow(record.source_yaml, record.name)
    except InvalidInput as exc:
        return WorkflowOut(name=record.name, enabled=record.enabled, valid=False, trigger="", steps=0,
                           description=str(exc), source_yaml=record.source_yaml, updated_at=record.updated_at)
    return WorkflowOut(name=record.name, enabled=record.enabled, valid=True, trigger=describe(workflow),
                       steps=len(workflow.steps), description=workflow.description or "",
                       source_yaml=record.source_yaml, updated_at=record.updated_at)


def checked_workflow(text: str) -> Workflow:
    """The workflow, or ApiProblem 422 listing every problem with its path."""
    try:
        data = parse_document(text)
    except InvalidInput as exc:
        raise ApiProblem(422, "the workflow is not valid YAML", [{"path": "", "message": str(exc)}]) from None
    workflow, problems = check_workflow(data)
    if workflow is None:
        raise ApiProblem(422, "the workflow is not valid",
                         [{"path": p.path, "message": p.message} for p in problems])
    return workflow


def _sample_profile(event: Event) -> CustomerProfile | None:
    customer = getattr(event, "customer", None)
    email = getattr(customer, "email", None)
    if not isinstance(email, str):
        return None
    fields = {key: getattr(customer, key, None) for key in ("name", "plan", "purchaser_id", "country",
                                                             "country_code")}
    return CustomerProfile.model_validate(
        {"email": email, **{k: v for k, v in fields.items() if v is not None}, "first_seen_at": event.occurred_at})


class Operations(HistoryOperations):
    """Everything here sees one workspace: another workspace's connection, workflow, run or dead letter is
    "not found" (404), never "forbidden", so its existence is not told either."""

    def __init__(self, ctx: WebContext, workspace: int = DEFAULT_WORKSPACE) -> None:
        self.ctx = ctx
        self.workspace = workspace

    def _records(self) -> tuple[ConnectionStore, Vault]:
        if self.ctx.connections is None or self.ctx.vault is None:
            raise ApiProblem(503, "this server was started without the credential vault")
        return self.ctx.connections, self.ctx.vault

    # connections

    def connections(self) -> list[ConnectionOut]:
        if self.ctx.connections is None:
            return []
        return [connection_out(r) for r in self.ctx.connections.list(workspace=self.workspace)]

    def _base_url(self, app: str, given: str | None) -> str:
        settings = self.ctx.settings
        return (given or (settings.gumroad_base_url if app == "gumroad" else settings.snapshots_base_url)).rstrip("/")

    async def _check(self, app: str, base_url: str, secret: Secret) -> tuple[ConnectionReport | None, ConnectionTest]:
        try:
            report = await check_connection(app, base_url, secret, allowed_hosts=self.ctx.settings.allowed_hosts,
                                            http_timeout=self.ctx.settings.http_timeout_seconds)
        except SnapbridgeError as exc:
            return None, ConnectionTest(ok=False, message=explain_failure(exc, app, base_url, secret))
        return report, report_words(report)

    async def add_connection(self, body: ConnectionIn) -> tuple[ConnectionOut | None, ConnectionTest]:
        """Test first; store only when the test passes (the credential is encrypted, never returned)."""
        records, vault = self._records()
        base = self._base_url(body.app, body.base_url)
        secret = Secret(body.credential.strip())
        report, words = await self._check(body.app, base, secret)
        if report is None or not words.ok:
            return None, words
        name = body.name or body.app
        existing = records.get(name, workspace=self.workspace)
        if existing is None and records.get(name) is not None:
            # Names are unique across workspaces (the queue and the rate limits are kept by name).
            message = f"the connection name {name!r} is taken; choose another name"
            raise ApiProblem(409, message, [{"path": "name", "message": message}])
        options: dict[str, object] = {ACCOUNT_OPTION[body.app]: report.account_id}
        stored_key: str | None
        if body.app == "gumroad":
            # Reconnecting keeps the hook secret, so URLs already registered with Gumroad stay valid.
            stored_key = existing.webhook_key if existing and existing.webhook_key else vault.encrypt(
                new_webhook_secret(), bound_to=f"{name}:webhook_key")
        else:
            stored_key = vault.encrypt(Secret(body.webhook_public_key), bound_to=f"{name}:webhook_key") \
                if body.webhook_public_key else (existing.webhook_key if existing else None)
        record = ConnectionRecord(
            name=name, app=body.app, base_url=base, credential=vault.encrypt(secret, bound_to=f"{name}:credential"),
            webhook_key=stored_key, account=report.account, scopes=report.held, options=options,
            created_at=existing.created_at if existing else self.ctx.clock(), workspace_id=self.workspace)
        records.save(record)
        self._connections_changed()
        saved = records.get(name, workspace=self.workspace)
        return connection_out(saved or record), words

    async def test_connection(self, name: str) -> ConnectionTest:
        records, vault = self._records()
        record = records.get(name, workspace=self.workspace)
        if record is None:
            raise ApiProblem(404, f"no connection {name!r}")
        secret = vault.decrypt(record.credential, bound_to=f"{name}:credential")
        return (await self._check(record.app, record.base_url, secret))[1]

    async def rotate_credential(self, name: str, body: CredentialIn) -> tuple[ConnectionOut | None, ConnectionTest]:
        """Test the new credential at the connection's own base URL; it replaces the stored one only when it
        reaches the same account with every required scope. Until then the old one stays in use."""
        records, vault = self._records()
        record = records.get(name, workspace=self.workspace)
        if record is None:
            raise ApiProblem(404, f"no connection {name!r}")
        if body.webhook_public_key and record.app != "snapshots":
            message = "only a Snapshots API connection has a webhook public key"
            raise ApiProblem(422, message, [{"path": "webhook_public_key", "message": message}])
        secret = Secret(body.credential.strip())
        report, words = await self._check(record.app, record.base_url, secret)
        if report is None or not words.ok:
            return None, words
        option = ACCOUNT_OPTION[record.app]
        known = record.options.get(option)
        if known and str(known) != report.account_id:
            # Another account's credential (or one whose account cannot be told) would send this connection's
            # data somewhere else.
            return None, words.model_copy(update={"ok": False, "message": (
                f"The new credential reaches {report.account}, not this connection's account ({record.account}); "
                "nothing was changed. Add it as a new connection instead.")})
        webhook_key = vault.encrypt(Secret(body.webhook_public_key), bound_to=f"{name}:webhook_key") \
            if body.webhook_public_key else record.webhook_key
        records.save(replace(
            record, credential=vault.encrypt(secret, bound_to=f"{name}:credential"), webhook_key=webhook_key,
            account=report.account, scopes=report.held, options={**record.options, option: report.account_id}))
        self._connections_changed()
        saved = records.get(name, workspace=self.workspace)
        # Workers re-read a connection's credential about once a minute (runtime.actions' credential cache).
        return connection_out(saved or record), words.model_copy(update={"message": (
            f"{words.message} The new credential replaced the old one; running workers switch to it within a "
            "minute.")})

    def remove_connection(self, name: str) -> None:
        records, _ = self._records()
        if not records.remove(name, workspace=self.workspace):
            raise ApiProblem(404, f"no connection {name!r}")
        self._connections_changed()

    def _connections_changed(self) -> None:
        if self.ctx.on_connections_changed is not None:
            self.ctx.on_connections_changed()


    # workflows and templates

    def workflows(self) -> list[WorkflowOut]:
        return [workflow_out(r) for r in self.ctx.store.list_workflows(workspace=self.workspace)]

    def workflow(self, name: str) -> WorkflowOut:
        record = self.ctx.store.get_workflow(name, workspace=self.workspace)
        if record is None:
            raise ApiProblem(404, f"no workflow {name!r}")
        return workflow_out(record)

    def save_workflow(self, text: str) -> WorkflowOut:
        workflow = checked_workflow(text)
        return workflow_out(self.ctx.store.save_workflow(workflow.name, text, enabled=workflow.enabled,
                                                         workspace=self.workspace))

    def set_enabled(self, name: str, enabled: bool) -> WorkflowOut:
        record = self.ctx.store.get_workflow(name, workspace=self.workspace)
        if record is None:
            raise ApiProblem(404, f"no workflow {name!r}")
        text = record.source_yaml
        line = f"enabled: {'true' if enabled else 'false'}"
        # `enabled` lives in the row and in the YAML alike, as the CLI keeps it.
        if _ENABLED_LINE.search(text):
            text = _ENABLED_LINE.sub(line, text, count=1)
        elif _NAME_LINE.search(text):
            text = _NAME_LINE.sub(lambda m: f"{m.group(0)}\n{line}", text, count=1)
        workflow = checked_workflow(text)
        return workflow_out(self.ctx.store.save_workflow(name, text, enabled=workflow.enabled,
                                                         workspace=self.workspace))

    def templates(self) -> list[TemplateOut]:
        installed = {r.name for r in self.ctx.store.list_workflows(workspace=self.workspace)}
        out: list[TemplateOut] = []
        for name in template_names():
            workflow = load_template(name)
            out.append(TemplateOut(name=name, workflow=workflow.name, description=workflow.description or "",
                                   trigger=describe(workflow), steps=len(workflow.steps),
                                   installed=workflow.name in installed))
        return out

    def install_template(self, name: str) -> WorkflowOut:
        if name not in template_names():
            raise ApiProblem(404, f"no template {name!r}; templates: {', '.join(template_names())}")
        workflow = load_template(name)
        return workflow_out(self.ctx.store.save_workflow(workflow.name, template_text(name), enabled=workflow.enabled,
                                                         workspace=self.workspace))

    def dry_run(self, text: str, sample: str | None) -> DryRunOut:
        workflow = checked_workflow(text).model_copy(update={"enabled": True})
        event = self._sample_event(workflow, sample)
        kind = sample or workflow.trigger.events[0]
        plans = plan_event(event, _sample_profile(event), [workflow])
        settings = self.ctx.settings
        base_urls = {"gumroad": settings.gumroad_base_url, "snapshots": settings.snapshots_base_url,
                     "highlevel": settings.highlevel_base_url}
        out: list[PlanOut] = []
        text_parts: list[str] = []
        for plan in plans:
            steps: list[RequestOut] = []
            if not plan.error:
                for step in plan.steps:
                    preview = preview_step(step, base_urls)
                    headers = dict(preview.headers)
                    if preview.authorized:
                        headers["Authorization"] = "Bearer ****"
                    steps.append(RequestOut(step_id=step.step_id, action=step.action, method=preview.method,
                                            url=preview.url, headers=headers, body=preview.body,
                                            condition=step.condition, deferred=dict(preview.deferred)))
            out.append(PlanOut(workflow=plan.workflow, event_id=plan.event_id, error=plan.error, steps=steps,
                               skipped=list(plan.skipped)))
            text_parts.append(format_plan(plan, base_urls, "Bearer ****"))
        text_out = "\n".join(text_parts) or (f"the trigger or filter of {workflow.name} does not match the "
                                             f"sample {kind} event; nothing would run\n")
        return DryRunOut(event_type=kind, matched=bool(plans), plans=out, text=text_out)

    async def test_run(self, text: str, sample: str | None) -> RunTestOut:
        """Plan the workflow for a sample event and send its steps now through this workspace's connections
        (keys prefixed `test-`, so a repeated test is an API replay, never a second write); no history kept."""
        records, vault = self._records()
        workflow = checked_workflow(text).model_copy(update={"enabled": True})
        event = self._sample_event(workflow, sample)
        profile = _sample_profile(event)
        plans = plan_event(event, profile, [workflow])
        if not plans:
            return RunTestOut(event_type=event.type, matched=False, workflow=workflow.name, steps=[],
                              error=f"the trigger or filter does not match the sample {event.type} event")
        plan = plans[0]
        if plan.error is not None:
            return RunTestOut(event_type=event.type, matched=True, workflow=workflow.name, error=plan.error,
                              steps=[])
        own: dict[str, str] = {}
        for record in records.list(workspace=self.workspace):
            own.setdefault(record.app, record.name)
        settings = self.ctx.settings
        connections = Connections(records, vault, allowed_hosts=settings.allowed_hosts,
                                  timeout=settings.http_timeout_seconds)
        try:
            results = await execute_test_run(plan, event, profile, connections, connection_for=own)
        finally:
            await connections.aclose()
        return RunTestOut(event_type=event.type, matched=True, workflow=workflow.name, steps=[
            RunTestStepOut(step_id=r.step_id, action=r.action, status=r.status, detail=r.detail,
                           http_status=r.http_status) for r in results])

    @staticmethod
    def _sample_event(workflow: Workflow, sample: str | None) -> Event:
        kind = sample or workflow.trigger.events[0]
        try:
            return event_spec(workflow.trigger.app, kind).sample_event()
        except InvalidInput as exc:
            raise ApiProblem(422, str(exc), [{"path": "sample", "message": str(exc)}]) from None

    def counts(self) -> Counts:
        store, workspace = self.ctx.store, self.workspace
        runs = store.runs(limit=1000, workspace=workspace)
        by_status = Counter(str(r.status) for r in runs)
        workflows = store.list_workflows(workspace=workspace)
        return Counts(jobs=store.counts(workspace=workspace),
                      runs={s.value: by_status.get(s.value, 0) for s in RunStatus},
                      workflows=len(workflows), workflows_enabled=sum(1 for w in workflows if w.enabled),
                      connections=len(self.connections()),
                      dead_letters=len(store.dead_letters(limit=1000, workspace=workspace)))
