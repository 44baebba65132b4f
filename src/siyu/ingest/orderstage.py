"""Order files → order_paid / order_refunded events, orders and order items.

An export has one row per order or one row per order line; rows are grouped by
(event type, order id, refund id). Order-level fields come from the first row of a group;
every row with a SKU is an item. Money columns are yuan text (``实付金额`` ``128.50``)
and become integer fen. One bad row rejects its whole order (an order with a missing line
would be wrong, not partial), and the other rows of that order say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from siyu.core.errors import Invalid
from siyu.ingest import columns as C
from siyu.ingest.catalogue import CHANNELS, ORDER_TYPES
from siyu.ingest.filestage import Context, Frame, identifier_columns, times
from siyu.ingest.staging import Staged, events_schema, items_schema, orders_schema

if TYPE_CHECKING:
    import numpy as np

MONEY = ("paid_fen", "total_fen", "discount_fen", "refund_fen", "unit_price_fen", "amount_fen")
TEXT_LIMITS = {
    "order_id": 64,
    "refund_id": 64,
    "store_code": 64,
    "sku": 64,
    "name": 200,
    "category": 100,
}


@dataclass
class _Rows:
    """Row-level results the builder needs (numpy arrays over the file's rows)."""

    key: Any
    kinds: np.ndarray
    amount_of: np.ndarray
    present: dict[str, np.ndarray]
    money: dict[str, np.ndarray]
    qty: np.ndarray
    unit: np.ndarray
    amount: np.ndarray
    has_item: np.ndarray


def _col(fr: Frame, name: str) -> Any:
    import pyarrow as pa

    col = fr.cols.get(name)
    return col if col is not None else pa.nulls(fr.n, pa.string())


def _np(col: Any, fill: Any) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(col, fill).to_numpy(zero_copy_only=False))


