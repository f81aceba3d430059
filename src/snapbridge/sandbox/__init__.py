"""Faithful local fakes of the Gumroad API and the Snapshots API, served over real HTTP."""

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.journal import Journal, JournalEntry
from snapbridge.sandbox.runner import Sandboxes, start_sandboxes
from snapbridge.sandbox.server import ServerThread, bind_socket, new_event_loop, run_async
from snapbridge.sandbox.snapshots import SnapshotsSandbox

__all__ = [
    "GumroadSandbox",
    "Journal",
    "JournalEntry",
    "Sandboxes",
    "ServerThread",
    "SnapshotsSandbox",
    "bind_socket",
    "new_event_loop",
    "run_async",
    "start_sandboxes",
]
