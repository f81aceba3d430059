"""The Snapshots API sandbox: a faithful local fake of the contract, with keys, limits, faults, webhooks."""

from snapbridge.sandbox.snapshots.app import SnapshotsSandbox
from snapbridge.sandbox.snapshots.faults import FaultSettings
from snapbridge.sandbox.snapshots.state import SandboxKey
from snapbridge.sandbox.snapshots.webhooks import WebhookDelivery

__all__ = ["FaultSettings", "SandboxKey", "SnapshotsSandbox", "WebhookDelivery"]
