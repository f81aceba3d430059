"""`snapbridge catalog`: list, search and count the actions and triggers of the operations catalog."""

from __future__ import annotations

import json

import click

from snapbridge.catalog import APPS, Kind, Operation, all_records, counts, describe, render_markdown, select

__all__ = ["catalog_command"]


@click.command("catalog")
@click.option("--app", type=click.Choice(APPS), help="Only this app's operations.")
@click.option("--kind", type=click.Choice([k.value for k in Kind]), help="Only actions or only triggers.")
@click.option("--search", "words", default="", metavar="WORDS",
              help="Only operations whose name, summary, path or scopes hold every word.")
@click.option("--count", "only_count", is_flag=True, help="Print how many there are, per app and kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--markdown", is_flag=True, help="Print the markdown page (docs/catalog.md) of the selection.")
def catalog_command(
    app: str | None, kind: str | None, words: str, only_count: bool, as_json: bool, markdown: bool
) -> int:
    """List the actions and triggers snapbridge can use, with their scopes."""
    chosen = select(app=app, kind=Kind(kind) if kind else None, search=words)
    if markdown:
        click.echo(render_markdown(chosen), nl=False)
        return 0
    if only_count:
        per = counts(chosen) if chosen else {}
        if as_json:
            click.echo(json.dumps({
                "total": len(chosen),
                "actions": sum(n for (_, k), n in per.items() if k is Kind.ACTION),
                "triggers": sum(n for (_, k), n in per.items() if k is Kind.TRIGGER),
                "by_app": {a: {k.value: n for (a2, k), n in per.items() if a2 == a}
                           for a in APPS if any(a2 == a for a2, _ in per)},
            }, indent=2))
            return 0
        for (name, record_kind), number in per.items():
            click.echo(f"{name:<11} {record_kind.value:<8} {number:>4}")
        actions = sum(1 for r in chosen if r.kind is Kind.ACTION)
        whole = len(all_records())
        scope = "" if len(chosen) == whole else f"; {whole} in the whole catalog"
        click.echo(f"total {len(chosen)} ({actions} actions, {len(chosen) - actions} triggers{scope})")
        return 0
    if as_json:
        click.echo(json.dumps([describe(r) for r in chosen], indent=2, ensure_ascii=False))
        return 0
    if not chosen:
        click.echo("no operations match", err=True)
        return 0
    for record in chosen:
        where = f"{record.method} {record.path}" if isinstance(record, Operation) else f"on {record.event}"
        scopes = " | ".join(record.scopes) or "-"
        click.echo(f"{record.name:<48} {record.kind.value:<7} {where:<70} {scopes}")
    return 0
