"""``siyu bench tags``: the standard pack (20 rule tags, RFM, lifecycle, value models) on
synthetic facts, beside hand-written DuckDB SQL and a straightforward pandas version of the
same 20 rules.

- **Data**: ``customers`` customers and ``events`` events over two years (numpy + pyarrow,
  seeded), about 8% of them orders (also in the orders table, as ingest writes them), the
  rest page views, messages, coupons, check-ins, surveys, group and WeCom events with JSON
  properties. Heavier customers are more likely (a power law on the customer index).
- **Ours**: :func:`siyu.tags.lang.compile_rules` of the pack, run by DuckDB through Ibis
  (``threads``, 2 by default), plus RFM (``value_rfm``), lifecycle stages and the value models
  (``value.fit`` + ``value.predict``) from the net paid orders.
- **Hand SQL**: one DuckDB statement a careful analyst would write for the same 20 rules
  (two conditional aggregations and a join), on the same Arrow tables and connection.
- **pandas**: ``json.loads`` of the properties it needs, boolean masks and
  ``groupby().agg`` per rule. Above ``pandas_max_events`` it runs on a sample of customers
  (all their facts) and the ratio compares time per customer (``pandas_sampled`` says so).

All three must give the same members (checked; ``agree``). The last line printed by the CLI
is the JSON object :func:`run` returns: ``ratio_vs_sql`` (ours ÷ hand SQL, target ≤ 1.3)
and ``ratio_vs_pandas`` (ours ÷ pandas per customer, target ≤ 0.2).
"""

from __future__ import annotations

import gc
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

TZ = "Asia/Shanghai"
TODAY = date(2026, 6, 30)
TARGET_SECONDS = 60
TARGET_VS_SQL = 1.3
TARGET_VS_PANDAS = 0.2
_EPOCH = date(1970, 1, 1)

# event type → share of events (orders included)
MIX = {
    "order_paid": 0.075,
    "order_refunded": 0.005,
    "page_viewed": 0.42,
    "message_received": 0.14,
    "coupon_issued": 0.08,
    "coupon_redeemed": 0.05,
    "checked_in": 0.06,
    "content_clicked": 0.06,
    "survey_answered": 0.03,
    "group_joined": 0.02,
    "wecom_contact_added": 0.02,
    "group_left": 0.04,
}
CHANNELS = ("mini_mall", "tmall", "jd", "douyin", "pos", "other")
CHANNEL_P = (0.35, 0.15, 0.08, 0.07, 0.33, 0.02)


def as_of() -> datetime:
    """The end of the benchmark's brand-local day."""
    end = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=ZoneInfo(TZ)) + timedelta(days=1)
    return (end - timedelta(microseconds=1)).astimezone(UTC)


# ---------------------------------------------------------------- synthetic facts


def _strs(*parts: Any) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, "")


