"""The Customer 360's facts from the lake: the timeline across channels and the orders.

Facts are stored under identity keys, not customer ids, so this reads them by the keys of
the customer's identities *now* — after a merge both sides' facts show, after a split each
customer keeps its own. Read through the analytics engine (Ibis on DuckDB).
"""

from __future__ import annotations

import json
from typing import Any

SUMMARY_FIELDS = (
    "path",
    "state",
    "chat_id",
    "coupon_code",
    "csat",
    "content_id",
    "name",
    "msg_type",
    "survey_id",
    "place",
    "order_id",
    "channel",
)


def _summary(properties: str | None) -> str:
    if not properties:
        return ""
    try:
        props = json.loads(properties)
    except ValueError:
        return ""
    if not isinstance(props, dict):
        return ""
    parts = [f"{k}={props[k]}" for k in SUMMARY_FIELDS if props.get(k) not in (None, "", [])]
    return ", ".join(parts)[:200]


def customer_facts(
    brand_id: str, identity_keys: list[str], limit: int = 200
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(timeline newest first, orders newest first) for these identity keys."""
    if not identity_keys:
        return [], []
    from siyu.analytics.engine import connect

    with connect() as engine:
        ev = engine.table("events", brand_id)
        rows = engine.execute(
            ev.filter(ev.identity_key.isin(identity_keys))
            .order_by(ev.occurred_at.desc())
            .limit(limit)
            .select("occurred_at", "event_type", "source", "properties")
        ).to_pylist()
        orders = engine.table("orders", brand_id)
        order_rows = engine.execute(
            orders.filter(orders.identity_key.isin(identity_keys))
            .order_by(orders.occurred_at.desc())
            .limit(limit)
            .select(
                "order_id", "kind", "channel", "occurred_at", "paid_fen", "refund_fen", "store_code"
            )
        ).to_pylist()
    timeline = []
    for row in rows:
        props = row.get("properties")
        channel = None
        if props:
            try:
                channel = json.loads(props).get("channel")
            except (ValueError, AttributeError):
                channel = None
        timeline.append(
            {
                "at": row["occurred_at"],
                "event_type": row["event_type"],
                "channel": channel,
                "source": row["source"],
                "summary": _summary(props),
            }
        )
    result = [
        {
            "order_id": r["order_id"],
            "channel": r["channel"],
            "paid_at": r["occurred_at"],
            "amount_fen": (r["paid_fen"] or 0) if r["kind"] == "paid" else -(r["refund_fen"] or 0),
            "status": r["kind"],
            "store_code": r["store_code"],
        }
        for r in order_rows
    ]
    return timeline, result
