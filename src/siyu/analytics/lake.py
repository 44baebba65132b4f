"""The fact lake: append-only Delta tables of events, orders, order items and identity
observations under ``<data_dir>/lake`` (or ``SIYU_LAKE_URI``), partitioned by ``brand_id`` and
the brand-local day ``dt``.

- :func:`append` writes one batch as **one Delta commit** per table and guarantees that a
  fact id (``event_id``, ``order_key`` …) is stored at most once per brand: duplicates inside
  the batch and against everything already stored are dropped and reported per row.
- :func:`dataset` is the reader: a pyarrow dataset of one brand's partition.
- :func:`compact` (optimize + vacuum) and :func:`erase` (PIPL deletion by identity key).

Identity keys (``type:hash``) are the only identity the lake holds: never a raw phone number
or email, and no customer id on facts — customers merge and split, facts do not change; readers
map identity keys to today's customers through the identity map (``customers.queries``).
Why the dedup works the way it does is in ``docs/adr/0005-fact-lake.md``.

    result = append("events", brand.id, table)      # table: columns of schema("events")
    ds = dataset("events", brand.id)                  # pyarrow.dataset.Dataset
"""

from __future__ import annotations

import fcntl
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from siyu.analytics.keyindex import KeyIndex, forget, index_for

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pds

TABLES = ("events", "orders", "order_items", "identity_observations")
PARTITION_BY = ["brand_id", "dt"]
# The exact identity of a fact in each table: what "the same fact twice" means.
ID_COLUMN = {
    "events": "event_id",
    "orders": "order_key",
    "order_items": "item_key",
    "identity_observations": "observation_id",
}
_EPOCH = date(1970, 1, 1).toordinal()
_IDENTITY_KEY = re.compile(r"^[a-z][a-z0-9_]*:[0-9a-f]{8,64}$")


def schema(table: str) -> pa.Schema:
    """The explicit Arrow schema of a lake table (every column nullable: Delta's rule for
    appends is then simply "same names and types")."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    keys = pa.list_(pa.string())
    head = [("brand_id", pa.string()), ("dt", pa.date32())]
    columns: dict[str, list[tuple[str, pa.DataType]]] = {
        "events": [
            ("event_id", pa.string()),
            ("dedup_key", pa.int64()),
            ("event_type", pa.string()),
            ("schema_version", pa.int16()),
            ("occurred_at", ts),
            ("received_at", ts),
            ("source", pa.string()),
            ("identity_key", pa.string()),
            ("identity_keys", keys),
            ("properties", pa.string()),
            ("ingest_id", pa.string()),
        ],
        "orders": [
            ("order_key", pa.string()),
            ("dedup_key", pa.int64()),
            ("event_id", pa.string()),
            ("order_id", pa.string()),
            ("kind", pa.string()),
            ("refund_id", pa.string()),
            ("occurred_at", ts),
            ("channel", pa.string()),
            ("store_code", pa.string()),
            ("identity_key", pa.string()),
            ("total_fen", pa.int64()),
            ("discount_fen", pa.int64()),
            ("paid_fen", pa.int64()),
            ("refund_fen", pa.int64()),
            ("item_count", pa.int32()),
            ("coupon_codes", keys),
            ("source", pa.string()),
            ("ingest_id", pa.string()),
        ],
        "order_items": [
            ("item_key", pa.string()),
            ("dedup_key", pa.int64()),
            ("order_key", pa.string()),
            ("order_id", pa.string()),
            ("kind", pa.string()),
            ("line_no", pa.int32()),
            ("sku", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("qty", pa.int32()),
            ("unit_price_fen", pa.int64()),
            ("amount_fen", pa.int64()),
            ("identity_key", pa.string()),
            ("occurred_at", ts),
        ],
        "identity_observations": [
            ("observation_id", pa.string()),
            ("dedup_key", pa.int64()),
            ("source", pa.string()),
            ("observed_at", ts),
            ("identity_key", pa.string()),
            ("identity_keys", keys),
            ("customer_id", pa.string()),
            ("status", pa.string()),
            ("event_count", pa.int32()),
            ("ingest_id", pa.string()),
        ],
    }
    if table not in columns:
        raise ValueError(f"unknown lake table {table!r}")
    return pa.schema(head + columns[table])


def root() -> str:
    from siyu.core.settings import get_settings

    return get_settings().lake_location.rstrip("/")


def location(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown lake table {table!r}")
    return f"{root()}/{table}"


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _open(table: str, create: bool = False) -> Any:
    """The DeltaTable, or None when it does not exist yet (created on demand for writes)."""
    from deltalake import DeltaTable

    uri = location(table)
    if DeltaTable.is_deltatable(uri):
        return DeltaTable(uri)
    if not create:
        return None
    if _is_local(uri):
        from pathlib import Path

        Path(uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    # mode="ignore": two writers creating the table at once both end up with the same table.
    return DeltaTable.create(uri, schema(table), mode="ignore", partition_by=PARTITION_BY)


def dataset(table: str, brand_id: str) -> pds.Dataset:
    """One brand's rows of a lake table as a pyarrow dataset (empty if nothing is stored)."""
    import pyarrow.dataset as pds

    dt = _open(table)
    if dt is None:
        return pds.dataset(schema(table).empty_table())
    ds: pds.Dataset = dt.to_pyarrow_dataset(file_pruning_predicate=[("brand_id", "=", brand_id)])
    target = schema(table)
    if not ds.schema.equals(target):
        # Readers always see the declared schema (Delta may name list items differently).
        return ds.replace_schema(target)
    return ds