def generate(customers: int, events: int, seed: int = 7) -> dict[str, Any]:
    """Arrow tables ``events``, ``orders``, ``customers`` (the Facts shape)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    ids = pa.array([f"c{i:08d}" for i in range(customers)], pa.string())
    who = np.minimum((customers * rng.random(events) ** 1.6).astype(np.int64), customers - 1)
    names = list(MIX)
    kind = rng.choice(len(names), size=events, p=np.array(list(MIX.values())) / sum(MIX.values()))
    kind = kind.astype(np.int8)
    days_back = np.minimum(rng.exponential(200.0, events).astype(np.int64), 729)
    day = (TODAY - _EPOCH).days - days_back
    secs = rng.integers(8 * 3600, 22 * 3600, events)
    offset = 8 * 3600  # Asia/Shanghai has no DST
    occurred = (day * 86400 + secs - offset) * 1_000_000
    order = np.lexsort((occurred, who))  # facts arrive roughly in time order per customer
    who, kind, day, occurred = who[order], kind[order], day[order], occurred[order]

    type_arr = pa.array(names, pa.string()).take(pa.array(kind))
    props = pa.nulls(events, pa.string())
    # JSON properties per type, built column-wise
    small = rng.integers(0, 1_000_000, events)
    pieces: dict[str, Any] = {}
    n = pa.array(small % 40)
    dur = pa.array(rng.integers(500, 120_000, events))
    pieces["page_viewed"] = _strs(
        '{"path":"/pages/p',
        pc.cast(n, pa.string()),
        '","duration_ms":',
        pc.cast(dur, pa.string()),
        "}",
    )
    chat = pa.array(["group", "single"]).take(pa.array((small % 3 == 0).astype(np.int8) ^ 1))
    pieces["message_received"] = _strs(
        '{"staff_userid":"u',
        pc.cast(pa.array(small % 50), pa.string()),
        '","chat_type":"',
        chat,
        '","msg_type":"text"}',
    )
    code = pc.cast(pa.array(small % 5000), pa.string())
    pieces["coupon_issued"] = _strs('{"coupon_code":"K', code, '"}')
    pieces["coupon_redeemed"] = _strs('{"coupon_code":"K', code, '"}')
    place = pa.array(["store", "mini_program", "group", "event"]).take(pa.array(small % 4))
    pieces["checked_in"] = _strs(
        '{"place":"',
        place,
        '","store_code":"S',
        pc.cast(pa.array(small % 200), pa.string()),
        '"}',
    )
    csat = pa.array(1 + (small % 5))
    pieces["survey_answered"] = _strs('{"survey_id":"q1","csat":', pc.cast(csat, pa.string()), "}")
    pieces["content_clicked"] = _strs('{"content_id":"a', code, '"}')
    pieces["group_joined"] = _strs(
        '{"chat_id":"g', pc.cast(pa.array(small % 100), pa.string()), '"}'
    )
    pieces["group_left"] = pieces["group_joined"]
    pieces["wecom_contact_added"] = _strs('{"staff_userid":"u1","external_userid":"w', code, '"}')
    pieces["order_paid"] = pa.array(['{"channel":"pos"}'] * 1, pa.string()).take(
        pa.array(np.zeros(events, dtype=np.int8))
    )
    pieces["order_refunded"] = pieces["order_paid"]
    for i, name in enumerate(names):
        mask = pa.array(kind == i)
        props = pc.if_else(mask, pieces[name], props)
    del pieces
    dt = pa.array(day.astype("int32"), pa.int32()).cast(pa.date32())
    ts = pa.array(occurred, pa.timestamp("us", tz="UTC"))
    cust = ids.take(pa.array(who))
    ev = pa.table(
        {
            "customer_id": cust,
            "event_type": type_arr,
            "occurred_at": ts,
            "dt": dt,
            "properties": props,
            "source": pa.array(["sdk"] * 1).take(pa.array(np.zeros(events, dtype=np.int8))),
        }
    )

    # orders: the order events
    paid_i, refund_i = names.index("order_paid"), names.index("order_refunded")
    sel = np.flatnonzero((kind == paid_i) | (kind == refund_i))
    m = len(sel)
    is_paid = kind[sel] == paid_i
    channel = rng.choice(len(CHANNELS), size=m, p=CHANNEL_P)
    chan = pa.array(CHANNELS).take(pa.array(channel))
    store = pc.if_else(
        pa.array(channel == CHANNELS.index("pos")),
        _strs("S", pc.cast(pa.array(rng.integers(0, 200, m)), pa.string())),
        pa.nulls(m, pa.string()),
    )
    amount = np.maximum(100, rng.lognormal(np.log(9000), 0.8, m)).astype(np.int64)
    has_coupon = rng.random(m) < 0.2
    offsets = np.concatenate([[0], np.cumsum(has_coupon)]).astype(np.int32)
    coupons = pa.ListArray.from_arrays(
        pa.array(offsets),
        _strs("K", pc.cast(pa.array(rng.integers(0, 5000, has_coupon.sum())), pa.string())),
    )
    paid_mask = pa.array(is_paid)
    amt = pa.array(amount)
    null_i = pa.nulls(m, pa.int64())
    od = pa.table(
        {
            "customer_id": cust.take(pa.array(sel)),
            "kind": pc.if_else(paid_mask, "paid", "refunded"),
            "occurred_at": ts.take(pa.array(sel)),
            "dt": dt.take(pa.array(sel)),
            "order_id": _strs("o", pc.cast(pa.array(sel), pa.string())),
            "refund_id": pa.nulls(m, pa.string()),
            "channel": chan,
            "store_code": store,
            "paid_fen": pc.if_else(paid_mask, amt, null_i),
            "total_fen": pc.if_else(paid_mask, amt, null_i),
            "discount_fen": pc.if_else(paid_mask, pa.array(np.zeros(m, np.int64)), null_i),
            "refund_fen": pc.if_else(paid_mask, null_i, pa.array(amount // 2)),
            "coupon_codes": coupons,
            "source": pa.array(["pos"] * 1).take(pa.array(np.zeros(m, dtype=np.int8))),
        }
    )
    cu = pa.table({"customer_id": ids})
    return {"events": ev, "orders": od, "customers": cu}


# ---------------------------------------------------------------- hand-written SQL


def hand_sql(today: date, as_of_utc: datetime) -> str:
    """The 20 rules as one DuckDB statement, written by hand."""

    def d(days: int) -> str:
        return f"DATE '{today - timedelta(days=days - 1)}'"

    month = today.replace(day=1)
    prev_end = month - timedelta(days=1)
    prev = prev_end.replace(day=1)
    ts = f"TIMESTAMPTZ '{as_of_utc.isoformat()}'"
    return f"""
