"""Ingestion: the event catalogue, validation, file importers, HTTP intake, the inbox and
the writers that turn accepted input into facts in the lake (``siyu.analytics.lake``)."""
