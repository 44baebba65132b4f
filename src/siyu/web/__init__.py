"""The console edge: server-rendered pages (Jinja2 + HTMX, ECharts for charts)."""
