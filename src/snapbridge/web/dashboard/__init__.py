"""The dashboard: server-rendered pages, shipped CSS and JS (no CDN, no build step), SVG usage charts."""

from snapbridge.web.dashboard.charts import (
    Bar,
    Chart,
    ConnectionTotals,
    LineChart,
    UsageView,
    connection_totals,
    latency_chart,
    nice_ceiling,
    outcome_chart,
    slots,
    usage_chart,
    usage_view,
)
from snapbridge.web.dashboard.pages import dashboard_routes

__all__ = [
    "Bar",
    "Chart",
    "ConnectionTotals",
    "LineChart",
    "UsageView",
    "connection_totals",
    "dashboard_routes",
    "latency_chart",
    "nice_ceiling",
    "outcome_chart",
    "slots",
    "usage_chart",
    "usage_view",
]
