"""A maintained rollup of the lake the KPI overview reads instead of raw events and orders.

The overview needs every friendship and group event of a customer's whole history (first add
and its channel code, the first deletion after it, the last group join and leave), a few
months of the other event types it counts, and a year of orders. Read raw, that means string
identity keys joined to the identity map row by row, JSON properties parsed and timestamps
converted on every query.

The **facts rollup** keeps exactly the rows the KPI SQL would have filtered from the raw
tables, in a compact form:

- ``keys-*.parquet`` — a per-brand **identity-key dictionary** (``identity_key`` → ``ik``, a
  dense ``INTEGER``), append-only between rebuilds;
- ``hist-*.parquet`` — the history event types (:data:`siyu.metrics.sql.ALWAYS`): ``ik``,
  ``event_type``, ``occurred_us`` (µs since the epoch), ``occurred_at``, ``dt`` and ``prop``
  (the channel code of an add, the chat id of a group join);
- ``win-*.parquet`` — the windowed event types (:data:`siyu.metrics.sql.WINDOWED` minus the
  history ones), sorted by time so a month's query skips most row groups, with ``prop`` the
  CSAT of a survey answer;
- ``ord-*.parquet`` — the orders: ``ik``, ``kind``, ``occurred_us``, ``dt``, ``paid_fen``,
  ``refund_fen``, sorted by time.

It is keyed on identity keys (as integers), not customers: the identity map is joined at
query time (through the dictionary, once per query), so OneID merges and splits apply at
once without touching the rollup, and every KPI stays exactly equal to the raw computation
(``tests/test_metrics_rollup.py`` compares both).

**Maintenance** (lazy, at query time, under the lake's writer lock for the brand): the
manifest lists the Delta data files (per brand, events and orders) the rollup was built from.
When the tables' live files are a superset of those, only the new files are read: their new
identity keys get the next integers and each kind gets one more part (appends: ingest,
backfills); when any file the rollup was built from is no longer live (compaction, a PIPL
erasure, a vacuum) the rollup — dictionary included — is rebuilt from scratch and its old
parts deleted, so erased facts and keys never survive in it. More than :data:`MAX_PARTS`
parts of a kind are merged into one. It lives next to the Delta tables under
``<lake>/_metrics_rollup/``; lakes that are not on the local file system (or a rollup
directory that cannot be written) fall back to reading the raw tables.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siyu.analytics import lake
from siyu.metrics import lakeview
from siyu.metrics.definitions import ADDED
from siyu.metrics.sql import ALWAYS, WINDOWED

FORMAT = 2
MAX_PARTS = 16
HISTORY_TYPES: tuple[str, ...] = ALWAYS
WINDOW_TYPES: tuple[str, ...] = tuple(t for t in WINDOWED if t not in ALWAYS)
KINDS = ("keys", "hist", "win", "ord")
COLUMNS = {
    "keys": ("identity_key", "ik"),
    "hist": ("ik", "event_type", "occurred_us", "occurred_at", "dt", "prop"),
    "win": ("ik", "event_type", "occurred_us", "dt", "prop"),
    "ord": ("ik", "kind", "occurred_us", "dt", "paid_fen", "refund_fen"),
}
# the typed empty relation of each kind (a brand without orders yet)
EMPTY = {
    "keys": "SELECT NULL::VARCHAR AS identity_key, NULL::INTEGER AS ik",
    "hist": "SELECT NULL::INTEGER AS ik, NULL::VARCHAR AS event_type, NULL::BIGINT AS "
    "occurred_us, NULL::TIMESTAMPTZ AS occurred_at, NULL::DATE AS dt, NULL::VARCHAR AS prop",
    "win": "SELECT NULL::INTEGER AS ik, NULL::VARCHAR AS event_type, NULL::BIGINT AS "
    "occurred_us, NULL::DATE AS dt, NULL::VARCHAR AS prop",
    "ord": "SELECT NULL::INTEGER AS ik, NULL::VARCHAR AS kind, NULL::BIGINT AS occurred_us, "
    "NULL::DATE AS dt, NULL::BIGINT AS paid_fen, NULL::BIGINT AS refund_fen",
}
SORTED = {"win": "occurred_us", "ord": "occurred_us"}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _types(values: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"event_type = '{t}'" for t in values) + ")"


# the rollup's rows of a raw relation (``src``: events or orders with ``identity_key``)
def hist_select(src: str, key: str = "identity_key") -> str:
    return f"""SELECT {key} AS ik, event_type, epoch_us(occurred_at) AS occurred_us,
  occurred_at, dt,
  CASE event_type
    WHEN '{ADDED}' THEN json_extract_string(properties, '$.state')
    WHEN 'group_joined' THEN json_extract_string(properties, '$.chat_id')
  END AS prop
