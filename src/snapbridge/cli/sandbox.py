"""`snapbridge sandbox`: serve both sandbox servers until SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from snapbridge.sandbox import start_sandboxes

__all__ = ["sandbox_command"]

_PORT = click.IntRange(0, 65535)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--gumroad-port", type=_PORT, default=8701, show_default=True, help="0 picks a free port.")
@click.option("--snapshots-port", type=_PORT, default=8702, show_default=True, help="0 picks a free port.")
@click.option("--highlevel-port", type=_PORT, default=8703, show_default=True, help="0 picks a free port.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generated data.")
@click.option(
    "--time-factor", type=float, default=1.0, show_default=True,
    help="Multiplies every delay the sandboxes wait (webhook retries, rate windows); 0.01 is 100x faster.",
)
@click.option("--info", "info_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write URLs and credentials as JSON to this file.")
def sandbox_command(
    host: str, gumroad_port: int, snapshots_port: int, highlevel_port: int, seed: int, time_factor: float,
    info_file: Path | None,
) -> int:
    """Serve fakes of the Gumroad API and the Snapshots API with seeded data."""
    if time_factor <= 0:
        raise click.BadParameter("must be greater than 0", param_hint="--time-factor")
    try:
        boxes = start_sandboxes(host, gumroad_port, snapshots_port, seed, time_factor, highlevel_port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc.strerror or exc}") from exc
    info = boxes.info()
    if info_file is not None:
        try:
            info_file.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            boxes.stop()
            raise click.ClickException(f"cannot write {info_file}: {exc.strerror or exc}") from None
    g, s = info["gumroad"], info["snapshots"]
    click.echo(f"Gumroad sandbox    {g['base_url']}/v2")
    click.echo(f"  access token     {g['access_token']}")
    click.echo(f"  seller id        {g['seller_id']}")
    click.echo(f"Snapshots sandbox  {s['base_url']}")
    for key in s["keys"]:
        click.echo(f"  api key          {key['key']}  scopes: {' '.join(key['scopes'])}")
    click.echo(f"  webhook key      {s['webhook_public_key']}  (Ed25519 public key, base64)")
    h = info["highlevel"]
    click.echo(f"HighLevel sandbox  {h['base_url']}  (the catalog's SaaS, Snapshots, Locations and Contacts areas)")
    click.echo(f"  agency token     {h['agency_token']}")
    click.echo(f"  location token   {h['location_token']}  location {h['location_id']}")
    click.echo("Press Ctrl+C to stop.", err=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        boxes.stop()
    click.echo("sandboxes stopped", err=True)
    return 0
