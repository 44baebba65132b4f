"""Facts attributed to today's customers, for the tag computation.

The lake holds identity keys; the operational store's identity map says which customer each
key belongs to now. Here the two meet on the analytics engine (Ibis on DuckDB): facts are
joined with the map, so merges and splits are reflected without rewriting a single fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Purchases:
    """Net purchases per order: ``customer_id``, ``ts`` (paid at), ``amount_fen`` (paid minus
    refunds of that order, > 0), ``store_code``. Fully refunded orders are not purchases."""

    table: Any  # pyarrow.Table


def register_map(engine: Any, identity_map: Any) -> Any:
    """The identity map as an Ibis table on ``engine``."""
    import ibis

    return ibis.memtable(identity_map)


def purchases(engine: Any, brand_id: str, idmap: Any) -> Purchases:
    """Net purchases of the customers in ``idmap`` (an Ibis table of the identity map)."""
    import ibis

    orders = engine.table("orders", brand_id)
    paid = orders.filter(orders.kind == "paid")
    refunds = (
        orders.filter(orders.kind == "refunded")
        .group_by(orders.order_id)
        .aggregate(refunded=orders.refund_fen.sum())
    )
    joined = paid.join(idmap, paid.identity_key == idmap.identity_key)
    net = joined.left_join(refunds, joined.order_id == refunds.order_id)
    amount = net.paid_fen - ibis.coalesce(net.refunded, 0)
    expr = net.select(
        customer_id=net.customer_id,
        ts=net.occurred_at,
        amount_fen=amount.cast("int64"),
        store_code=net.store_code,
    ).filter(lambda t: t.amount_fen > 0)
    return Purchases(engine.execute(expr))


def visits(engine: Any, brand_id: str, idmap: Any) -> Any:
    """Store check-ins per customer and store: ``customer_id``, ``store_code``, ``n``."""
    events = engine.table("events", brand_id)
    checkins = events.filter(events.event_type == "checked_in")
    store = checkins.properties.cast("json")["store_code"].unwrap_as("string")
    joined = checkins.mutate(store_code=store).join(
        idmap, checkins.identity_key == idmap.identity_key
    )
    kept = joined.filter(joined.store_code.notnull())
    expr = kept.group_by([kept.customer_id, kept.store_code]).aggregate(n=kept.count())
    return engine.execute(expr)


def touched_since(
    engine: Any, brand_id: str, since: Any, seen: list[str], overlap: Any
) -> tuple[list[str], Any, list[str]]:
    """Facts received after ``since`` (events carry every fact, orders included) except those
    of the ingests in ``seen``: their identity keys, the latest ``received_at`` (the next
    watermark) and the ingests received within ``overlap`` of it (the next ``seen``)."""
    import pyarrow.compute as pc

    events = engine.table("events", brand_id)
    recent = events.filter(events.received_at > since) if since is not None else events
    if seen:
        recent = recent.filter(~recent.ingest_id.isin(seen))
    got = engine.execute(recent.select("identity_key", "received_at", "ingest_id"))
    keys = pc.unique(got.column("identity_key").drop_null()).to_pylist()
    if not got.num_rows:
        return keys, None, []
    latest = pc.max(got.column("received_at")).as_py()
    window = pc.greater(got.column("received_at"), latest - overlap)
    ingests = pc.unique(pc.filter(got.column("ingest_id"), window).drop_null()).to_pylist()
    return keys, latest, sorted(ingests)