WITH o AS (
  SELECT customer_id,
    count(*) FILTER (WHERE kind = 'paid') AS n_all,
    count(*) FILTER (WHERE kind = 'paid' AND dt >= {d(365)}) AS n365,
    sum(paid_fen) FILTER (WHERE kind = 'paid' AND dt >= {d(365)}) AS s365,
    sum(paid_fen) FILTER (WHERE kind = 'paid' AND dt >= {d(90)}) AS s90,
    max(paid_fen) FILTER (WHERE kind = 'paid' AND dt >= {d(365)}) AS max365,
    min(dt) FILTER (WHERE kind = 'paid') AS first_dt,
    max(dt) FILTER (WHERE kind = 'paid') AS last_dt,
    count(*) FILTER (WHERE kind = 'paid' AND dt >= {d(180)}) AS n180,
    count(*) FILTER (WHERE kind = 'paid' AND channel = 'pos' AND dt >= {d(365)}) AS pos365,
    count(*) FILTER (WHERE kind = 'paid' AND channel IN ('mini_mall', 'tmall', 'jd', 'douyin')
                     AND dt >= {d(365)}) AS online365,
    count(DISTINCT store_code) FILTER (WHERE kind = 'paid' AND channel = 'pos'
                     AND dt >= {d(365)}) AS stores365,
    arg_max(channel, occurred_at) FILTER (WHERE kind = 'paid' AND dt >= {d(365)}
                     AND channel IS NOT NULL) AS last_channel,
    count(*) FILTER (WHERE kind = 'paid' AND channel = 'mini_mall' AND dt >= {d(365)}) AS mini365,
    count(*) FILTER (WHERE kind = 'refunded' AND dt >= {d(180)}) AS refunds180,
    count(*) FILTER (WHERE kind = 'paid' AND channel = 'pos' AND dt >= {d(90)}) AS pos90,
    count(*) FILTER (WHERE kind = 'paid' AND dt >= DATE '{month}') AS this_month,
    count(*) FILTER (WHERE kind = 'paid' AND dt BETWEEN DATE '{prev}' AND DATE '{prev_end}')
      AS last_month
  FROM orders
  WHERE occurred_at <= {ts} AND dt <= DATE '{today}'
  GROUP BY customer_id
), e AS (
  SELECT customer_id,
    count(*) FILTER (WHERE event_type = 'coupon_redeemed' AND dt >= {d(180)}) AS redeemed180,
    count(*) FILTER (WHERE event_type = 'coupon_issued' AND dt >= {d(90)}) AS issued90,
    count(*) FILTER (WHERE event_type = 'coupon_redeemed' AND dt >= {d(90)}) AS redeemed90,
    count(*) FILTER (WHERE event_type = 'page_viewed' AND dt >= {d(180)}) AS pv180,
    count(*) FILTER (WHERE event_type = 'page_viewed' AND dt >= {d(30)}) AS pv30,
    count(*) FILTER (WHERE event_type = 'page_viewed' AND dt >= {d(7)}) AS pv7,
    sum(CASE WHEN event_type = 'page_viewed'
        THEN TRY_CAST(json_extract_string(properties, '$.duration_ms') AS BIGINT) END)
      FILTER (WHERE event_type = 'page_viewed' AND dt >= {d(30)}) AS dur30,
    count(*) FILTER (WHERE event_type = 'checked_in' AND dt >= {d(90)}
      AND json_extract_string(properties, '$.place') = 'store') AS store90,
    avg(CASE WHEN event_type = 'survey_answered'
        THEN TRY_CAST(json_extract_string(properties, '$.csat') AS BIGINT) END)
      FILTER (WHERE event_type = 'survey_answered' AND dt >= {d(180)}) AS csat180,
    min(CASE WHEN event_type = 'survey_answered'
        THEN TRY_CAST(json_extract_string(properties, '$.csat') AS BIGINT) END)
      FILTER (WHERE event_type = 'survey_answered' AND dt >= {d(30)}) AS csat_min30,
    count(*) FILTER (WHERE event_type = 'group_joined') AS joined,
    count(*) FILTER (WHERE event_type = 'message_received' AND dt >= {d(30)}
      AND json_extract_string(properties, '$.chat_type') = 'group') AS group_msgs30
  FROM events
  WHERE event_type IN ('coupon_redeemed', 'coupon_issued', 'page_viewed', 'checked_in',
                       'survey_answered', 'group_joined', 'message_received')
    AND occurred_at <= {ts} AND dt <= DATE '{today}'
  GROUP BY customer_id
)
SELECT c.customer_id,
  coalesce(n365 >= 2, false) AS repeat_buyer,
  coalesce(s90 >= 100000, false) AS high_spend_90d,
  coalesce(s365 >= 300000 AND n365 >= 4, false) AS vip_spender,
  coalesce(max365 >= 50000, false) AS big_basket,
  coalesce(s365 / nullif(n365, 0) >= 30000, false) AS high_aov,
  coalesce(DATE '{today}' - first_dt <= 30, false) AS new_buyer,
  coalesce(DATE '{today}' - last_dt BETWEEN 91 AND 180, false) AS at_risk,
  coalesce(n_all >= 2 AND n180 = 0, false) AS lapsed_buyer,
  coalesce(pos365 > 0 AND online365 > 0, false) AS omnichannel,
  coalesce(stores365 >= 2, false) AS multi_store,
  coalesce(last_channel = 'mini_mall' AND mini365 >= 2, false) AS mini_mall_loyal,
  coalesce(refunds180 >= 2, false) AS refund_prone,
  coalesce(redeemed180 >= 3, false) AS coupon_lover,
  coalesce(coalesce(issued90, 0) >= 3 AND coalesce(redeemed90, 0) = 0, false) AS coupon_hoarder,
  coalesce(coalesce(pv180, 0) > 0 AND coalesce(pv30, 0) = 0 AND coalesce(n180, 0) = 0, false)
    AS lapsed_mini_browser,
  coalesce(dur30 >= 600000 OR pv7 >= 10, false) AS engaged_browser,
  coalesce(store90 > 0 OR pos90 > 0, false) AS store_visitor,
  coalesce(csat180 <= 2 OR csat_min30 = 1, false) AS csat_detractor,
  coalesce(joined > 0 AND group_msgs30 >= 3, false) AS group_active,
  coalesce(this_month > 0 AND last_month = 0, false) AS this_month_not_last
