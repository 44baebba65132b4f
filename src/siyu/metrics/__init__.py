"""Metrics: KPI definitions, contracts and lines, cohorts, attribution, dashboards data, reports."""
