"""`snapbridge runs`, `snapbridge dead-letters` and `snapbridge replay`: what happened, and trying again."""

from __future__ import annotations

import json
import shlex

import click

from snapbridge.cli.context import open_store
from snapbridge.store import RunStatus, RunSummary

__all__ = ["dead_letters_command", "replay_command", "runs_command"]

# Run and job ids are the store's 64-bit integers; a larger number is a typo, not a row.
_ID = click.IntRange(1, 2**63 - 1)


def _summary(run: RunSummary) -> dict[str, object]:
    return {
        "id": run.id, "workflow": run.workflow_name, "event": run.event_type, "customer": run.customer_key,
        "status": run.status.value, "steps": run.steps, "steps_succeeded": run.steps_succeeded,
        "attempts": run.attempts, "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None, "last_error": run.last_error,
    }


@click.command("runs")
@click.argument("run_id", type=_ID, required=False)
@click.option("--failed", is_flag=True, help="Only runs that failed or died.")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only runs in this state.")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--customer", help="Only runs for this customer (e.g. customer:ada@example.com).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def runs_command(run_id: int | None, failed: bool, status: str | None, workflow: str | None,
                 customer: str | None, limit: int, as_json: bool) -> int:
    """List recent runs, or show one run's steps (RUN_ID) with their inputs, outputs and errors."""
    if failed and status:
        raise click.UsageError("--failed and --status cannot be used together (--failed is failed or dead)")
    with open_store() as store:
        if run_id is not None:
            detail = store.run_detail(run_id)
            if detail is None:
                click.echo(f"error: no run {run_id}", err=True)
                return 1
            click.echo(json.dumps({
                **_summary(detail.run),
                "steps": [{"step": s.step_id, "action": s.action, "status": s.status.value, "attempts": s.attempts,
                           "idempotency_key": s.idempotency_key, "input": s.input, "output": s.output,
                           "last_error": s.last_error} for s in detail.steps],
            }, indent=2, default=str))
            return 0
        wanted: list[RunStatus] | RunStatus | None = RunStatus(status) if status else None
        if failed:
            wanted = [RunStatus.FAILED, RunStatus.DEAD]
        runs = store.runs(status=wanted, workflow=workflow, customer=customer, limit=limit)
    if as_json:
        for run in runs:
            click.echo(json.dumps(_summary(run)))
        return 0
    if not runs:
        click.echo("no runs match" if failed or status or workflow or customer else "no runs yet")
    for run in runs:
        error = f"  {run.last_error[:80]}" if run.last_error and run.status != RunStatus.SUCCEEDED else ""
        click.echo(f"{run.id:>6} {run.created_at:%Y-%m-%d %H:%M:%S} {run.status.value:<9} {run.workflow_name:<22} "
                   f"{run.event_type:<22} {run.customer_key:<34} {run.steps_succeeded}/{run.steps}{error}")
    return 0


@click.command("dead-letters")
@click.option("--workflow", help="Only dead letters of this workflow.")
@click.option("--connection", help="Only dead letters sent through this connection.")
@click.option("--reason", help="Only those whose reason contains this text (any case).")
@click.option("--after", "after_job", type=_ID, metavar="JOB_ID",
              help="The next page: those listed after this job (the last one of the previous page).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dead_letters_command(workflow: str | None, connection: str | None, reason: str | None, after_job: int | None,
                         limit: int, as_json: bool) -> int:
    """Steps that failed for good, newest first, with the reason; `snapbridge replay` sends them again.

    A dead letter marked superseded has a later job of the same customer (ordering key) delivered since:
    `snapbridge replay` leaves it out unless given --force.
    """
    from snapbridge.catalog import appending_actions  # here: loading the catalog would slow every command

    with open_store() as store:
        letters = store.dead_letters(limit, workflow=workflow, connection=connection, reason=reason,
                                     before=after_job)
        superseded = store.supersessions([d.job_id for d in letters], appending_actions())
    for d in letters:
        later = superseded.get(d.job_id)
        if as_json:
            click.echo(json.dumps({
                "job": d.job_id, "run": d.run_id, "died_at": d.died_at.isoformat(), "workflow": d.workflow_name,
                "step": d.step_id, "action": d.action, "connection": d.connection, "customer": d.customer_key,
                "attempts": d.attempts, "reason": d.reason,
                "superseded_by": later.superseded_by if later else None}))
            continue
        mark = f"  [superseded: {later.reason}]" if later else ""
        click.echo(f"job {d.job_id:>6} run {d.run_id:>6} {d.died_at:%Y-%m-%d %H:%M:%S} {d.workflow_name}/{d.step_id} "
                   f"({d.action}) {d.customer_key}: {d.reason}{mark}")
    filters = [f"--{name} {shlex.quote(value)}" for name, value in
               (("workflow", workflow), ("connection", connection), ("reason", reason)) if value]
    if not letters and not as_json:
        click.echo("no more dead letters" if after_job else
                   "no dead letters match" if filters else "no dead letters")
    if len(letters) == limit:
        more = " ".join([*filters, f"--after {letters[-1].job_id}", *([f"--limit {limit}"] if limit != 100 else [])])
        click.echo(f"more may follow: snapbridge dead-letters {more}", err=True)
    return 0