FROM {src} WHERE {_types(HISTORY_TYPES)}"""  # noqa: S608 - constants of this module


def win_select(src: str, key: str = "identity_key") -> str:
    return f"""SELECT {key} AS ik, event_type, epoch_us(occurred_at) AS occurred_us, dt,
  CASE WHEN event_type = 'survey_answered'
    THEN json_extract_string(properties, '$.csat') END AS prop
FROM {src} WHERE {_types(WINDOW_TYPES)}"""  # noqa: S608 - constants of this module


def ord_select(src: str, key: str = "identity_key") -> str:
    return f"""SELECT {key} AS ik, kind, epoch_us(occurred_at) AS occurred_us, dt,
  paid_fen, refund_fen
FROM {src}"""  # noqa: S608 - constants of this module


@dataclass
class Parts:
    """The paths of the rollup's parts, per kind; and the live files it was checked against."""

    keys: list[str] = field(default_factory=list)
    hist: list[str] = field(default_factory=list)
    win: list[str] = field(default_factory=list)
    ord: list[str] = field(default_factory=list)
    live: dict[str, list[str] | None] = field(default_factory=dict)

    def of(self, kind: str) -> list[str]:
        found: list[str] = getattr(self, kind)
        return found


def folder(brand_id: str) -> Path | None:
    """Where the brand's facts rollup lives; None for a lake off the local file system."""
    root = lake.root()
    if "://" in root and not root.startswith("file://"):
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in brand_id)
    return Path(root.removeprefix("file://")) / "_metrics_rollup" / "facts" / safe


def _raw(files: list[str]) -> str:
    listed = ", ".join(_quote(f) for f in files)
    return (
        f"read_parquet([{listed}], hive_partitioning = true, "
        "hive_types = {'brand_id': VARCHAR, 'dt': DATE})"
    )


def _relation(where: Path, names: list[str], kind: str) -> str:
    if not names:
        return f"({EMPTY[kind]} WHERE false)"
    listed = ", ".join(_quote(str(where / p)) for p in names)
    return f"(SELECT {', '.join(COLUMNS[kind])} FROM read_parquet([{listed}]))"  # noqa: S608


