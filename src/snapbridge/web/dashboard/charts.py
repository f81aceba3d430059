"""Usage charts as inline SVG, computed server-side (no script, no CDN): requests per minute against the quota,
successes and failures over time, and mean latency; plus the per-connection totals beside them.

Long windows are drawn in slots of several minutes, so a chart never has more than MAX_SLOTS columns.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from snapbridge.web.api.models import UsageOut, UsageWindowOut

__all__ = [
    "Bar",
    "Chart",
    "ConnectionTotals",
    "Line",
    "LineChart",
    "Slot",
    "UsageView",
    "connection_totals",
    "latency_chart",
    "nice_ceiling",
    "outcome_chart",
    "slot_minutes",
    "slots",
    "usage_chart",
    "usage_view",
]

WIDTH, HEIGHT = 600, 200
PAD = 6  # keeps a line at the top of the scale inside the frame
MAX_SLOTS = 90


@dataclass(frozen=True)
class Slot:
    """The requests of `minutes` minutes from `start`, all connections together."""

    start: datetime
    minutes: int
    requests: int = 0
    errors: int = 0
    throttled: int = 0
    latency_ms_sum: float = 0.0

    @property
    def succeeded(self) -> int:
        return self.requests - self.errors

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.requests if self.requests else None

    @property
    def label(self) -> str:
        last = self.start + timedelta(minutes=self.minutes - 1)
        return f"{self.start:%H:%M}" if self.minutes == 1 else f"{self.start:%H:%M}–{last:%H:%M}"


def slot_minutes(minutes: int) -> int:
    return max(1, math.ceil((minutes + 1) / MAX_SLOTS))


def slots(windows: Sequence[UsageWindowOut], *, now: datetime, minutes: int) -> list[Slot]:
    """Every slot from `minutes` ago to the current minute, oldest first; a slot without requests is zero."""
    size = slot_minutes(minutes)
    start = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    count = math.ceil((minutes + 1) / size)
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for w in windows:
        index = int((w.window_start - start).total_seconds() // 60) // size
        if 0 <= index < count:
            total = sums[index]
            total[0] += w.requests
            total[1] += w.errors
            total[2] += w.throttled
            total[3] += w.mean_latency_ms * w.requests
    return [Slot(start + timedelta(minutes=i * size), size, int(sums[i][0]), int(sums[i][1]), int(sums[i][2]),
                 sums[i][3]) if i in sums else Slot(start + timedelta(minutes=i * size), size)
            for i in range(count)]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (at least 1): a scale's top."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def _y(value: float, top: float) -> float:
    return round(PAD + (HEIGHT - 2 * PAD) * (1 - value / top), 1)


def _per(size: int) -> str:
    return "per minute" if size == 1 else f"per {size} minutes"


# requests against the quota


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
    slot_minutes: int
    start: datetime
    top: float


def usage_chart(windows: Sequence[UsageWindowOut], quotas: Mapping[str, float], *, now: datetime,
                minutes: int) -> Chart:
    """A bar per slot: requests per minute (averaged over the slot), red where they failed; the tightest quota
    as a line. `peak` is the busiest single minute."""
    cells = slots(windows, now=now, minutes=minutes)
    size = cells[0].minutes
    per_minute: dict[datetime, int] = defaultdict(int)
    for w in windows:
        per_minute[w.window_start] += w.requests
    quota = min(quotas.values()) if quotas else None
    peak = max(per_minute.values(), default=0)
    top = max(max((c.requests / size for c in cells), default=0), quota or 0, 1)
    slot_width = WIDTH / len(cells)
    scale = (HEIGHT - PAD) / top  # bars stand on the bottom edge; the top of the scale stays inside the frame
    bars = []
    for i, c in enumerate(cells):
        if not c.requests:
            continue
        h = scale * c.requests / size
        rate = f" ({c.requests / size:.1f}/min)" if size > 1 else ""
        bars.append(Bar(x=round(i * slot_width, 1), y=round(HEIGHT - h, 1), width=round(slot_width * 0.8, 1),
                        height=round(h, 1), error_height=round(scale * c.errors / size, 1),
                        title=f"{c.label} {c.requests} requests{rate}, {c.errors} failed"))
    total = sum(w.requests for w in windows)
    latency = sum(w.mean_latency_ms * w.requests for w in windows)
    return Chart(width=WIDTH, height=HEIGHT, bars=tuple(bars),
                 quota_y=round(HEIGHT - scale * quota, 1) if quota else None, quota=quota, peak=peak,
                 total=total, errors=sum(w.errors for w in windows), throttled=sum(w.throttled for w in windows),
                 mean_latency_ms=round(latency / total, 1) if total else 0.0, slot_minutes=size,
                 start=cells[0].start, top=round(top, 1))


# lines over time


@dataclass(frozen=True)
class Line:
    key: str  # the CSS class
    label: str
    paths: tuple[str, ...]  # SVG polyline points, one per unbroken run of values
    dots: tuple[tuple[float, float], ...]  # values with no neighbour, drawn as dots


@dataclass(frozen=True)
class LineChart:
    title: str
    summary: str  # the chart in words, for screen readers and for the legend
    width: int
    height: int
    lines: tuple[Line, ...]
    hits: tuple[Bar, ...]  # one transparent column per slot, titled with that slot's values
    top: float
    unit: str
    start: datetime
    slot_minutes: int


def _line(key: str, label: str, values: Sequence[float | None], top: float) -> Line:
    step = WIDTH / len(values)
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((round((i + 0.5) * step, 1), _y(value, top)))
    return Line(key, label, tuple(" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1),
                tuple(run[0] for run in runs if len(run) == 1))


def _hits(cells: Sequence[Slot], titles: Sequence[str]) -> tuple[Bar, ...]:
    step = WIDTH / len(cells)
    return tuple(Bar(x=round(i * step, 1), y=0, width=round(step, 1), height=HEIGHT, error_height=0, title=title)
                 for i, title in enumerate(titles))


def outcome_chart(windows: Sequence[UsageWindowOut], *, now: datetime, minutes: int) -> LineChart:
    """Succeeded and failed requests per slot; throttled (429) ones are among the failed."""
    cells = slots(windows, now=now, minutes=minutes)
    top = nice_ceiling(max((c.requests for c in cells), default=0))
    lines = (_line("ok", "succeeded", [c.succeeded for c in cells], top),
             _line("err", "failed", [c.errors for c in cells], top),
             _line("throttled", "throttled (429)", [c.throttled for c in cells], top))
    succeeded, failed = sum(c.succeeded for c in cells), sum(c.errors for c in cells)
    throttled = sum(c.throttled for c in cells)
    size = cells[0].minutes
    return LineChart(
        title=f"Successes and failures {_per(size)}",
        summary=f"{succeeded} succeeded · {failed} failed, {throttled} of them throttled (429)",
        width=WIDTH, height=HEIGHT, lines=lines, top=top, unit="requests", start=cells[0].start, slot_minutes=size,
        hits=_hits(cells, [f"{c.label} {c.succeeded} succeeded, {c.errors} failed ({c.throttled} throttled)"
                           for c in cells]))


def latency_chart(windows: Sequence[UsageWindowOut], *, now: datetime, minutes: int) -> LineChart:
    """Mean latency per slot; slots without requests leave a gap. Only sums are stored, so no percentiles."""
    cells = slots(windows, now=now, minutes=minutes)
    means = [c.mean_latency_ms for c in cells]
    known = [m for m in means if m is not None]
    top = nice_ceiling(max(known, default=0))
    size = cells[0].minutes
    requests = sum(c.requests for c in cells)
    overall = sum(c.latency_ms_sum for c in cells) / requests if requests else 0.0
    summary = (f"mean {overall:.1f} ms over {requests} requests; slowest slot {max(known):.1f} ms" if known
               else "no requests in this window")
    return LineChart(
        title=f"Mean latency {_per(size)} (ms; percentiles are not stored)", summary=summary, width=WIDTH,
        height=HEIGHT, lines=(_line("latency", "mean latency", means, top),), top=top, unit="ms",
        start=cells[0].start, slot_minutes=size,
        hits=_hits(cells, [f"{c.label} mean {m:.1f} ms over {c.requests} requests" if m is not None
                           else f"{c.label} no requests" for c, m in zip(cells, means, strict=True)]))


# the table beside the charts


@dataclass(frozen=True)
class ConnectionTotals:
    connection: str
    requests: int
    errors: int
    throttled: int
    mean_latency_ms: float
    peak_per_minute: int
    quota_per_minute: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def connection_totals(windows: Sequence[UsageWindowOut], quotas: Mapping[str, float]) -> list[ConnectionTotals]:
    """One row per connection that made requests, by name."""
    by_name: dict[str, list[UsageWindowOut]] = defaultdict(list)
    for w in windows:
        by_name[w.connection].append(w)
    out = []
    for name, rows in sorted(by_name.items()):
        requests = sum(w.requests for w in rows)
        latency = sum(w.mean_latency_ms * w.requests for w in rows)
        out.append(ConnectionTotals(
            connection=name, requests=requests, errors=sum(w.errors for w in rows),
            throttled=sum(w.throttled for w in rows), mean_latency_ms=round(latency / requests, 1) if requests
            else 0.0, peak_per_minute=max(w.requests for w in rows), quota_per_minute=quotas.get(name)))
    return out


@dataclass(frozen=True)
class UsageView:
    minutes: int
    requests: Chart
    outcomes: LineChart
    latency: LineChart
    totals: tuple[ConnectionTotals, ...]


def usage_view(usage: UsageOut, *, now: datetime, minutes: int) -> UsageView:
    """Everything the usage charts and table show for one window."""
    windows, quotas = usage.windows, usage.quota_per_minute
    return UsageView(minutes=minutes, requests=usage_chart(windows, quotas, now=now, minutes=minutes),
                     outcomes=outcome_chart(windows, now=now, minutes=minutes),
                     latency=latency_chart(windows, now=now, minutes=minutes),
                     totals=tuple(connection_totals(windows, quotas)))
