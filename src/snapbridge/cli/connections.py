"""`snapbridge connect APP` and `snapbridge connections …`: store a credential only after a real call proves it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import click
import httpx

from snapbridge.cli.context import AppContext, open_context
from snapbridge.cli.logs import register_secret
from snapbridge.errors import AuthFailed, DeliveryError, InvalidInput, Retryable, SnapbridgeError
from snapbridge.http import check_base_url, create_client
from snapbridge.runtime import (
    ConnectionReport,
    check_gumroad,
    check_snapshots,
    check_webhook_key,
    new_webhook_secret,
)
from snapbridge.security import Secret, redact_text
from snapbridge.store import DEFAULT_WORKSPACE, ConnectionRecord

__all__ = ["connect_group", "connections_group"]

Checker = Callable[[httpx.AsyncClient, Secret], Awaitable[ConnectionReport]]
APP_TITLES = {"gumroad": "Gumroad", "snapshots": "the Snapshots API"}


def _checker(app: str, base_url: str) -> Checker:
    if app == "gumroad":
        return lambda http, secret: check_gumroad(http, secret, base_url=base_url)
    return lambda http, secret: check_snapshots(http, secret, base_url=base_url)


async def _run_check(ctx: AppContext, app: str, base_url: str, secret: Secret) -> ConnectionReport:
    allowed = ctx.settings.allowed_hosts
    async with create_client(base_url, allowed_hosts=allowed, timeout=ctx.settings.http_timeout_seconds) as http:
        return await _checker(app, base_url)(http, secret)


def _explain(exc: SnapbridgeError, app: str, base_url: str, secret: Secret) -> str:
    """One plain line for a failed test; never the credential."""
    title = APP_TITLES[app]
    if isinstance(exc, AuthFailed):
        return f"{title} refused the credential ({exc.status or 401}): check that it is complete and not revoked"
    if isinstance(exc, Retryable) and exc.status is None:
        return f"cannot reach {title} at {base_url}: {redact_text(str(exc), [secret])}"
    if isinstance(exc, DeliveryError):
        return f"{title} at {base_url} answered with an error: {redact_text(str(exc), [secret])}"
    return redact_text(str(exc), [secret])


def _print_report(report: ConnectionReport) -> None:
    click.echo(f"Reached {APP_TITLES[report.app]}: {report.account}")
    for status in report.scopes:
        if status.held:
            click.echo(f"  ok       {status.scope}")
        else:
            kind = "MISSING " if status.need.required else "absent  "
            click.echo(f"  {kind}{status.scope}: without it snapbridge cannot {status.need.needed_for}")


def _test_and_report(ctx: AppContext, app: str, base_url: str, secret: Secret) -> ConnectionReport | None:
    try:
        check_base_url(base_url, ctx.settings.allowed_hosts)
        report = asyncio.run(_run_check(ctx, app, base_url, secret))
    except SnapbridgeError as exc:
        click.echo(f"error: {_explain(exc, app, base_url, secret)}", err=True)
        return None
    _print_report(report)
    if not report.ok:
        names = ", ".join(s.scope for s in report.missing)
        click.echo(f"error: the credential lacks {names}; add it and connect again", err=True)
    return report


def _checked_credential(credential: str, app: str) -> str:
    """The pasted credential without surrounding whitespace; a usage error (that never shows it) when it cannot be
    a token: empty, or holding a line break, a space or a character outside printable ASCII."""
    what = "access token" if app == "gumroad" else "API key"
    value = credential.strip()
    if not value:
        raise click.UsageError(f"the {what} is empty")
    if not all("!" <= char <= "~" for char in value):
        raise click.UsageError(f"the {what} holds a line break, a space or another character no {what} has; "
                               "paste it again")
    return value


def _connect(app: str, name: str | None, base_url: str | None, credential: str, webhook_key: str | None,
             options: dict[str, object]) -> int:
    ctx = open_context()
    try:
        base = (base_url or (ctx.settings.gumroad_base_url if app == "gumroad"
                             else ctx.settings.snapshots_base_url)).rstrip("/")
        secret = Secret(_checked_credential(credential, app))
        if webhook_key is not None:
            try:
                check_webhook_key(webhook_key)
            except InvalidInput as exc:
                raise click.UsageError(f"--webhook-public-key: {exc}") from None
        register_secret(secret)
        report = _test_and_report(ctx, app, base, secret)
        if report is None or not report.ok:
            click.echo("nothing was stored", err=True)
            return 1
        name = name or app
        existing = ctx.connections.get(name)
        stored_key: str | None
        if app == "gumroad":
            # Gumroad does not sign its pings: the receiver URL carries this secret instead. Reconnecting keeps
            # it, so the URLs already registered with Gumroad stay valid.
            options = {**options, "seller_id": report.account_id}
            stored_key = existing.webhook_key if existing and existing.webhook_key else ctx.vault.encrypt(
                new_webhook_secret(), bound_to=f"{name}:webhook_key")
        else:
            options = {**options, "company_id": report.account_id}
            stored_key = ctx.vault.encrypt(Secret(webhook_key), bound_to=f"{name}:webhook_key") if webhook_key \
                else None
        ctx.connections.save(ConnectionRecord(
            name=name, app=app, base_url=base,
            credential=ctx.vault.encrypt(secret, bound_to=f"{name}:credential"),
            webhook_key=stored_key, account=report.account, scopes=report.held, options=options,
            created_at=existing.created_at if existing else datetime.now(UTC),
            # Reconnecting from the command line keeps the connection in its workspace.
            workspace_id=existing.workspace_id if existing else DEFAULT_WORKSPACE,
        ))
        click.echo(f"Saved connection {name!r} ({app}, {base}).")
        if existing is not None:
            # The service reads credentials again after CREDENTIAL_CACHE_SECONDS, not on every call.
            click.echo("A running `snapbridge serve` or `worker` uses the new credential within a minute; replay "
                       "dead letters after that.")
        return 0
    finally:
        ctx.close()


@click.group("connect")
def connect_group() -> None:
    """Connect an account: the credential is tested with a real call, then stored encrypted."""


@connect_group.command("gumroad")
@click.option("--access-token", envvar="SNAPBRIDGE_GUMROAD_ACCESS_TOKEN", required=True,
              help="Gumroad access token (or set SNAPBRIDGE_GUMROAD_ACCESS_TOKEN).")
@click.option("--base-url", help="Gumroad API base URL (default from settings: https://api.gumroad.com).")
@click.option("--name", help="Connection name (default: gumroad).")
@click.option("--verify-by-fetch/--no-verify-by-fetch", default=True, show_default=True,
              help="Re-read each sale from the API before acting on its webhook.")
def connect_gumroad(access_token: str, base_url: str | None, name: str | None, verify_by_fetch: bool) -> int:
    """Connect a Gumroad seller account."""
    return _connect("gumroad", name, base_url, access_token, None, {"verify_by_fetch": verify_by_fetch})


@connect_group.command("snapshots")
@click.option("--api-key", envvar="SNAPBRIDGE_SNAPSHOTS_API_KEY", required=True,
              help="Snapshots API key (or set SNAPBRIDGE_SNAPSHOTS_API_KEY).")
@click.option("--base-url", help="Snapshots API base URL (default from settings).")
@click.option("--webhook-public-key", help="Ed25519 public key (base64) that signs the API's webhooks.")
@click.option("--name", help="Connection name (default: snapshots).")
def connect_snapshots(api_key: str, base_url: str | None, webhook_public_key: str | None, name: str | None) -> int:
    """Connect a Snapshots API account."""
    return _connect("snapshots", name, base_url, api_key, webhook_public_key, {})


@click.group("connections")
def connections_group() -> None:
    """List, test, remove connections, or re-encrypt them under a new key."""


@connections_group.command("list")
def connections_list() -> int:
    """Show every connection (credentials are never shown)."""
    ctx = open_context()
    try:
        records = ctx.connections.list()
    finally:
        ctx.close()
    if not records:
        click.echo("no connections yet: run `snapbridge connect gumroad` and `snapbridge connect snapshots`")
    for r in records:
        click.echo(f"{r.name:<12} {r.app:<10} {r.base_url}  {r.account}  scopes: {' '.join(r.scopes) or '-'}")
    return 0


@connections_group.command("test")
@click.argument("name")
def connections_test(name: str) -> int:
    """Test a stored connection again with a real call."""
    ctx = open_context()
    try:
        record = ctx.connections.get(name)
        if record is None:
            known = ", ".join(r.name for r in ctx.connections.list()) or "none"
            click.echo(f"error: no connection named {name!r} (known: {known})", err=True)
            return 1
        secret = ctx.vault.decrypt(record.credential, bound_to=f"{record.name}:credential")
        register_secret(secret)
        report = _test_and_report(ctx, record.app, record.base_url, secret)
        if report is None:
            return 1
        ctx.connections.save(ConnectionRecord(
            name=record.name, app=record.app, base_url=record.base_url, credential=record.credential,
            webhook_key=record.webhook_key, account=report.account, scopes=report.held,
            options=record.options, created_at=record.created_at, workspace_id=record.workspace_id,
        ))
        return 0 if report.ok else 1
    finally:
        ctx.close()


@connections_group.command("remove")
@click.argument("name")
def connections_remove(name: str) -> int:
    """Forget a connection and its stored credential."""
    ctx = open_context()
    try:
        if not ctx.connections.remove(name):
            click.echo(f"error: no connection named {name!r}", err=True)
            return 1
    finally:
        ctx.close()
    click.echo(f"Removed connection {name!r}.")
    return 0


@connections_group.command("rotate-key")
def connections_rotate_key() -> int:
    """Re-encrypt every stored credential under a new key, then retire the old keys."""
    ctx = open_context()
    try:
        new_id = ctx.vault.rotate()
        records = ctx.connections.list()
        for r in records:
            ctx.connections.save(ConnectionRecord(
                name=r.name, app=r.app, base_url=r.base_url,
                credential=ctx.vault.reencrypt(r.credential, bound_to=f"{r.name}:credential"),
                webhook_key=ctx.vault.reencrypt(r.webhook_key, bound_to=f"{r.name}:webhook_key")
                if r.webhook_key else None,
                account=r.account, scopes=r.scopes, options=r.options, created_at=r.created_at,
                workspace_id=r.workspace_id,
            ))
        # Retire only after every ciphertext is re-encrypted: a crash before this point loses nothing.
        retired = [k for k in ctx.vault.key_ids if k != new_id]
        for key_id in retired:
            ctx.vault.retire(key_id)
    finally:
        ctx.close()
    click.echo(f"Re-encrypted {len(records)} connection(s) under key {new_id}; retired {len(retired)} old key(s).")
    return 0
