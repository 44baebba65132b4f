"""A maintained rollup of the lake the KPI overview reads instead of a year of raw events.

The overview needs every friendship and group event of a customer's whole history (first add
and its channel code, the first deletion after it, the last group join and leave) but only a
few months of everything else. Those history events are ~7% of the events table, spread over
every day partition between the other types, so reading them from the raw table means
scanning (and filtering) the whole year each time.

The **history rollup** holds exactly those rows — the event types of
:data:`siyu.metrics.sql.ALWAYS` — with the columns the SQL uses and the one JSON property each
type needs already extracted (``prop``: the channel code of an add, the chat id of a group
join). It is still keyed on identity keys, not customers: the identity map is joined at query
time, so OneID merges and splits apply at once without touching the rollup, and its rows are
the raw rows the query would have filtered, which keeps every KPI exactly equal to the
raw-event computation (``tests/test_metrics_rollup.py`` compares both).

**Maintenance** (lazy, at query time, under the lake's writer lock for the brand): the
manifest lists the Delta data files (per brand) the rollup was built from. When the table's
live files are a superset of those, only the new files are read and added as one more part
(appends: ingest, backfills); when any file the rollup was built from is no longer live
(compaction, a PIPL erasure, a vacuum) the rollup is rebuilt from scratch and its old parts
deleted, so erased facts never survive in it. More than :data:`MAX_PARTS` parts are merged
into one. It lives next to the Delta tables under ``<lake>/_metrics_rollup/``; lakes that are
not on the local file system (or a rollup directory that cannot be written) fall back to
reading the raw events.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from siyu.analytics import lake
from siyu.metrics import lakeview
from siyu.metrics.definitions import ADDED
from siyu.metrics.sql import ALWAYS

FORMAT = 1
MAX_PARTS = 16
HISTORY_TYPES: tuple[str, ...] = ALWAYS
COLUMNS = ("identity_key", "event_type", "occurred_at", "dt", "prop")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def folder(brand_id: str) -> Path | None:
    """Where the brand's history rollup lives; None for a lake off the local file system."""
    root = lake.root()
    if "://" in root and not root.startswith("file://"):
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in brand_id)
    return Path(root.removeprefix("file://")) / "_metrics_rollup" / "events-history" / safe


def _select(files: list[str]) -> str:
    """The rollup rows of the raw event files ``files`` (paths quoted; the rest is ours)."""
    listed = ", ".join(_quote(f) for f in files)
    types = " OR ".join(f"event_type = '{t}'" for t in HISTORY_TYPES)
    return f"""
SELECT identity_key, event_type, occurred_at, dt,
  CASE event_type
    WHEN '{ADDED}' THEN json_extract_string(properties, '$.state')
    WHEN 'group_joined' THEN json_extract_string(properties, '$.chat_id')
  END AS prop
FROM read_parquet([{listed}], hive_partitioning = true,
                  hive_types = {{'brand_id': VARCHAR, 'dt': DATE}})
WHERE {types}"""  # noqa: S608 - quoted paths and constants of this module


def _read_manifest(where: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((where / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    parts = [p for p in data.get("parts", []) if (where / p).exists()]
    if len(parts) != len(data.get("parts", [])):
        return None
    return data


def _write_manifest(where: Path, sources: list[str], parts: list[str]) -> None:
    tmp = where / "manifest.json.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "sources": sorted(sources), "parts": parts}))
    os.replace(tmp, where / "manifest.json")


def _write_part(con: Any, where: Path, query: str) -> str:
    from siyu.core.ids import new_id

    name = f"part-{new_id()}.parquet"
    tmp = where / f".{name}.tmp"
    con.execute(f"COPY ({query}) TO {_quote(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(tmp, where / name)
    return name


def refresh(brand_id: str) -> list[str] | None:
    """Bring the brand's history rollup up to date with the events table; the paths of its
    parts (possibly empty), or None when there is no rollup for this lake (read raw)."""
    import duckdb

    where = folder(brand_id)
    live = lakeview.files("events", brand_id)
    if where is None or live is None:
        return None
    try:
        where.mkdir(parents=True, exist_ok=True)
        with lake.writer_lock("metrics-rollup-events", brand_id):
            return _refresh_locked(duckdb, where, live)
    except OSError:
        return None


def _refresh_locked(duckdb: Any, where: Path, live: list[str]) -> list[str]:
    manifest = _read_manifest(where)
    live_set = set(live)
    sources: list[str] = list(manifest["sources"]) if manifest else []
    parts: list[str] = list(manifest["parts"]) if manifest else []
    stale = manifest is None or not set(sources) <= live_set
    if stale:
        # a file it was built from is gone (compaction, erasure): start over
        old = {p.name for p in where.glob("part-*.parquet")}
        sources, parts = [], []
    else:
        old = set()
    new = sorted(live_set - set(sources))
    if new or stale or len(parts) > MAX_PARTS:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if len(parts) > MAX_PARTS:
                merged = ", ".join(_quote(str(where / p)) for p in parts)
                query = f"SELECT {', '.join(COLUMNS)} FROM read_parquet([{merged}])"  # noqa: S608
                old |= set(parts)
                parts = [_write_part(con, where, query)]
            if new:
                parts.append(_write_part(con, where, _select(new)))
        finally:
            con.close()
        _write_manifest(where, [*sources, *new], parts)
        for name in old - set(parts):
            (where / name).unlink(missing_ok=True)
    return [str(where / p) for p in parts]


def register(con: Any, name: str, brand_id: str, use: bool = True) -> None:
    """Make ``name`` a view of the brand's history events (``COLUMNS``) on ``con``: the rollup
    when there is one (refreshed first), else the same rows read from the raw ``ev`` view."""
    parts = refresh(brand_id) if use else None
    if parts:
        listed = ", ".join(_quote(p) for p in parts)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {', '.join(COLUMNS)} "  # noqa: S608
            f"FROM read_parquet([{listed}])"
        )
        return
    types = " OR ".join(f"event_type = '{t}'" for t in HISTORY_TYPES)
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {name} AS
SELECT identity_key, event_type, occurred_at, dt,
  CASE event_type
    WHEN '{ADDED}' THEN json_extract_string(properties, '$.state')
    WHEN 'group_joined' THEN json_extract_string(properties, '$.chat_id')
  END AS prop
FROM ev WHERE {types}"""  # noqa: S608 - constants of this module
    )
