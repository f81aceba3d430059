"""A faithful local fake of the Gumroad API v2 and its webhooks (Ping and resource subscriptions)."""

from snapbridge.sandbox.gumroad.formencode import encode_form
from snapbridge.sandbox.gumroad.sandbox import GumroadSandbox
from snapbridge.sandbox.gumroad.state import Settings
from snapbridge.sandbox.gumroad.webhooks import Delivery

__all__ = ["Delivery", "GumroadSandbox", "Settings", "encode_form"]
