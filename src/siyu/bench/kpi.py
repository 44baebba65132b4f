"""``siyu bench kpi``: the brand overview for a month and a store-level drill-down on a
large lake, from a cold start, beside a naive pandas reference.

- **Data** (built once, then reused from ``<data_dir>/bench/kpi-<customers>-<seed>``): one
  brand of the demo's coffee shape (``siyu.demo.generate``, handed in by the CLI: the bench
  layer does not import the demo) over a year with ``activity`` engagement, written to a Delta
  lake as ingest would (identity keys only: every customer has a WeCom key and a phone key),
  plus a snapshot of the customer dimension and identity map (``metrics.scope.save``).
- **Cold**: every timed run opens a new DuckDB connection, reads the dimension snapshot from
  Parquet and opens the Delta tables again — nothing is kept in the process between runs.
  The operating system's page cache is not dropped (that needs root); the machine is shared,
  so figures vary from run to run. The facts rollup (``metrics.rollup``) is maintained
  data, like the lake: it is brought up to date before timing (``rollup_refresh_seconds``);
  each timed run still checks it against the Delta log and reads it from disk.
- **Ours**: ``metrics.kpis.compute`` for the last full month of the data, every KPI
  (overview, one row), and for one store: the KPI table by guide plus the first page of
  customers behind its diverted customers (``customer_ids_behind``).
- **Reference**: the same KPIs a careful analyst would compute in pandas (facts read with
  pyarrow, identity map and friendship joined with ``merge``, JSON parsed with
  ``json.loads``), for six KPIs that touch every source (diverted, GMV, interaction rate,
  churn, CSAT, repurchase); the values must agree with ours (``agree``).

The last line printed is JSON: medians (seconds) and ``ratio_*`` = ours ÷ reference.
Targets: overview ≤ 2 s, store drill-down ≤ 1 s on 2 cores.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

BRAND = "bench-kpi-brand"
TZ = "Asia/Shanghai"
END = date(2026, 11, 20)
TARGET_OVERVIEW = 2.0
TARGET_DRILL = 1.0
CHECKED = (
    "diverted_customers",
    "gmv",
    "interaction_rate",
    "churn_rate",
    "satisfaction",
    "repurchase_rate",
)


@dataclass
class Kit:
    """The demo's generator and the brand shape to draw (from ``siyu.demo.generate``)."""

    generate_brand: Callable[..., Any]
    shape: Any


# ---------------------------------------------------------------- the lake


def _keys(prefix: str, idx: np.ndarray) -> Any:
    import pyarrow as pa

    mixed = (idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0xA5A5A5A5)
    return pa.array([f"{prefix}:{v:016x}" for v in mixed.tolist()], pa.string())


def _ts(start: datetime, t_s: np.ndarray) -> Any:
    import pyarrow as pa

    base = int(start.timestamp() * 1_000_000)
    return pa.array(base + (t_s * 1_000_000).astype(np.int64), pa.timestamp("us", tz="UTC"))


def _local_days(ts: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(ts, pa.int64()).to_numpy()
    days = (micros // 1_000_000 + 8 * 3600) // 86400  # Asia/Shanghai has no DST
    return pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32())


def _join(*parts: Any) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, "")


