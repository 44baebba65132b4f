"""Lake tables as DuckDB views over the Parquet files the Delta log lists.

``lake.dataset`` hands DuckDB a pyarrow dataset; building it costs a few milliseconds per data
file (one fragment with its partition expression each), which on a year of daily partitions
is most of a KPI query's time from a cold start. Reading the current file list from the Delta
log instead (``DeltaTable.file_uris``, only the files the log says are live: never a removed
or vacuumed one) and handing it to DuckDB's own Parquet reader with Hive partitioning keeps
the partition pruning on ``dt`` (DuckDB skips files from their path) without that cost.

Object-store lakes (``s3://`` …) and a missing table fall back to ``lake.dataset``.
"""

from __future__ import annotations

from typing import Any

from siyu.analytics import lake


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def files(table: str, brand_id: str) -> list[str] | None:
    """Local paths of the brand's live files of ``table``; None when the table does not exist
    or does not live on the local file system."""
    from deltalake import DeltaTable

    uri = lake.location(table)
    if "://" in uri and not uri.startswith("file://"):
        return None
    if not DeltaTable.is_deltatable(uri):
        return None
    dt = DeltaTable(uri)
    uris = dt.file_uris(file_pruning_predicate=[("brand_id", "=", brand_id)])
    return [u.removeprefix("file://") for u in uris]


def register(
    con: Any, name: str, table: str, brand_id: str, found: list[str] | None = None
) -> None:
    """Make ``name`` a view of the brand's rows of lake table ``table`` on ``con`` (``found``:
    its live files, when the caller has just listed them)."""
    found = found if found else files(table, brand_id)
    if not found:
        con.register(name, lake.dataset(table, brand_id))
        return
    listed = ", ".join(_quote(f) for f in found)
    columns = ", ".join(f'"{f.name}"' for f in lake.schema(table))
    # the paths are quoted; name and columns are ours
    text = (
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {columns} FROM read_parquet([{listed}], "  # noqa: S608
        "hive_partitioning = true, hive_types = {'brand_id': VARCHAR, 'dt': DATE})"
    )
    con.execute(text)