def read(table: str, brand_id: str, columns: list[str] | None = None) -> pa.Table:
    return dataset(table, brand_id).to_table(columns=columns)


# ---------------------------------------------------------------- appends


@dataclass
class AppendResult:
    """``duplicate[i]`` is True when input row ``i`` was not written because its id was
    already stored, or appeared earlier in the same batch."""

    table: str
    written: int
    duplicate: np.ndarray
    version: int | None = None

    @property
    def duplicates(self) -> int:
        return int(self.duplicate.sum())


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def writer_lock(table: str, brand_id: str) -> Iterator[None]:
    """Serialise check-then-append per (table, brand): across threads with a mutex, across
    processes on this host with ``flock`` on a file in the data directory. Two writers on
    different hosts need a shared lock (see the ADR); Delta alone would accept both appends.
    """
    from siyu.core.settings import get_settings

    locks = get_settings().ensure_data_dir() / "lake-locks"
    locks.mkdir(exist_ok=True)
    path = locks / f"{table}.{brand_id}.lock"
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(str(path), threading.Lock())
    with tlock, open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def first_occurrences(ids: Any, keys: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask: True for the first row holding each id.

    With ``keys`` (the ids' ``dedup_key``) the grouping runs on int64 — much faster than on
    strings — and rows that share a key with an earlier row are then compared by id, so a
    hash collision never makes two different ids one.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if keys is None:
        from siyu.analytics.hashing import fact_keys

        keys = fact_keys("", ids).to_numpy()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first_of_row = first[inverse]
    mask: np.ndarray = first_of_row == np.arange(n)
    later = np.flatnonzero(~mask)
    if later.size:
        same = pc.equal(pc.take(ids, pa.array(later)), pc.take(ids, pa.array(first_of_row[later])))
        collided = later[~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)]
        if collided.size:  # astronomically rare: fall back to grouping by the id itself
            t = pa.table({"id": ids, "i": pa.array(np.arange(n, dtype=np.int64))})
            firsts = t.group_by("id", use_threads=False).aggregate([("i", "min")])
            mask = np.zeros(n, dtype=bool)
            mask[firsts.column("i_min").to_numpy()] = True
    return mask


def append(
    table: str,
    brand_id: str,
    data: pa.Table,
    *,
    dry_run: bool = False,
    keys: Any = None,
    drop: np.ndarray | None = None,
) -> AppendResult:
    """Append ``data`` (the table's columns except ``dedup_key``; ``brand_id`` is set here)
    as one commit, dropping rows whose id is already stored or repeated in the batch.
    ``keys``: the ids' ``fact_keys`` when the caller has them already. ``drop``: rows the
    caller knows are duplicates by another rule (reported as duplicates, never written).

    The rows written are copied once, in day order: the partitioned writer then produces
    one file per day from contiguous runs instead of scattering every column.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from siyu.analytics.hashing import fact_keys

    target = schema(table)
    id_col = ID_COLUMN[table]
    n = data.num_rows
    if n == 0:
        return AppendResult(table, 0, np.zeros(0, dtype=bool))
    ids = data.column(id_col)
    if ids.null_count:
        raise ValueError(f"{table}.{id_col} must not be null")
    if keys is None:
        keys = fact_keys(brand_id, ids)
    days = pc.cast(data.column("dt"), pa.int32()).to_numpy(zero_copy_only=False)
    key_np = np.asarray(keys.to_numpy(zero_copy_only=False), dtype=np.int64)
    first = first_occurrences(ids, key_np)
    if drop is not None:
        first = first & ~drop
    with writer_lock(table, brand_id):
        dt = _open(table, create=not dry_run)
        index = index_for(location(table), brand_id)
        if dt is not None:
            index.refresh(dt, brand_id)
        stored = _stored_duplicates(dt, brand_id, id_col, ids, key_np, index)
        duplicate = ~first | stored
        rows = np.flatnonzero(~duplicate)
        version = None
        if rows.size and not dry_run:
            from deltalake import WriterProperties, write_deltalake

            rows = rows[np.argsort(days[rows], kind="stable")]
            fresh = _rows_for_write(target, data, brand_id, key_np, rows)
            # ZSTD level 1: faster and smaller than snappy on these columns.
            write_deltalake(
                dt,
                fresh,
                partition_by=PARTITION_BY,
                mode="append",
                writer_properties=WriterProperties(compression="ZSTD", compression_level=1),
            )
            dt.update_incremental()
            version = dt.version()
            # Our own files need not be read back: their keys are the ones just written.
            index.refresh(dt, brand_id, written=(key_np[rows], days[rows]))
    return AppendResult(table, int(rows.size), duplicate, version)


def _rows_for_write(
    target: pa.Schema, data: pa.Table, brand_id: str, keys: np.ndarray, rows: np.ndarray
) -> pa.Table:
    """The chosen ``rows`` of ``data`` in the table's schema: one ``take`` per column (one
    contiguous chunk each), ``dedup_key`` and ``brand_id`` added, absent columns null."""
    import numpy as np
    import pyarrow as pa

    n = rows.size
    pick = pa.array(rows, pa.int64())
    columns = []
    for field in target:
        if field.name == "dedup_key":
            col: Any = pa.array(keys[rows], pa.int64())
        elif field.name == "brand_id":
            # one value, built as a dictionary (pa.repeat of a string scalar is 20x slower)
            codes = pa.array(np.zeros(n, dtype=np.int32))
            col = pa.DictionaryArray.from_arrays(codes, pa.array([brand_id])).cast(pa.string())
        elif field.name in data.column_names:
            source = data.column(field.name)
            source = source.combine_chunks() if source.num_chunks != 1 else source.chunk(0)
            col = source.take(pick)
            if not col.type.equals(field.type):
                col = col.cast(field.type)
        else:  # optional columns may be left out
            col = pa.nulls(n, field.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=target)


def _stored_duplicates(
    dt: Any,
    brand_id: str,
    id_col: str,
    ids: pa.Array | pa.ChunkedArray,
    keys: np.ndarray,
    index: KeyIndex,
) -> np.ndarray:
    """Rows whose id is already stored. The key index finds candidates (a 60-bit hash
    match); candidates are confirmed against the stored ids, read only from the days the
    index says they live in, so a hash collision can never drop a new fact."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    hit, days = index.lookup(keys)
    if dt is None or not hit.any():
        return np.zeros(len(keys), dtype=bool)
    day_values = sorted({int(d) for d in days})
    iso = [str(date.fromordinal(_EPOCH + d)) for d in day_values]
    ds = dt.to_pyarrow_dataset(
        file_pruning_predicate=[("brand_id", "=", brand_id), ("dt", "in", iso)]
    )
    day_filter = pds.field("dt").isin(pa.array(day_values, pa.int32()).cast(pa.date32()))
    key_filter = pds.field("dedup_key").isin(pa.array(np.unique(keys[hit]), pa.int64()))
    found = ds.to_table(columns=[id_col], filter=day_filter & key_filter).column(id_col)
    stored: np.ndarray = pc.is_in(ids, value_set=found.combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    return stored


# ---------------------------------------------------------------- maintenance


def compact(brand_id: str | None = None, retention_hours: int = 168) -> dict[str, dict[str, int]]:
    """Merge small files (per brand when given) and remove files no reader needs any more.

    Files replaced less than ``retention_hours`` ago are kept so that readers that opened an
    older version can finish.
    """
    out: dict[str, dict[str, int]] = {}
    for table in TABLES:
        dt = _open(table)
        if dt is None:
            continue
        filters = [("brand_id", "=", brand_id)] if brand_id else None
        with writer_lock(table, brand_id or "_all"):
            metrics = dt.optimize.compact(partition_filters=filters)
            removed = dt.vacuum(
                retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
            )
            dt.create_checkpoint()
        forget(location(table))
        out[table] = {
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
            "files_vacuumed": len(removed),
        }
    return out


def erase(brand_id: str, identity_keys: list[str]) -> dict[str, int]:
    """Delete every fact of these identities (a PIPL deletion request), then vacuum with no
    retention so the old files holding them are physically gone. Returns rows deleted."""
    keys = sorted(set(identity_keys))
    if not keys:
        return {}
    for key in keys:
        if not _IDENTITY_KEY.match(key):
            raise ValueError(f"not an identity key: {key!r}")
    listed = ", ".join(f"'{k}'" for k in keys)
    brand = brand_id.replace("'", "''")
    direct = f"identity_key IN ({listed})"
    in_lists = " OR ".join(f"array_has(identity_keys, '{k}')" for k in keys)
    out: dict[str, int] = {}
    for table in TABLES:
        dt = _open(table)
        if dt is None:
            continue
        cond = direct if table in ("orders", "order_items") else f"{direct} OR {in_lists}"
        with writer_lock(table, brand_id):
            metrics = dt.delete(f"brand_id = '{brand}' AND ({cond})")
            dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
        forget(location(table))
        out[table] = int(metrics.get("num_deleted_rows", 0))
    return out


def stats(brand_id: str) -> dict[str, dict[str, int]]:
    """Rows and files per table for one brand."""
    out: dict[str, dict[str, int]] = {}
    for table in TABLES:
        ds = dataset(table, brand_id)
        files = len(list(ds.get_fragments()))
        out[table] = {"rows": ds.count_rows(), "files": files}
    return out
