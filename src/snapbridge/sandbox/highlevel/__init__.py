"""A catalog-driven fake of HighLevel's SaaS, Snapshots, Locations and Contacts APIs, served over HTTP."""

from snapbridge.sandbox.highlevel.app import HighLevelSandbox, handler_for
from snapbridge.sandbox.highlevel.call import AUTH_CLASS_MESSAGE, LOCATION_MESSAGE, SCOPE_MESSAGE

__all__ = [
    "AUTH_CLASS_MESSAGE",
    "HighLevelSandbox",
    "LOCATION_MESSAGE",
    "SCOPE_MESSAGE",
    "handler_for",
]
