"""The running service: connection tests now; receiver, deriver, workers, limiter and pollers to come."""

from snapbridge.runtime.connect import (
    GUMROAD_SCOPES,
    SNAPSHOTS_SCOPES,
    ConnectionReport,
    ScopeNeed,
    ScopeStatus,
    check_gumroad,
    check_snapshots,
)

__all__ = [
    "ConnectionReport",
    "GUMROAD_SCOPES",
    "SNAPSHOTS_SCOPES",
    "ScopeNeed",
    "ScopeStatus",
    "check_gumroad",
    "check_snapshots",
]
