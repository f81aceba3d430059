"""The sandbox's webhook signing key (Ed25519, derived from the seed) and the X-GHL-Signature it produces."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["WebhookSigner"]


class WebhookSigner:
    """Signs raw webhook bodies; one seed always gives one key pair, so demos and tests can pin it."""

    def __init__(self, seed: int) -> None:
        material = hashlib.sha256(f"snapbridge-snapshots-sandbox-webhooks:{seed}".encode()).digest()
        self._private = Ed25519PrivateKey.from_private_bytes(material)
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(raw).decode("ascii")

    def sign(self, body: bytes) -> str:
        """The X-GHL-Signature value: base64 of the 64-byte Ed25519 signature over exactly these bytes."""
        return base64.b64encode(self._private.sign(body)).decode("ascii")
