"""The dashboard: server-rendered pages, shipped CSS and JS (no CDN, no build step), SVG usage charts."""

from snapbridge.web.dashboard.charts import Bar, Chart, usage_chart
from snapbridge.web.dashboard.pages import dashboard_routes

__all__ = ["Bar", "Chart", "dashboard_routes", "usage_chart"]
