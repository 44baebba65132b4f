"""Analytics: the fact lake (Delta tables), its readers and the engine adapter (Ibis on DuckDB).

Below the business domains: it knows brands only as ids and never checks permissions —
callers pass a brand they obtained through ``org.queries.access_brand``.
"""
