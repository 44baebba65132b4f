"""The facts rules read: Ibis tables that already carry ``customer_id``.

- ``events``: customer_id, event_type, occurred_at (UTC), dt (brand-local day), properties
  (JSON text), source;
- ``orders``: customer_id, kind (paid | refunded), occurred_at, dt, order_id, refund_id,
  channel, store_code, paid_fen, total_fen, discount_fen, refund_fen, coupon_codes, source;
- ``customers``: the universe (customer_id, plus any profile columns rules may name).

The lake holds identity keys, not customers: :func:`facts_from_lake` joins its tables with
an identity map (identity_key → customer_id) on the engine. :func:`unbound_facts` gives the
same shape without data (for printing SQL); :func:`facts_from_arrow` and
:func:`facts_from_parquet` put given data on any Ibis backend (DuckDB, PySpark).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EVENT_COLUMNS: dict[str, str] = {
    "customer_id": "string",
    "event_type": "string",
    "occurred_at": "timestamp('UTC')",
    "dt": "date",
    "properties": "string",
    "source": "string",
}
ORDER_COLUMNS: dict[str, str] = {
    "customer_id": "string",
    "kind": "string",
    "occurred_at": "timestamp('UTC')",
    "dt": "date",
    "order_id": "string",
    "refund_id": "string",
    "channel": "string",
    "store_code": "string",
    "paid_fen": "int64",
    "total_fen": "int64",
    "discount_fen": "int64",
    "refund_fen": "int64",
    "coupon_codes": "array<string>",
    "source": "string",
}
_PROFILE_TYPES = {
    "str": "string",
    "int": "int64",
    "fen": "int64",
    "float": "float64",
    "bool": "boolean",
    "date": "date",
    "datetime": "timestamp('UTC')",
}


@dataclass
class Facts:
    events: Any  # ibis.Table
    orders: Any  # ibis.Table
    customers: Any  # ibis.Table

    def backend_name(self) -> str | None:
        try:
            name: str = self.events._find_backend().name
        except Exception:  # unbound tables have no backend
            return None
        return name


def unbound_facts(profile: Mapping[str, str] | None = None) -> Facts:
    """Tables named events, orders, customers with the expected columns and no data;
    ``profile`` maps extra customer columns to catalogue kinds (``{"city": "str"}``)."""
    import ibis

    cust = {"customer_id": "string"}
    for name, kind in (profile or {}).items():
        cust[name] = _PROFILE_TYPES.get(kind, "string")
    return Facts(
        ibis.table(EVENT_COLUMNS, name="events"),
        ibis.table(ORDER_COLUMNS, name="orders"),
        ibis.table(cust, name="customers"),
    )


def _shape(table: Any, columns: Mapping[str, str]) -> Any:
    """Exactly ``columns`` (missing ones as typed nulls), in order."""
    import ibis

    have = set(table.columns)
    return table.select(
        **{
            name: table[name] if name in have else ibis.null(dtype)
            for name, dtype in columns.items()
        }
    )


def facts_from_lake(
    engine: Any, brand_id: str, identity_map: Any, customers: Any | None = None
) -> Facts:
    """Facts of one brand on ``engine`` (``siyu.analytics.engine.Engine``): the lake's events
    and orders joined with ``identity_map`` (a pyarrow table ``identity_key``,
    ``customer_id``); facts whose key maps to no customer are left out. ``customers`` (a
    pyarrow table with ``customer_id`` and profile columns) is the universe; by default every
    customer of the map."""
    import ibis

    idmap = ibis.memtable(identity_map.select(["identity_key", "customer_id"]))
    out = []
    for name, columns in (("events", EVENT_COLUMNS), ("orders", ORDER_COLUMNS)):
        lake = engine.table(name, brand_id)
        joined = lake.join(idmap, lake.identity_key == idmap.identity_key)
        out.append(_shape(joined, columns))
    universe = (
        ibis.memtable(customers)
        if customers is not None
        else idmap.select("customer_id").distinct()
    )
    return Facts(out[0], out[1], universe)


def facts_from_arrow(events: Any, orders: Any, customers: Any) -> Facts:
    """Facts from pyarrow tables (as in-memory tables; they run on whichever backend executes
    the expression)."""
    import ibis

    return Facts(
        _shape(ibis.memtable(events), EVENT_COLUMNS),
        _shape(ibis.memtable(orders), ORDER_COLUMNS),
        ibis.memtable(customers),
    )


def facts_from_parquet(con: Any, events: str, orders: str, customers: str) -> Facts:
    """Facts read from Parquet files by an Ibis connection (DuckDB, PySpark …)."""
    return Facts(
        _shape(con.read_parquet(events), EVENT_COLUMNS),
        _shape(con.read_parquet(orders), ORDER_COLUMNS),
        con.read_parquet(customers),
    )
