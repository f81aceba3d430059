"""`snapbridge users`: the operator's way to add dashboard users, each in a workspace (a team's own space)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from snapbridge.cli.context import open_context
from snapbridge.errors import InvalidInput
from snapbridge.security import Passwords, Role, check_new_password, check_username
from snapbridge.store import UserStore

__all__ = ["users_group"]


@click.group("users")
def users_group() -> None:
    """Dashboard and API users, and the workspaces they work in."""


@users_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.VIEWER.value, show_default=True)
@click.option("--workspace", default="default", show_default=True,
              help="The workspace's name; a new name makes a new, empty workspace (its own connections, "
                   "workflows, runs and customers).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (no prompt).")
def users_add(username: str, role: str, workspace: str, password_stdin: bool) -> int:
    """Add a user to a workspace."""
    name = check_username(username)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    check_new_password(password)
    ctx = open_context()
    try:
        users = UserStore(ctx.engine)
        taken = users.name_taken(name)
        if taken is not None:
            raise InvalidInput(f"user {name!r} already exists" + (f" (as {taken!r})" if taken != name else ""))
        now = datetime.now(UTC)
        space = workspace.strip()
        if not space:
            raise InvalidInput("a workspace needs a name")
        found = users.workspace_id(space)
        space_id = found if found is not None else users.create_workspace(space, now=now)
        users.create_user(name, Passwords().hash(password), role, now=now, workspace=space_id)
    finally:
        ctx.close()
    click.echo(f"Added {role} {name!r} to workspace {space!r}" + ("" if found is not None else " (new)") + ".")
    return 0


@users_group.command("list")
def users_list() -> int:
    """Every user with their role and workspace."""
    ctx = open_context()
    try:
        users = UserStore(ctx.engine)
        rows = users.all_users()
        for user in rows:
            click.echo(f"{user.username:<24} {user.role:<7} {users.workspace_name(user.workspace_id) or '?'}")
        if not rows:
            click.echo("no users yet: the dashboard's first visit creates the admin, or use `snapbridge users add`")
    finally:
        ctx.close()
    return 0