def _read_manifest(where: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((where / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    for kind in KINDS:
        names = data.get(kind)
        if not isinstance(names, list) or not all((where / p).exists() for p in names):
            return None
    if not isinstance(data.get("sources"), dict):
        return None
    return data


def _write_manifest(
    where: Path, sources: dict[str, list[str]], parts: dict[str, list[str]]
) -> None:
    tmp = where / "manifest.json.tmp"
    body = {"format": FORMAT, "sources": {k: sorted(v) for k, v in sources.items()}} | parts
    tmp.write_text(json.dumps(body))
    os.replace(tmp, where / "manifest.json")


def _write_part(con: Any, where: Path, kind: str, query: str) -> str:
    from siyu.core.ids import new_id

    name = f"{kind}-{new_id()}.parquet"
    tmp = where / f".{name}.tmp"
    order = f" ORDER BY {SORTED[kind]}" if kind in SORTED else ""
    con.execute(
        f"COPY ({query}{order}) TO {_quote(str(tmp))} "
        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
    )
    os.replace(tmp, where / name)
    return name


def refresh(brand_id: str) -> Parts | None:
    """Bring the brand's facts rollup up to date with the lake; its parts, or None when there
    is no rollup for this lake (read raw)."""
    import duckdb

    where = folder(brand_id)
    events = lakeview.files("events", brand_id)
    if where is None or events is None:
        return None
    orders = lakeview.files("orders", brand_id)
    live = {"events": events, "orders": orders or []}
    try:
        where.mkdir(parents=True, exist_ok=True)
        with lake.writer_lock("metrics-rollup-events", brand_id):
            _drop_legacy(where)
            parts = _refresh_locked(duckdb, where, live)
    except OSError:
        return None
    paths = {k: [str(where / p) for p in parts[k]] for k in KINDS}
    return Parts(
        paths["keys"],
        paths["hist"],
        paths["win"],
        paths["ord"],
        {"events": events, "orders": orders},
    )


def _drop_legacy(where: Path) -> None:
    """Delete the brand's rollup of the previous format (``events-history``, history events
    only): nothing reads it any more, and it would keep identity keys an erasure removed."""
    import shutil

    legacy = where.parent.parent / "events-history" / where.name
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
        with contextlib.suppress(OSError):
            legacy.parent.rmdir()  # empty once the last brand's is gone


def _refresh_locked(duckdb: Any, where: Path, live: dict[str, list[str]]) -> dict[str, list[str]]:
    manifest = _read_manifest(where)
    sources = {t: list(manifest["sources"].get(t, [])) if manifest else [] for t in live}
    parts = {k: list(manifest[k]) if manifest else [] for k in KINDS}
    stale = manifest is None or any(not set(sources[t]) <= set(live[t]) for t in live)
    old: set[str] = set()
    if stale:
        # a file it was built from is gone (compaction, erasure): start over
        old = {p.name for p in where.glob("*.parquet")}
        sources = {t: [] for t in live}
        parts = {k: [] for k in KINDS}
    new = {t: sorted(set(live[t]) - set(sources[t])) for t in live}
    crowded = [k for k in KINDS if len(parts[k]) > MAX_PARTS]
    if not (new["events"] or new["orders"] or stale or crowded):
        return parts
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for kind in crowded:
            old |= set(parts[kind])
            parts[kind] = [_write_part(con, where, kind, _relation(where, parts[kind], kind))]
        ev = _raw(new["events"]) if new["events"] else None
        od = _raw(new["orders"]) if new["orders"] else None
        seen = []
        if ev:
            wanted = _types((*HISTORY_TYPES, *WINDOW_TYPES))
            seen.append(f"SELECT identity_key FROM {ev} WHERE {wanted}")  # noqa: S608
        if od:
            seen.append(f"SELECT identity_key FROM {od}")  # noqa: S608
        if seen:
            known = _relation(where, parts["keys"], "keys")
            con.execute(f"CREATE TEMP VIEW k0 AS SELECT * FROM {known}")  # noqa: S608
            query = f"""
SELECT n.identity_key,
  CAST((SELECT coalesce(max(ik), -1) FROM k0) + row_number() OVER (ORDER BY n.identity_key)
       AS INTEGER) AS ik
FROM (SELECT DISTINCT identity_key FROM ({" UNION ALL ".join(seen)})
      WHERE identity_key IS NOT NULL) n
ANTI JOIN k0 ON k0.identity_key = n.identity_key"""  # noqa: S608
            con.execute(f"CREATE TEMP TABLE nk AS {query}")
            if con.execute("SELECT count(*) FROM nk").fetchone()[0]:
                parts["keys"].append(_write_part(con, where, "keys", "SELECT * FROM nk"))
            keys = _relation(where, parts["keys"], "keys")
            con.execute(f"CREATE TEMP TABLE kall AS SELECT * FROM {keys}")  # noqa: S608
            if ev:
                con.execute(
                    f"CREATE TEMP VIEW nev AS SELECT k.ik AS ikey, e.* FROM {ev} e "  # noqa: S608
                    "JOIN kall k ON k.identity_key = e.identity_key"
                )
                parts["hist"].append(_write_part(con, where, "hist", hist_select("nev", "ikey")))
                parts["win"].append(_write_part(con, where, "win", win_select("nev", "ikey")))
            if od:
                con.execute(
                    f"CREATE TEMP VIEW nod AS SELECT k.ik AS ikey, o.* FROM {od} o "  # noqa: S608
                    "JOIN kall k ON k.identity_key = o.identity_key"
                )
                parts["ord"].append(_write_part(con, where, "ord", ord_select("nod", "ikey")))
    finally:
        con.close()
    _write_manifest(where, {t: [*sources[t], *new[t]] for t in live}, parts)
    for name in old - {p for k in KINDS for p in parts[k]}:
        (where / name).unlink(missing_ok=True)
    return parts


def register(con: Any, brand_id: str, use: bool = True) -> Parts | None:
    """Register the KPI SQL's fact views on ``con``, which already has the raw views ``ev``
    (events) and ``od`` (orders) and the identity map ``idm`` (``identity_key``, ``cix``):

    - ``evh`` — history events with ``identity_key`` and ``occurred_at`` (cohorts, attribution);
    - ``fh`` / ``fw`` / ``fo`` — history events, windowed events and orders keyed on ``ik``;
    - ``idk`` — ``ik`` → ``cix`` for the customers of the dimension.

    From the rollup when there is one (``use``; refreshed first), else the same rows read
    from the raw views (``ik`` is then the identity key itself). The rollup's parts, or None
    when the raw views are used."""
    found = refresh(brand_id) if use else None
    live = found.live if found is not None else {}
    lakeview.register(con, "ev", "events", brand_id, live.get("events"))
    lakeview.register(con, "od", "orders", brand_id, live.get("orders"))
    if found is None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW fh AS {hist_select('ev')}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW fw AS {win_select('ev')}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW fo AS {ord_select('od')}")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW evh AS "
            "SELECT ik AS identity_key, event_type, occurred_at, dt, prop FROM fh"
        )
        con.execute("CREATE OR REPLACE TEMP VIEW idk AS SELECT identity_key AS ik, cix FROM idm")
        return None
    root = Path("/")
    for kind, name in (("hist", "fh"), ("win", "fw"), ("ord", "fo"), ("keys", "ikd")):
        relation = _relation(root, found.of(kind), kind)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {relation}")  # noqa: S608
    con.execute(
        "CREATE OR REPLACE TEMP VIEW evh AS SELECT k.identity_key, h.event_type, h.occurred_at, "
        "h.dt, h.prop FROM fh h JOIN ikd k ON k.ik = h.ik"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW idk AS "
        "SELECT k.ik, m.cix FROM idm m JOIN ikd k ON k.identity_key = m.identity_key"
    )
    return found
