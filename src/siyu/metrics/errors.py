"""Errors of the metrics computation (codes ``metrics.*``; messages in the locale files)."""

from __future__ import annotations

from siyu.core.errors import Invalid, NotFound


class MetricsInvalid(Invalid):
    """A KPI, cohort or attribution request that cannot be answered as asked: bad period,
    unknown KPI or grouping, bad drill-down side or page."""


class MetricsNotFound(NotFound):
    """An SOP (or other object a metric is asked about) that does not exist in the brand."""