def stage_orders(fr: Frame, ctx: Context) -> Staged:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n, P = fr.n, fr.problems
    if "order_id" not in fr.cols:
        raise Invalid("ingest.missing_column", column="order_id")
    occurred = times(fr, ctx, required=True)
    ids = identifier_columns(fr, ctx)
    order_id = _col(fr, "order_id")
    P.add(C.mask_of(pc.is_null(order_id)), "order_id", "ingest.required", "required")
    for name, limit in TEXT_LIMITS.items():
        long = C.mask_of(pc.greater(pc.utf8_length(_col(fr, name)), limit))
        P.add(long, name, "ingest.too_long", f"longer than {limit}")
    etype = pc.fill_null(_col(fr, "event_type"), "order_paid")
    wrong = C.mask_of(pc.invert(pc.is_in(etype, value_set=pa.array(sorted(ORDER_TYPES)))))
    P.add(wrong, "event_type", "ingest.not_allowed", "order_paid or order_refunded (支付/退款)")
    channel = _col(fr, "channel")
    P.add(C.mask_of(pc.is_null(channel)), "channel", "ingest.required", "required")
    bad_channel = pc.and_(pc.is_valid(channel), pc.invert(pc.is_in(channel, pa.array(CHANNELS))))
    P.add(C.mask_of(bad_channel), "channel", "ingest.not_allowed", "one of " + ", ".join(CHANNELS))
    money: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for name in MONEY:
        col = fr.cols.get(name)
        if col is None:
            money[name], present[name] = np.zeros(n, np.int64), np.zeros(n, bool)
            continue
        fen, bad, reasons = C.parse_fen(col)
        P.add(bad, name, "ingest.bad_amount", reasons)
        negative = C.mask_of(pc.less(fen, 0))
        P.add(negative, name, "ingest.out_of_range", "negative amount")
        money[name], present[name] = _np(fen, 0).astype(np.int64), C.mask_of(pc.is_valid(fen))
    qty_col = fr.cols.get("qty")
    qty = np.ones(n, np.int64)
    if qty_col is not None:
        parsed, bad = C.parse_ints(qty_col)
        P.add(bad, "qty", "ingest.bad_value", "not an integer")
        qty = np.where(C.mask_of(pc.is_valid(parsed)), _np(parsed, 1), 1).astype(np.int64)
        P.add((qty < 1) | (qty > 100_000), "qty", "ingest.out_of_range", "between 1 and 100000")
    has_item = C.mask_of(pc.is_valid(_col(fr, "sku")))
    unit, amount = money["unit_price_fen"], money["amount_fen"]
    amount = np.where(present["amount_fen"], amount, unit * qty)
    unit = np.where(present["unit_price_fen"], unit, amount // np.maximum(qty, 1))
    no_price = has_item & ~present["amount_fen"] & ~present["unit_price_fen"]
    P.add(no_price, "amount_fen", "ingest.missing_amount", "an item needs a price or amount")

    # Group rows into orders.
    key = pc.binary_join_element_wise(
        etype, pc.fill_null(order_id, ""), pc.fill_null(_col(fr, "refund_id"), ""), "\x1f"
    )
    enc = C.flat(key).dictionary_encode()
    gidx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    groups = len(enc.dictionary)
    _, first = np.unique(gidx, return_index=True)
    item_sum = np.zeros(groups, np.int64)
    np.add.at(item_sum, gidx[has_item], amount[has_item])
    any_item = np.zeros(groups, bool)
    any_item[gidx[has_item]] = True
    kinds = _np(etype, "order_paid")[first]
    paid_first = np.where(present["paid_fen"][first], money["paid_fen"][first], -1)
    refund_first = np.where(present["refund_fen"][first], money["refund_fen"][first], paid_first)
    amount_of = np.where(kinds == "order_paid", paid_first, refund_first)
    amount_of = np.where((amount_of < 0) & any_item, item_sum, amount_of)
    missing = amount_of < 0
    P.add_at(first[missing], "paid_fen", "ingest.missing_amount", "no amount for this order")
    bad_group = np.zeros(groups, bool)
    np.logical_or.at(bad_group, gidx, P.bad)
    collateral = bad_group[gidx] & ~P.bad
    P.add(collateral, "order_id", "ingest.order_incomplete", "another row of this order failed")
    good_groups = np.flatnonzero(~bad_group)
    pos_of_group = np.full(groups, -1, np.int64)
    pos_of_group[good_groups] = np.arange(good_groups.size)
    rows = first[good_groups]
    v = _Rows(key, kinds, amount_of, present, money, qty, unit, amount, has_item)
    return _build(fr, ctx, ids, occurred, etype, gidx, rows, good_groups, pos_of_group, v)


def _build(
    fr: Frame,
    ctx: Context,
    ids: dict[str, Any],
    occurred: Any,
    etype: Any,
    gidx: np.ndarray,
    rows: np.ndarray,
    good_groups: np.ndarray,
    pos_of_group: np.ndarray,
    v: _Rows,
) -> Staged:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from siyu.analytics.hashing import digests

    n, take = fr.n, pa.array(rows)
    amount_of, kinds = v.amount_of[good_groups], v.kinds[good_groups]
    paid = kinds == "order_paid"
    text = {k: _col(fr, k).to_pylist() for k in ("order_id", "refund_id", "store_code", "channel")}
    coupons = pc.split_pattern_regex(_col(fr, "coupon_codes"), r"\s*[,;，；、|]\s*").to_pylist()
    given = fr.cols.get("event_id")
    prefix = "\x1f".join((ctx.brand_id, ctx.source, "orders"))
    basis = pc.binary_join_element_wise(prefix, pc.take(v.key, take), "\x1f")
    ev_ids = pc.binary_join_element_wise("o:", digests(basis), "")
    if given is not None:
        ev_ids = pc.coalesce(pc.take(given, take), ev_ids)
    # Items: good rows with a SKU, numbered within their order in file order.
    item_rows = np.flatnonzero(v.has_item & (pos_of_group[gidx] >= 0))
    order_of_item = pos_of_group[gidx[item_rows]]
    line_no = np.zeros(item_rows.size, np.int32)
    if item_rows.size:
        sort = np.lexsort((item_rows, order_of_item))
        starts = np.r_[0, np.flatnonzero(np.diff(order_of_item[sort])) + 1]
        ranks = np.arange(item_rows.size) - np.repeat(starts, np.diff(np.r_[starts, sort.size]))
        line_no[sort] = ranks + 1
    texts = {k: _col(fr, k).to_pylist() for k in ("sku", "name", "category")}
    items_by_order: list[list[dict[str, Any]]] = [[] for _ in range(rows.size)]
    qty, unit, amount = v.qty, v.unit, v.amount
    for r, o, ln in zip(item_rows.tolist(), order_of_item.tolist(), line_no.tolist(), strict=True):
        items_by_order[o].append(
            {
                "sku": texts["sku"][r],
                "name": texts["name"][r],
                "category": texts["category"][r],
                "qty": int(qty[r]),
                "unit_price_fen": int(unit[r]),
                "amount_fen": int(amount[r]),
                "_line": ln,
            }
        )
    props: list[str] = []
    order_cols: dict[str, list[Any]] = {name: [] for name in orders_schema().names}
    for i, r in enumerate(rows.tolist()):
        is_paid = bool(paid[i])
        items = [
            {k: x for k, x in it.items() if k != "_line" and x is not None}
            for it in items_by_order[i]
        ]
        body: dict[str, Any] = {"order_id": text["order_id"][r], "channel": text["channel"][r]}
        if is_paid:
            body["paid_fen"] = int(amount_of[i])
            for name in ("total_fen", "discount_fen"):
                if v.present[name][r]:
                    body[name] = int(v.money[name][r])
        else:
            body["refund_fen"] = int(amount_of[i])
            if text["refund_id"][r]:
                body["refund_id"] = text["refund_id"][r]
        if text["store_code"][r]:
            body["store_code"] = text["store_code"][r]
        codes = [c for c in (coupons[r] or []) if c]
        if codes:
            body["coupon_codes"] = codes
        if items:
            body["items"] = items
        props.append(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        row = {
            "_pos": i,
            "event_id": None,
            "order_id": body["order_id"],
            "kind": "paid" if is_paid else "refunded",
            "refund_id": None if is_paid else text["refund_id"][r],
            "channel": body["channel"],
            "store_code": body.get("store_code"),
            "total_fen": body.get("total_fen"),
            "discount_fen": body.get("discount_fen"),
            "paid_fen": body.get("paid_fen"),
            "refund_fen": body.get("refund_fen"),
            "item_count": sum(it["qty"] for it in items),
            "coupon_codes": codes,
        }
        for name, value in row.items():
            order_cols[name].append(value)
    order_cols["event_id"] = ev_ids.to_pylist()
    item_cols: dict[str, list[Any]] = {name: [] for name in items_schema().names}
    for o, its in enumerate(items_by_order):
        for it in its:
            item_cols["_pos"].append(o)
            item_cols["line_no"].append(it["_line"])
            for name in ("sku", "name", "category", "qty", "unit_price_fen", "amount_fen"):
                item_cols[name].append(it[name])
    m = rows.size
    events = pa.table(
        {
            "_row": pa.array(fr.raw.lines[rows]),
            "event_id": ev_ids,
            "event_type": pc.take(etype, take),
            "schema_version": pa.array(np.ones(m, np.int16)),
            "occurred_at": pc.take(occurred, take),
            "source": pa.array([ctx.source] * m, pa.string()),
            "properties": pa.array(props, pa.string()),
            "_profile": pa.nulls(m, pa.string()),
            "_owner": pa.nulls(m, pa.string()),
            "_unit": pa.nulls(m, pa.string()),
            "_gen": pa.array(np.full(m, given is None)),
            **{
                f"id_{t}": pc.take(ids[t], take) if t in ids else pa.nulls(m, pa.string())
                for t in ctx.id_types
            },
        },
        schema=events_schema(ctx.id_types),
    )
    return Staged(
        events=events,
        orders=pa.table(order_cols, schema=orders_schema()),
        items=pa.table(item_cols, schema=items_schema()),
        errors=fr.problems.sorted_errors(),
        total=n + len(fr.raw.errors),
        ignored_columns=fr.ignored,
    )