@click.command("replay")
@click.option("--job", "job_ids", type=_ID, multiple=True, metavar="ID",
              help="A dead job (repeatable).")
@click.option("--run", "run_ids", type=_ID, multiple=True, metavar="ID",
              help="Dead jobs of this run (repeatable).")
@click.option("--workflow", help="Dead jobs of this workflow.")
@click.option("--all", "all_dead", is_flag=True, help="Every dead letter (given alone).")
@click.option("--from-start", is_flag=True, help="Re-run from the trigger's first step, not the failed step.")
@click.option("--force", is_flag=True,
              help="Also queue superseded dead letters (their older data is then written after the newer).")
def replay_command(job_ids: tuple[int, ...], run_ids: tuple[int, ...], workflow: str | None, all_dead: bool,
                   from_start: bool, force: bool) -> int:
    """Queue dead letters again with their original idempotency keys, so a replay never doubles a write.

    --job, --run and --workflow narrow each other: `--job 7 --run 3` replays job 7 only if it is a dead job
    of run 3, and nothing otherwise. A repeated option matches any of its values: `--job 7 --job 8` replays
    both. --all, given alone, replays every dead letter.

    A dead letter is superseded when a later job of the same customer (ordering key), through the same
    connection, has been delivered since: replaying it would put the older data back. Such dead letters are
    listed and left out, unless --force queues them too.
    """
    filters = [*(f"--job {i}" for i in job_ids), *(f"--run {i}" for i in run_ids),
               *([f"--workflow {workflow}"] if workflow is not None else [])]
    if all_dead and filters:
        raise click.UsageError("--all replays every dead letter: give it alone, or --job, --run and --workflow "
                               "without it")
    if not (filters or all_dead):
        raise click.UsageError("say what to replay: --job, --run, --workflow or --all")
    from snapbridge.catalog import appending_actions  # here: loading the catalog would slow every command

    with open_store() as store:
        outcome = store.replay(job_ids=job_ids or None, run_ids=run_ids or None, workflow=workflow,
                               all_dead=all_dead, from_start=from_start, force=force,
                               appends=appending_actions())
    skipped = outcome.superseded
    for later in skipped:
        click.echo(f"skipped job {later.job_id} (run {later.run_id}): {later.reason}")
    # The same selection again: what it still finds dead is what was left out.
    selection = [*(f"--job {i}" for i in job_ids), *(f"--run {i}" for i in run_ids),
                 *([f"--workflow {shlex.quote(workflow)}"] if workflow is not None else [])]
    again = " ".join(["snapbridge replay", *(selection or ["--all"]), *(["--from-start"] if from_start else []),
                      "--force"])
    if not outcome.queued:
        if len(skipped) == 1:
            click.echo(f"error: nothing queued: job {skipped[0].job_id} was left out: {skipped[0].reason}; to "
                       f"replay it anyway: {again}", err=True)
        elif skipped:
            click.echo(f"error: nothing queued: all {len(skipped)} matching dead letters were left out as superseded "
                       f"(listed above); to replay them anyway: {again}", err=True)
        else:
            click.echo("error: there are no dead letters to replay" if all_dead
                       else f"error: no dead letter matches {' '.join(filters)}", err=True)
        return 1
    click.echo(f"queued {outcome.queued} job(s) again")
    if skipped:
        words = "1 superseded dead letter" if len(skipped) == 1 else f"{len(skipped)} superseded dead letters"
        click.echo(f"left out {words}; to replay {'it' if len(skipped) == 1 else 'them'} anyway: {again}")
    return 0
