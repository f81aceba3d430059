"""`snapbridge hooks`: the webhook URLs to give each app, and registering them with Gumroad."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import SplitResult, urlsplit

import click

from snapbridge.cli.context import open_context
from snapbridge.connectors.gumroad import GumroadClient, ResourceName
from snapbridge.http import create_client
from snapbridge.runtime import hook_urls
from snapbridge.security import Secret

__all__ = ["hooks_group"]


def _checked_public_url(given: str | None) -> str | None:
    """The --public-url without a trailing slash; a usage error for an address the apps could not post to."""
    if given is None:
        return None
    parts: SplitResult | None
    try:
        parts = urlsplit(given.strip())
        _ = parts.port  # reading the port checks it: digits, at most 65535
    except ValueError:  # an unclosed [IPv6 bracket, a port that is no port
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise click.UsageError(f"--public-url must be an http(s) address such as https://sync.example.com "
                               f"(IPv6 in brackets: http://[::1]:8080), not {given!r}")
    return given.strip().rstrip("/")


def _public_base(given: str | None, listen: str) -> str:
    return given or f"http://{listen}"


@click.group("hooks", invoke_without_command=True)
@click.option("--public-url", help="The address the apps reach snapbridge at (default: the listen address).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def hooks_group(ctx: click.Context, public_url: str | None, as_json: bool) -> int:
    """Print the webhook URLs to register (Gumroad's hold a secret: treat them as credentials)."""
    ctx.ensure_object(dict)
    ctx.obj["public_url"] = public_url
    if ctx.invoked_subcommand is not None:
        return 0
    given = _checked_public_url(public_url)
    app = open_context()
    try:
        urls = hook_urls(app.connections, app.vault, _public_base(given, app.settings.listen))
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([{"connection": u.connection, "app": u.app, "url": u.url} for u in urls], indent=2))
    elif not urls:
        click.echo("no connections yet: run `snapbridge connect gumroad` and `snapbridge connect snapshots`")
    for u in [] if as_json else urls:
        click.echo(f"{u.connection:<12} {u.app:<10} {u.url}")
    return 0


@hooks_group.command("register")
@click.option("--public-url", help="The address Gumroad reaches snapbridge at (default: the listen address).")
@click.pass_context
def hooks_register(ctx: click.Context, public_url: str | None) -> int:
    """Subscribe each Gumroad connection's hook URL to all 8 resources (existing subscriptions are kept)."""
    given = _checked_public_url(public_url or ctx.obj.get("public_url"))
    app = open_context()
    base = _public_base(given, app.settings.listen)
    try:
        urls = [u for u in hook_urls(app.connections, app.vault, base) if u.app == "gumroad"]
        if not urls:
            click.echo("error: no Gumroad connection: run `snapbridge connect gumroad` first", err=True)
            return 1

        async def register() -> int:
            made = 0
            for hook in urls:
                record = app.connections.get(hook.connection)
                assert record is not None
                token = app.vault.decrypt(record.credential, bound_to=f"{record.name}:credential")
                async with create_client(record.base_url, allowed_hosts=app.settings.allowed_hosts,
                                         timeout=app.settings.http_timeout_seconds) as http:
                    client = GumroadClient(http, token, base_url=record.base_url)
                    for resource in ResourceName:
                        existing = await client.list_resource_subscriptions(resource)
                        if any(s.post_url == hook.url for s in existing):
                            continue
                        key = f"hooks-register:{hook.connection}:{resource.value}"
                        await client.create_resource_subscription(resource, Secret(hook.url), idempotency_key=key)
                        made += 1
                click.echo(f"{hook.connection}: subscribed to {', '.join(r.value for r in ResourceName)}")
            click.echo(f"{made} new subscription(s)")
            return 0

        return asyncio.run(register())
    finally:
        app.close()