def build(kit: Kit, folder: Path, customers: int, seed: int, activity: float) -> dict[str, float]:
    """Generate one brand and write its lake and dimension snapshot under ``folder``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from siyu.analytics import lake
    from siyu.metrics import scope

    t0 = time.perf_counter()
    data = kit.generate_brand(kit.shape, customers, 365, seed, END, activity)
    c, start = data.customers, data.start
    n = len(c["idx"])
    wx = _keys("external_userid", c["idx"])
    phone = _keys("phone", c["idx"] + 10**9)
    owner = pa.array(c["owner"].tolist(), pa.string())
    counts: dict[str, float] = {}

    def append_events(etype: str, cust: np.ndarray, t_s: np.ndarray, keys: Any, props: Any) -> None:
        m = len(cust)
        if not m:
            return
        ts = _ts(start, t_s)
        ids = pa.array(np.arange(m, dtype=np.int64))
        table = pa.table(
            {
                "event_id": _join(f"{etype}-", pc.cast(ids, pa.string())),
                "event_type": pa.array([etype], pa.string()).take(pa.array(np.zeros(m, np.int32))),
                "schema_version": pa.array(np.ones(m, np.int16)),
                "occurred_at": ts,
                "received_at": ts,
                "source": pa.array(["bench"]).take(pa.array(np.zeros(m, np.int32))),
                "identity_key": keys.take(pa.array(cust)),
                "properties": props,
                "dt": _local_days(ts),
            }
        )
        lake.append("events", BRAND, table)
        counts[etype] = m

    def const(text: str, m: int) -> Any:
        return pa.array([text]).take(pa.array(np.zeros(m, np.int32)))

    # friendship
    has_wx = np.flatnonzero(c["external_userid"] != "")
    state = pa.array(c["state"].tolist(), pa.string())
    sel = pa.array(has_wx)
    append_events(
        "wecom_contact_added", has_wx, c["acq_s"][has_wx], wx,
        _join('{"staff_userid":"', owner.take(sel), '","external_userid":"x","state":"',
              state.take(sel), '"}'),
    )  # fmt: skip
    for by_staff, etype in ((False, "wecom_contact_deleted_by_customer"),
                            (True, "wecom_contact_deleted_by_staff")):  # fmt: skip
        d = np.flatnonzero(c["deleted"] & (c["deleted_by_staff"] == by_staff))
        props = _join('{"staff_userid":"', owner.take(pa.array(d)), '","external_userid":"x"}')
        append_events(etype, d, c["delete_s"][d], wx, props)
    ev = data.events
    for etype in ("message_received", "message_sent"):
        e = ev[etype]
        props = _join('{"staff_userid":"', owner.take(pa.array(e["cust"])), '","msg_type":"text"}')
        append_events(etype, e["cust"], e["t_s"], wx, props)
    for etype in ("group_joined", "group_left"):
        e = ev[etype]
        chat = pa.array(e["chat_id"].tolist(), pa.string())
        append_events(etype, e["cust"], e["t_s"], wx, _join('{"chat_id":"', chat, '"}'))
    e = ev["survey_answered"]
    score = pc.cast(pa.array(e["csat"]), pa.string())
    props = _join('{"survey_id":"csat","csat":', score, "}")
    append_events("survey_answered", e["cust"], e["t_s"], phone, props)
    for etype in ("page_viewed", "checked_in", "coupon_issued", "coupon_redeemed", "referral"):
        e = ev[etype]
        append_events(etype, e["cust"], e["t_s"], phone, const("{}", len(e["cust"])))
    # orders: the events and the orders table
    o = data.orders
    m = len(o["cust"])
    paid_ts = _ts(start, o["t_s"])
    order_id = pa.array(o["order_id"].tolist(), pa.string())
    channel = pa.array(o["channel"].tolist(), pa.string())
    append_events("order_paid", o["cust"], o["t_s"], phone, const("{}", m))
    horizon = (END - date(1970, 1, 1)).days * 86400 - start.timestamp()
    refunded = np.flatnonzero(o["refunded"] & (o["refund_s"] < horizon))
    orders = pa.table(
        {
            "order_key": order_id,
            "event_id": order_id,
            "order_id": order_id,
            "kind": const("paid", m),
            "occurred_at": paid_ts,
            "channel": channel,
            "store_code": pa.array(o["store"].tolist(), pa.string()),
            "identity_key": phone.take(pa.array(o["cust"])),
            "total_fen": pa.array(o["total"].astype(np.int64)),
            "discount_fen": pa.array(o["discount"].astype(np.int64)),
            "paid_fen": pa.array(o["paid"].astype(np.int64)),
            "item_count": pa.array(np.ones(m, np.int32)),
            "source": const("bench", m),
            "dt": _local_days(paid_ts),
        }
    )
    pick = pa.array(refunded)
    refund_ts = _ts(start, o["refund_s"][refunded])
    refunds = pa.table(
        {
            "order_key": _join(order_id.take(pick), ":r"),
            "event_id": _join(order_id.take(pick), ":r"),
            "order_id": order_id.take(pick),
            "kind": const("refunded", len(refunded)),
            "occurred_at": refund_ts,
            "channel": channel.take(pick),
            "identity_key": phone.take(pa.array(o["cust"][refunded])),
            "refund_fen": pa.array(o["paid"][refunded].astype(np.int64)),
            "source": const("bench", len(refunded)),
            "dt": _local_days(refund_ts),
        }
    )
    lake.append("orders", BRAND, orders)
    lake.append("orders", BRAND, refunds)
    counts["orders"] = m
    counts["refunds"] = len(refunded)
    # the dimension: home store, its region (the city part of the code), owner guide
    ids = pa.array([f"c{i:09d}" for i in range(n)], pa.string())
    store = pa.array(c["store"].tolist(), pa.string())
    region = pc.utf8_slice_codeunits(store, 3, 5)
    customers_t = pa.table(
        {
            "customer_id": ids,
            "store": store,
            "region": region,
            "guide": owner,
            "first_seen": _ts(start, c["acq_s"]),
        },
        schema=scope.customer_schema(),
    )
    idmap = pa.table(
        {
            "identity_key": pa.concat_arrays([wx, phone]),
            "customer_id": pa.concat_arrays([ids, ids]),
        }
    )
    scope.save(scope.Dimensions(BRAND, TZ, customers_t, idmap), folder / "dims")
    # as the nightly maintenance would: one file per day partition
    lake.compact(BRAND, retention_hours=0)
    counts["events"] = sum(v for k, v in counts.items() if k not in ("orders", "refunds"))
    counts["build_seconds"] = round(time.perf_counter() - t0, 1)
    (folder / "built.json").write_text(json.dumps(counts))
    return counts


# ---------------------------------------------------------------- the reference


def pandas_kpis(
    dims: Any, start: date, end: date, as_of: datetime, silent_days: int = 60
) -> dict[str, dict[str, float | int | None]]:
    """Six KPIs the straightforward pandas way, per group (``group`` column of ``dims``:
    all customers are one group when it is absent). Same definitions as docs/metrics.md."""
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa
    import pyarrow.dataset as pds

    from siyu.analytics import lake

    zone_s = datetime.combine(start, datetime.min.time()).replace(tzinfo=UTC) - timedelta(hours=8)
    zone_e = datetime.combine(end + timedelta(days=1), datetime.min.time()).replace(
        tzinfo=UTC
    ) - timedelta(hours=8)
    s, e = pd.Timestamp(zone_s), pd.Timestamp(zone_e)
    silent_from = e - pd.Timedelta(days=silent_days)
    idmap = dims.idmap.to_pandas()
    cust = dims.customers.to_pandas().set_index("customer_id")
    group = cust["group"] if "group" in cust.columns else pd.Series("all", index=cust.index)
    types = [
        "wecom_contact_added",
        "wecom_contact_deleted_by_customer",
        "wecom_contact_deleted_by_staff",
        "message_received",
        "order_paid",
        "page_viewed",
        "checked_in",
        "survey_answered",
        "content_clicked",
        "coupon_redeemed",
        "group_joined",
    ]
    evds = lake.dataset("events", dims.brand_id)
    flt = pds.field("event_type").isin(types) & (pds.field("dt") <= pa.scalar(end, pa.date32()))
    evt = evds.to_table(
        columns=["identity_key", "event_type", "occurred_at", "properties"], filter=flt
    ).to_pandas()
    evt = evt.merge(idmap, on="identity_key")
    evt = evt[evt.customer_id.isin(cust.index)]
    evt = evt[evt.occurred_at < pd.Timestamp(as_of)]
    adds = evt[evt.event_type == "wecom_contact_added"].groupby("customer_id").occurred_at.min()
    dels = evt[evt.event_type.str.startswith("wecom_contact_deleted")][
        ["customer_id", "occurred_at"]
    ]
    dels = dels.merge(adds.rename("added_at"), left_on="customer_id", right_index=True)
    deleted = dels[dels.occurred_at >= dels.added_at].groupby("customer_id").occurred_at.min()
    fr = pd.DataFrame({"added_at": adds}).join(deleted.rename("deleted_at"))
    fr = fr.reindex(cust.index)
    in_period = evt[(evt.occurred_at >= s) & (evt.occurred_at < e)]
    diverted = (fr.added_at >= s) & (fr.added_at < e)
    friend_period = (fr.added_at < e) & (fr.deleted_at.isna() | (fr.deleted_at >= s))
    friend_start = (fr.added_at < s) & (fr.deleted_at.isna() | (fr.deleted_at >= s))
    wrote = set(in_period[in_period.event_type == "message_received"].customer_id)
    interacted = friend_period & cust.index.isin(list(wrote))
    acts = evt[(evt.occurred_at >= silent_from) & (evt.occurred_at < e)]
    acts = acts[~acts.event_type.str.startswith("wecom_contact")]
    active = cust.index.isin(list(set(acts.customer_id)))
    churned = friend_start & ((fr.deleted_at < e) | ((fr.added_at <= silent_from) & ~active))
    sv = in_period[in_period.event_type == "survey_answered"].copy()
    sv["csat"] = sv.properties.map(lambda p: json.loads(p).get("csat"))
    csat_sum = sv.groupby("customer_id").csat.sum().reindex(cust.index, fill_value=0)
    csat_n = sv.groupby("customer_id").csat.count().reindex(cust.index, fill_value=0)
    od = (
        lake.dataset("orders", dims.brand_id)
        .to_table(
            columns=["identity_key", "kind", "occurred_at", "paid_fen"],
            filter=(pds.field("dt") >= pa.scalar(start, pa.date32()))
            & (pds.field("dt") <= pa.scalar(end, pa.date32())),
        )
        .to_pandas()
    )
    od = od[od.kind == "paid"].merge(idmap, on="identity_key")
    od = od[od.customer_id.isin(cust.index)].join(fr, on="customer_id")
    od = od[
        (od.occurred_at >= s) & (od.occurred_at < e) & (od.added_at <= od.occurred_at)
        & (od.deleted_at.isna() | (od.deleted_at > od.occurred_at))
    ]  # fmt: skip
    gmv = od.groupby("customer_id").paid_fen.sum().reindex(cust.index, fill_value=0)
    n_orders = od.groupby("customer_id").size().reindex(cust.index, fill_value=0)
    frame = pd.DataFrame(
        {
            "g": group,
            "diverted": diverted.astype(int),
            "gmv": gmv,
            "interacted": interacted.astype(int),
            "friend_period": friend_period.astype(int),
            "churned": churned.astype(int),
            "friend_start": friend_start.astype(int),
            "csat_sum": csat_sum,
            "csat_n": csat_n,
            "buyer": (n_orders >= 1).astype(int),
            "repurchaser": (n_orders >= 2).astype(int),
        }
    )
    sums = frame.groupby("g").sum()
    out: dict[str, dict[str, float | int | None]] = {}

    def ratio(a: float, b: float) -> float | None:
        return None if b == 0 else round(a / b, 6)

    for g, r in sums.iterrows():
        out[str(g)] = {
            "diverted_customers": int(r.diverted),
            "gmv": int(r.gmv),
            "interaction_rate": ratio(r.interacted, r.friend_period),
            "churn_rate": ratio(r.churned, r.friend_start),
            "satisfaction": ratio(r.csat_sum, r.csat_n),
            "repurchase_rate": ratio(r.repurchaser, r.buyer),
        }
    return out


# ---------------------------------------------------------------- the run


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, got = [], None
    for _ in range(max(1, repeat)):
        gc.collect()
        t = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), got


def _agree(ours: Any, theirs: dict[str, float | int | None]) -> bool:
    for key in CHECKED:
        a, b = ours.values[key].value, theirs[key]
        if a is None or b is None:
            if a is not b:
                return False
        elif abs(float(a) - float(b)) > 1e-6 * max(1.0, abs(float(b))):
            return False
    return True


def run(
    kit: Kit,
    customers: int = 1_000_000,
    seed: int = 7,
    *,
    activity: float = 2.0,
    threads: int = 2,
    repeat: int = 3,
    bench_dir: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build or reuse the lake, then time ours and the reference; a JSON-ready dict."""
    import pyarrow.compute as pc

    from siyu.core.settings import get_settings, reset_settings
    from siyu.metrics import kpis, rollup, scope

    say = progress or (lambda _: None)
    root = bench_dir or (get_settings().resolved_data_dir / "bench")
    folder = root / f"kpi-{customers}-{seed}-{activity:g}"
    saved = os.environ.get("SIYU_LAKE_URI")
    os.environ["SIYU_LAKE_URI"] = str(folder / "lake")
    reset_settings()
    try:
        if rebuild and folder.exists():
            import shutil

            shutil.rmtree(folder)
        if not (folder / "built.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            say(f"building a {customers}-customer lake in {folder} …")
            built = build(kit, folder, customers, seed, activity)
            reused = False
        else:
            built = json.loads((folder / "built.json").read_text())
            reused = True
        say(f"lake ready ({built['events']} events, {built['orders']} orders)")
        # the facts rollup is maintained data (built or extended here, not timed): the
        # timed runs only check it is up to date with the Delta log
        t_rollup = time.perf_counter()
        rollup.refresh(BRAND)
        rollup_s = time.perf_counter() - t_rollup
        say(f"facts rollup up to date ({rollup_s:.1f} s)")
        # the last full month of the data
        end = END.replace(day=1) - timedelta(days=1)
        start = end.replace(day=1)
        as_of = datetime.combine(END, datetime.min.time(), UTC)
        dims_dir = folder / "dims"

        def overview() -> Any:
            dims = scope.read(dims_dir, BRAND, TZ)
            return kpis.compute(dims, start=start, end=end, as_of=as_of, threads=threads)

        first = scope.read(dims_dir, BRAND, TZ)
        stores = pc.value_counts(first.customers.column("store")).to_pylist()
        store = max(stores, key=lambda v: v["counts"])["values"]

        def drill() -> Any:
            dims = scope.restrict(scope.read(dims_dir, BRAND, TZ), "store", store)
            table = kpis.compute(
                dims, start=start, end=end, group_by="guide", as_of=as_of, threads=threads
            )
            ids, total = kpis.customer_ids_behind(
                dims, "diverted_customers", start=start, end=end, as_of=as_of, threads=threads
            )
            return table, ids, total

        def ref_overview() -> Any:
            return pandas_kpis(scope.read(dims_dir, BRAND, TZ), start, end, as_of)

        def ref_drill() -> Any:
            dims = scope.restrict(scope.read(dims_dir, BRAND, TZ), "store", store)
            dims.customers = dims.customers.append_column("group", dims.customers["guide"])
            return pandas_kpis(dims, start, end, as_of)

        say("timing ours …")
        ours_s, ours = _median(overview, repeat)
        drill_s, (drill_table, drill_ids, drill_total) = _median(drill, repeat)
        say("timing the pandas reference …")
        ref_s, ref = _median(ref_overview, max(1, repeat - 1))
        ref_drill_s, ref_d = _median(ref_drill, max(1, repeat - 1))
        agree = _agree(ours.row("all"), ref["all"]) and all(
            _agree(row, ref_d[row.group]) for row in drill_table.rows
        )
        values = {k: v.value for k, v in ours.row("all").values.items()}
        return {
            "bench": "kpi",
            "customers": customers,
            "seed": seed,
            "activity": activity,
            "threads": threads,
            "repeat": repeat,
            "reused_lake": reused,
            "lake": built,
            "rollup_refresh_seconds": round(rollup_s, 3),
            "period": [str(start), str(end)],
            "store": store,
            "store_customers": sum(r.customers for r in drill_table.rows),
            "drill_customers_total": drill_total,
            "drill_page": len(drill_ids),
            "overview_seconds": round(ours_s, 3),
            "drill_seconds": round(drill_s, 3),
            "reference_overview_seconds": round(ref_s, 3),
            "reference_drill_seconds": round(ref_drill_s, 3),
            "ratio_overview": round(ours_s / ref_s, 3),
            "ratio_drill": round(drill_s / ref_drill_s, 3),
            "agree": agree,
            "overview": values,
            "targets": {"overview_seconds": TARGET_OVERVIEW, "drill_seconds": TARGET_DRILL},
            "met": bool(ours_s <= TARGET_OVERVIEW and drill_s <= TARGET_DRILL and agree),
            "note": "cold = new DuckDB connection, dimension and Delta log re-read each run; "
            "OS page cache not dropped; shared machine",
        }
    finally:
        if saved is None:
            os.environ.pop("SIYU_LAKE_URI", None)
        else:
            os.environ["SIYU_LAKE_URI"] = saved
        reset_settings()
