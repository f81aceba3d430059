"""Which scopes an API key holds, found without changing anything: for `snapbridge connect` and the dashboard.

The contract has no introspection call. Reads are probed with `limit=1`; writes with a body the API must
refuse in validation (422), which HighLevel's stack checks only after the key's scope (guards run before
pipes), so a 422 proves the scope and a scope 401 proves its absence, and nothing is written either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from snapbridge.connectors.snapshots.client import OPERATIONS, SnapshotsClient
from snapbridge.errors import AuthFailed, DeliveryError, NotFound, Retryable, ScopeMissing

__all__ = ["PROBES", "ScopeProbe", "probe_scopes"]

_PROBE_ID = "__snapbridge_scope_probe__"


@dataclass(frozen=True)
class ScopeProbe:
    operation: str
    params: Mapping[str, str] | None = None
    body: object = None


PROBES: Mapping[str, ScopeProbe] = MappingProxyType({
    "saas/location.read": ScopeProbe("locations.list", params={"limit": "1"}),
    "saas/location.write": ScopeProbe("locations.create", body={"name": 7}),
    "events.write": ScopeProbe("events.create", body={"event_id": 7}),
    "events.readonly": ScopeProbe("events.list", params={"limit": "1"}),
    "customers.write": ScopeProbe("customers.upsert", body={"tags": 7}),
    "customers.readonly": ScopeProbe("customers.list", params={"limit": "1"}),
})


async def probe_scopes(client: SnapshotsClient) -> dict[str, bool]:
    """scope → held, for every scope of the contract. Outages propagate, and so does the refusal of a key that
    no probe got past (unknown or revoked: "Invalid token"), which is not a key without scopes."""
    held: dict[str, bool] = {}
    refused: list[AuthFailed] = []
    for scope, probe in PROBES.items():
        op = OPERATIONS[probe.operation]
        ids = {"customer_id": _PROBE_ID} if "{customer_id}" in op.path else None
        try:
            await client._call(  # the probe is part of the connector: same auth, headers and decoding
                probe.operation, ids=ids, params=probe.params, json=probe.body,
                idempotency_key=f"snapbridge-scope-probe:{probe.operation}" if op.writes else None,
            )
        except ScopeMissing:
            held[scope] = False
            continue
        except NotFound:
            pass
        except AuthFailed as exc:
            # Not a scope answer: an unknown key, or this key kind may not call the operation at all (a
            # location-bound key on an agency route). Told apart below, by whether any probe got through.
            refused.append(exc)
            held[scope] = False
            continue
        except Retryable:
            raise  # an outage, a timeout or a 429 storm says nothing about the key's scopes
        except DeliveryError as exc:
            # 422 is the expected answer to a write probe; a 401/403 other than "scope" means this key
            # kind may not call the operation at all (a location-bound key creating locations).
            if exc.status != 422:
                held[scope] = False
                continue
        held[scope] = True
    if len(refused) == len(PROBES):
        raise refused[-1]
    return held
