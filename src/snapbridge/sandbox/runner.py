"""Starts both sandbox servers together and describes them (URLs, credentials, public key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.highlevel import HighLevelSandbox
from snapbridge.sandbox.server import ServerThread
from snapbridge.sandbox.snapshots import SnapshotsSandbox

__all__ = ["Sandboxes", "start_sandboxes"]


@dataclass
class Sandboxes:
    gumroad: GumroadSandbox
    snapshots: SnapshotsSandbox
    gumroad_server: ServerThread
    snapshots_server: ServerThread
    highlevel: HighLevelSandbox
    highlevel_server: ServerThread

    @property
    def gumroad_url(self) -> str:
        return self.gumroad_server.base_url

    @property
    def snapshots_url(self) -> str:
        return self.snapshots_server.base_url

    def info(self) -> dict[str, Any]:
        """What `snapbridge sandbox --info FILE` writes; shape fixed by the foundation issue."""
        return {
            "gumroad": {
                "base_url": self.gumroad_url,
                "access_token": self.gumroad.access_token,
                "seller_id": self.gumroad.seller_id,
            },
            "snapshots": {
                "base_url": self.snapshots_url,
                "keys": [{"key": k.key, "scopes": sorted(k.scopes)} for k in self.snapshots.keys()],  # noqa: SIM118
                "webhook_public_key": self.snapshots.webhook_public_key,
            },
            # The real HighLevel areas of the operations catalog, beside the two apps of the contract.
            "highlevel": {
                "base_url": self.highlevel_server.base_url,
                "agency_token": self.highlevel.agency_token,
                "location_token": self.highlevel.location_token,
                "company_id": self.highlevel.company_id,
                "location_id": self.highlevel.location_id,
            },
        }

    def stop(self) -> None:
        self.gumroad_server.stop()
        self.snapshots_server.stop()
        self.highlevel_server.stop()


def start_sandboxes(
    host: str = "127.0.0.1",
    gumroad_port: int = 0,
    snapshots_port: int = 0,
    seed: int = 1,
    time_factor: float = 1.0,
    highlevel_port: int = 0,
) -> Sandboxes:
    gumroad = GumroadSandbox(seed=seed, time_factor=time_factor)
    snapshots = SnapshotsSandbox(seed=seed, time_factor=time_factor)
    highlevel = HighLevelSandbox(seed=seed, time_factor=time_factor)
    started: list[ServerThread] = []
    try:
        for app, port in ((gumroad.app, gumroad_port), (snapshots.app, snapshots_port),
                          (highlevel.app, highlevel_port)):
            started.append(ServerThread(app, host, port).start())
    except Exception:
        for server in started:
            server.stop()
        raise
    gumroad_server, snapshots_server, highlevel_server = started
    gumroad.base_url = gumroad_server.base_url
    snapshots.base_url = snapshots_server.base_url
    highlevel.base_url = highlevel_server.base_url
    return Sandboxes(gumroad, snapshots, gumroad_server, snapshots_server, highlevel, highlevel_server)