FROM customers c
LEFT JOIN o USING (customer_id)
LEFT JOIN e USING (customer_id)
"""  # noqa: S608 - only dates computed here go into the text


# ---------------------------------------------------------------- pandas


def pandas_pack(events: Any, orders: Any, customers: Any, today: date, as_of_utc: datetime) -> Any:
    """The 20 rules in plain pandas: boolean masks, ``json.loads``, ``groupby`` per rule."""
    import pandas as pd  # type: ignore[import-untyped]

    ev = events.to_pandas()
    od = orders.to_pandas()
    universe = pd.Index(customers.column("customer_id").to_pandas())
    cut = pd.Timestamp(as_of_utc)
    today_ts = pd.Timestamp(today)
    ev = ev[(ev.occurred_at <= cut)]
    od = od[(od.occurred_at <= cut)]
    ev["dt"] = pd.to_datetime(ev["dt"])
    od["dt"] = pd.to_datetime(od["dt"])

    def since(df: Any, days: int) -> Any:
        return df["dt"] >= today_ts - pd.Timedelta(days=days - 1)

    def per(series: Any, fill: Any = None) -> Any:
        out = series.reindex(universe)
        return out.fillna(fill) if fill is not None else out

    def count(df: Any, mask: Any) -> Any:
        return per(df[mask].groupby("customer_id").size(), 0)

    paid = od[od.kind == "paid"]
    refunded = od[od.kind == "refunded"]
    props: dict[str, Any] = {}
    for etype in ("page_viewed", "checked_in", "survey_answered", "message_received"):
        sub = ev[ev.event_type == etype].copy()
        parsed = sub["properties"].map(json.loads)
        for key in ("duration_ms", "place", "csat", "chat_type"):
            sub[key] = parsed.map(lambda p, k=key: p.get(k))
        props[etype] = sub
    pv, ci, sv, mr = (
        props["page_viewed"],
        props["checked_in"],
        props["survey_answered"],
        props["message_received"],
    )

    n365 = count(paid, since(paid, 365))
    s365 = per(paid[since(paid, 365)].groupby("customer_id")["paid_fen"].sum(), 0)
    s90 = per(paid[since(paid, 90)].groupby("customer_id")["paid_fen"].sum(), 0)
    max365 = per(paid[since(paid, 365)].groupby("customer_id")["paid_fen"].max())
    first_dt = per(paid.groupby("customer_id")["dt"].min())
    last_dt = per(paid.groupby("customer_id")["dt"].max())
    days_first = (today_ts - first_dt).dt.days
    days_last = (today_ts - last_dt).dt.days
    n_all = count(paid, paid["customer_id"].notna())
    n180 = count(paid, since(paid, 180))
    pos365 = count(paid, since(paid, 365) & (paid.channel == "pos"))
    online = paid.channel.isin(["mini_mall", "tmall", "jd", "douyin"])
    online365 = count(paid, since(paid, 365) & online)
    pos_paid = paid[since(paid, 365) & (paid.channel == "pos")]
    stores365 = per(pos_paid.groupby("customer_id")["store_code"].nunique(), 0)
    recent = paid[since(paid, 365) & paid.channel.notna()].sort_values("occurred_at")
    last_channel = per(recent.groupby("customer_id")["channel"].last())
    mini365 = count(paid, since(paid, 365) & (paid.channel == "mini_mall"))
    refunds180 = count(refunded, since(refunded, 180))
    pos90 = count(paid, since(paid, 90) & (paid.channel == "pos"))
    month = today_ts.replace(day=1)
    prev = (month - pd.Timedelta(days=1)).replace(day=1)
    this_month = count(paid, paid.dt >= month)
    last_month = count(paid, (paid.dt >= prev) & (paid.dt < month))
    redeemed = ev[ev.event_type == "coupon_redeemed"]
    issued = ev[ev.event_type == "coupon_issued"]
    redeemed180 = count(redeemed, since(redeemed, 180))
    redeemed90 = count(redeemed, since(redeemed, 90))
    issued90 = count(issued, since(issued, 90))
    pv180, pv30, pv7 = count(pv, since(pv, 180)), count(pv, since(pv, 30)), count(pv, since(pv, 7))
    dur30 = per(pv[since(pv, 30)].groupby("customer_id")["duration_ms"].sum(), 0)
    store90 = count(ci, since(ci, 90) & (ci.place == "store"))
    csat180 = per(sv[since(sv, 180)].groupby("customer_id")["csat"].mean())
    csat_min30 = per(sv[since(sv, 30)].groupby("customer_id")["csat"].min())
    joined = count(ev, ev.event_type == "group_joined")
    group_msgs30 = count(mr, since(mr, 30) & (mr.chat_type == "group"))

    aov = s365 / n365.where(n365 != 0)
    out = pd.DataFrame(
        {
            "repeat_buyer": n365 >= 2,
            "high_spend_90d": s90 >= 100000,
            "vip_spender": (s365 >= 300000) & (n365 >= 4),
            "big_basket": (max365 >= 50000).fillna(False),
            "high_aov": (aov >= 30000).fillna(False),
            "new_buyer": (days_first <= 30).fillna(False),
            "at_risk": days_last.between(91, 180).fillna(False),
            "lapsed_buyer": (n_all >= 2) & (n180 == 0),
            "omnichannel": (pos365 > 0) & (online365 > 0),
            "multi_store": stores365 >= 2,
            "mini_mall_loyal": (last_channel == "mini_mall").fillna(False) & (mini365 >= 2),
            "refund_prone": refunds180 >= 2,
            "coupon_lover": redeemed180 >= 3,
            "coupon_hoarder": (issued90 >= 3) & (redeemed90 == 0),
            "lapsed_mini_browser": (pv180 > 0) & (pv30 == 0) & (n180 == 0),
            "engaged_browser": (dur30 >= 600000) | (pv7 >= 10),
            "store_visitor": (store90 > 0) | (pos90 > 0),
            "csat_detractor": ((csat180 <= 2).fillna(False)) | ((csat_min30 == 1).fillna(False)),
            "group_active": (joined > 0) & (group_msgs30 >= 3),
            "this_month_not_last": (this_month > 0) & (last_month == 0),
        },
        index=universe,
    )
    return out.astype(bool)


# ---------------------------------------------------------------- value models


def value_models(orders: Any, today: date) -> dict[str, float]:
    """RFM, lifecycle stages and BG/NBD + Gamma-Gamma from the paid orders; phase seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from siyu.tags import value
    from siyu.tags.value_rfm import rfm_from_days
    from siyu.tags.value_summary import day_number, purchase_days, transactions

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    paid = orders.filter(pc.equal(orders["kind"], "paid"))
    tx = pa.table(
        {
            "customer_id": paid["customer_id"],
            "ts": paid["occurred_at"],
            "amount_fen": paid["paid_fen"],
        }
    )
    data = transactions(tx["customer_id"], tx["ts"], tx["amount_fen"], TZ)
    out["prepare"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rfm = rfm_from_days(data, today, 365)
    out["rfm"] = time.perf_counter() - t0
    out["rfm_customers"] = float(len(rfm))

    t0 = time.perf_counter()
    end = day_number(today)
    codes, days, _ = purchase_days(data, end - 3650, end)
    n = data.customers
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, codes, days)
    np.maximum.at(last, codes, days)
    prev = np.full(n, np.iinfo(np.int64).min)
    same = np.flatnonzero(codes[1:] == codes[:-1])
    np.maximum.at(prev, codes[same], days[same])  # second-last purchase day per customer
    since_last = end - last
    gap = last - prev
    stage = np.select(
        [
            end - first < 30,
            (since_last < 90) & (prev > np.iinfo(np.int64).min) & (gap >= 180),
            since_last < 90,
            since_last < 180,
            since_last < 365,
        ],
        [0, 1, 2, 3, 4],
        5,
    )
    out["lifecycle"] = time.perf_counter() - t0
    out["lifecycle_stages"] = float(len(np.unique(stage)))

    t0 = time.perf_counter()
    summary = value.summarise_days(data, today)
    model = value.fit(summary, penalizer=0.001)
    pred = value.predict(summary, model)
    out["value_models"] = time.perf_counter() - t0
    out["value_customers"] = float(len(pred.value_fen))
    return out


