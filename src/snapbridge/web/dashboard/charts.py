"""Usage charts as inline SVG, computed server-side: requests per minute as bars, the quota as a line."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from snapbridge.web.api.models import UsageWindowOut

__all__ = ["Bar", "Chart", "usage_chart"]

WIDTH, HEIGHT = 600, 160


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    error_height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    quota_y: float | None
    quota: float | None
    peak: int
    total: int
    errors: int
    throttled: int
    mean_latency_ms: float


def usage_chart(windows: Sequence[UsageWindowOut], quotas: Mapping[str, float], *, now: datetime,
                minutes: int) -> Chart:
    """One bar per minute (all connections), red where requests failed; the tightest quota as a line."""
    start = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    per_minute: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    latency_sum, latency_n = 0.0, 0
    for w in windows:
        slot = int((w.window_start - start).total_seconds() // 60)
        if 0 <= slot <= minutes:
            per_minute[slot][0] += w.requests
            per_minute[slot][1] += w.errors
        latency_sum += w.mean_latency_ms * w.requests
        latency_n += w.requests
    quota = min(quotas.values()) if quotas else None
    peak = max([v[0] for v in per_minute.values()] or [0])
    top = max(peak, quota or 0, 1)
    slot_width = WIDTH / (minutes + 1)
    bars = []
    for slot, (requests, errors) in sorted(per_minute.items()):
        h = HEIGHT * requests / top
        bars.append(Bar(x=round(slot * slot_width, 1), y=round(HEIGHT - h, 1), width=round(slot_width * 0.8, 1),
                        height=round(h, 1), error_height=round(HEIGHT * errors / top, 1),
                        title=f"{(start + timedelta(minutes=slot)):%H:%M} {requests} requests, {errors} failed"))
    return Chart(width=WIDTH, height=HEIGHT, bars=tuple(bars),
                 quota_y=round(HEIGHT - HEIGHT * quota / top, 1) if quota else None, quota=quota, peak=peak,
                 total=sum(w.requests for w in windows), errors=sum(w.errors for w in windows),
                 throttled=sum(w.throttled for w in windows),
                 mean_latency_ms=round(latency_sum / latency_n, 1) if latency_n else 0.0)