# ---------------------------------------------------------------- the run


def _members(table: Any) -> dict[str, set[str]]:
    from siyu.tags.lang import members

    return {k: set(v) for k, v in members(table).items()}


def run(
    customers: int = 1_000_000,
    events: int = 20_000_000,
    seed: int = 7,
    *,
    threads: int = 2,
    pandas_max_events: int = 2_000_000,
    repeat: int = 2,
) -> dict[str, Any]:
    """Generate, run the three versions, check they agree; a JSON-ready dict."""
    import ibis
    import pyarrow as pa

    from siyu.tags.lang import STANDARD_CATALOGUE, compile_rules, facts_from_arrow, pack_rules

    result: dict[str, Any] = {
        "bench": "tags",
        "customers": customers,
        "events": events,
        "seed": seed,
        "threads": threads,
        "rules": len(pack_rules()),
    }
    t0 = time.perf_counter()
    data = generate(customers, events, seed)
    result["generate_seconds"] = round(time.perf_counter() - t0, 2)
    result["orders"] = data["orders"].num_rows
    cutoff = as_of()

    con = ibis.duckdb.connect(threads=threads)
    facts = facts_from_arrow(data["events"], data["orders"], data["customers"])

    def ours() -> Any:
        expr = compile_rules(pack_rules(), STANDARD_CATALOGUE, facts, cutoff, TZ)
        return con.to_pyarrow(expr)

    raw = con.con
    for name in ("events", "orders", "customers"):
        raw.register(name, data[name])
    sql = hand_sql(TODAY, cutoff)

    def hand() -> Any:
        return raw.sql(sql).to_arrow_table()

    timings: dict[str, list[float]] = {"ours": [], "sql": []}
    got: dict[str, Any] = {}
    for _ in range(max(1, repeat)):  # alternate, keep the best of each
        for name, fn in (("ours", ours), ("sql", hand)):
            gc.collect()
            t = time.perf_counter()
            got[name] = fn()
            timings[name].append(time.perf_counter() - t)
    rules_s = min(timings["ours"])
    sql_s = min(timings["sql"])
    ours_members = _members(got["ours"])
    sql_members = _members(got["sql"])
    result["rules_seconds"] = round(rules_s, 3)
    result["hand_sql_seconds"] = round(sql_s, 3)
    result["ratio_vs_sql"] = round(rules_s / sql_s, 3)
    result["agree_sql"] = ours_members == sql_members
    result["members"] = {k: len(v) for k, v in ours_members.items()}

    # value models, RFM, lifecycle
    phases = value_models(data["orders"], TODAY)
    result["value_phases"] = {k: round(v, 3) for k, v in phases.items()}
    pack_s = (
        rules_s + phases["prepare"] + phases["rfm"] + phases["lifecycle"] + phases["value_models"]
    )
    result["seconds"] = round(pack_s, 2)
    result["target_seconds"] = TARGET_SECONDS

    # pandas on everything or on a sample of customers (with all their facts)
    import pyarrow.compute as pc

    sampled = events > pandas_max_events
    if sampled:
        share = pandas_max_events / events
        k = max(1, int(customers * share))
        rng = np.random.default_rng(seed + 1)
        pick = pa.array(np.sort(rng.choice(customers, size=k, replace=False)))
        sample_ids = data["customers"]["customer_id"].take(pick)
        ev = data["events"].filter(pc.is_in(data["events"]["customer_id"], sample_ids))
        od = data["orders"].filter(pc.is_in(data["orders"]["customer_id"], sample_ids))
        cu = pa.table({"customer_id": sample_ids})
    else:
        ev, od, cu, k = data["events"], data["orders"], data["customers"], customers
    gc.collect()
    t = time.perf_counter()
    frame = pandas_pack(ev, od, cu, TODAY, cutoff)
    pandas_s = time.perf_counter() - t
    keep = set(cu["customer_id"].to_pylist())
    pandas_members = {c: set(frame.index[frame[c]]) for c in frame.columns}
    result["agree_pandas"] = all(
        pandas_members[key] == (members & keep) for key, members in ours_members.items()
    )
    result["pandas_seconds"] = round(pandas_s, 3)
    result["pandas_customers"] = k
    result["pandas_events"] = ev.num_rows
    result["pandas_sampled"] = sampled
    ours_rate = rules_s / customers
    pandas_rate = pandas_s / k
    result["ratio_vs_pandas"] = round(ours_rate / pandas_rate, 4)
    result["ratio_basis"] = "seconds per customer" if sampled else "seconds"
    result["targets"] = {
        "seconds": TARGET_SECONDS,
        "ratio_vs_sql": TARGET_VS_SQL,
        "ratio_vs_pandas": TARGET_VS_PANDAS,
    }
    result["met"] = bool(
        pack_s <= TARGET_SECONDS
        and result["ratio_vs_sql"] <= TARGET_VS_SQL
        and result["ratio_vs_pandas"] <= TARGET_VS_PANDAS
        and result["agree_sql"]
        and result["agree_pandas"]
    )
    con.disconnect()
    return result


if __name__ == "__main__":  # pragma: no cover - the CLI is `siyu bench tags`
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args)))
