"""Evaluators of the built-in computed tags: RFM scores and cells, lifecycle stage (value
tags), the value-model numbers (model tags) and owner guide / home store (org tags).

Everything a run derives from the whole brand (fitted value models, RFM cut points derived
from the data) is derived once per brand-local day, by the day's first full run, and stored
in the group's ``settings``; later runs of that day (full or incremental) reuse it, so any
two runs as of the same day give the same tags.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from siyu.core.errors import Invalid
from siyu.tags.builtin import DEFAULT_SETTINGS
from siyu.tags.compute import Context, Members
from siyu.tags.models import Tag, TagGroup
from siyu.tags.value_summary import Days, day_number, purchase_days, transactions

if TYPE_CHECKING:
    from numpy.typing import NDArray


def settings(ctx: Context, group_key: str, section: str) -> dict[str, Any]:
    """A group's brand-set parameters over the defaults."""
    group = _group(ctx, group_key)
    own = (group.settings or {}).get("params", {}) if group is not None else {}
    return {**DEFAULT_SETTINGS[section], **own}


def _group(ctx: Context, key: str) -> TagGroup | None:
    for g in ctx.groups.values():
        if g.key == key:
            return g
    return None


def _derived(ctx: Context, key: str) -> dict[str, Any]:
    group = _group(ctx, key)
    return dict((group.settings or {}).get("derived", {})) if group is not None else {}


def _store_derived(ctx: Context, key: str, derived: dict[str, Any]) -> None:
    group = _group(ctx, key)
    if group is not None:
        group.settings = {**(group.settings or {}), "derived": derived}


def _days(ctx: Context) -> Days:
    if "days" not in ctx.cache:
        p = ctx.purchases()
        ctx.cache["days"] = transactions(
            p.column("customer_id"), p.column("ts"), p.column("amount_fen"), ctx.brand.timezone
        )
    days: Days = ctx.cache["days"]
    return days


def _by_key(tags: list[Tag]) -> dict[str, Tag]:
    return {t.key: t for t in tags}


def _collect(out: dict[str, list[str]], key: str, cid: str) -> None:
    out[key].append(cid)


# ---------------------------------------------------------------- value tags


def evaluate_value(ctx: Context, tags: list[Tag]) -> dict[str, Members | Exception]:
    measures = {t.spec.get("measure") for t in tags}
    members: dict[str, list[str]] = defaultdict(list)
    if measures & {"rfm_r", "rfm_f", "rfm_m", "rfm_segment"}:
        _rfm(ctx, members)
    if "lifecycle" in measures:
        _lifecycle(ctx, members)
    return {t.id: Members.of(sorted(members.get(t.key, [])), _value(t)) for t in tags}


def _value(tag: Tag) -> str:
    """The value a value tag stands for (``rfm_r_5`` → ``5``, ``lifecycle_new`` → ``new``)."""
    measure = str(tag.spec.get("measure", ""))
    prefix = {"rfm_segment": "rfm_"}.get(measure, measure + "_")
    return tag.key.removeprefix(prefix)


def derive_cuts(values: NDArray[Any]) -> list[int]:
    """Four strictly increasing cut points at the data's quintile boundaries (integers)."""
    if values.size == 0:
        return [1, 2, 3, 4]
    q = np.quantile(values.astype(np.float64), [0.2, 0.4, 0.6, 0.8])
    cuts = [int(np.ceil(v)) for v in q]
    for i in range(1, 4):
        cuts[i] = max(cuts[i], cuts[i - 1] + 1)
    cuts[0] = max(cuts[0], 1)
    for i in range(1, 4):
        cuts[i] = max(cuts[i], cuts[i - 1] + 1)
    return cuts


def _rfm(ctx: Context, members: dict[str, list[str]]) -> None:
    from siyu.tags.value_rfm import SEGMENTS, RfmCuts, rfm_from_days

    params = settings(ctx, "rfm_segment", "rfm")
    derived = _derived(ctx, "rfm_segment")
    derive = ctx.mode == "full" and derived.get("as_of") != ctx.today.isoformat()
    data = _days(ctx)
    window = int(params["window_days"])
    cuts: dict[str, list[int]] = {}
    for name in ("recency", "frequency", "monetary"):
        given = params.get(name)
        if given is not None:
            cuts[name] = [int(v) for v in given]
        elif derive:
            probe = rfm_from_days(data, ctx.today, window, None, int(params["high_from"]))
            values = {
                "recency": probe.recency_days,
                "frequency": probe.frequency,
                "monetary": probe.monetary_fen,
            }[name]
            cuts[name] = derive_cuts(np.asarray(values))
            derived[name] = cuts[name]
        elif name in derived:
            cuts[name] = [int(v) for v in derived[name]]
        else:
            raise Invalid("tags.needs_full_run", measure=f"rfm {name}")
    if derive:
        derived["as_of"] = ctx.today.isoformat()
        _store_derived(ctx, "rfm_segment", derived)
    result = rfm_from_days(
        data,
        ctx.today,
        window,
        RfmCuts(
            recency=_four(cuts["recency"]),
            frequency=_four(cuts["frequency"]),
            monetary=_four(cuts["monetary"]),
        ),
        int(params["high_from"]),
    )
    ids = result.customer_id.to_pylist()
    for cid, r, f, m, seg in zip(
        ids,
        result.r_score.tolist(),
        result.f_score.tolist(),
        result.m_score.tolist(),
        result.segment.tolist(),
        strict=True,
    ):
        _collect(members, f"rfm_r_{r}", cid)
        _collect(members, f"rfm_f_{f}", cid)
        _collect(members, f"rfm_m_{m}", cid)
        _collect(members, f"rfm_{SEGMENTS[seg].code}", cid)


def _four(values: list[int]) -> tuple[int, int, int, int]:
    if len(values) != 4:
        raise Invalid("tags.bad_settings", reason="cut points need four numbers")
    return (values[0], values[1], values[2], values[3])


def lifecycle_stage(
    first_buy: int | None,
    last_buy: int | None,
    previous_buy: int | None,
    first_seen: int | None,
    today: int,
    p: dict[str, Any],
) -> str:
    """The stage of one customer from day numbers (rules in ``builtin.LIFECYCLE``)."""
    if last_buy is None:
        if first_seen is not None and today - first_seen < int(p["new_days"]):
            return "new"
        return "prospect"
    since_last = today - last_buy
    if first_buy is not None and today - first_buy < int(p["new_days"]):
        return "new"
    if since_last < int(p["active_days"]):
        gap = None if previous_buy is None else last_buy - previous_buy
        if gap is not None and gap >= int(p["won_back_gap_days"]):
            return "won_back"
        return "active"
    if since_last < int(p["silent_days"]):
        return "silent"
    if since_last < int(p["churn_days"]):
        return "dormant"
    return "churned"


def _lifecycle(ctx: Context, members: dict[str, list[str]]) -> None:
    from siyu.customers import queries as customer_queries

    p = settings(ctx, "lifecycle", "lifecycle")
    today = day_number(ctx.today)
    data = _days(ctx)
    first, last, previous = _purchase_marks(data, today)
    ids = data.ids.to_pylist()
    marks = {
        cid: (int(first[i]), int(last[i]), None if previous[i] < 0 else int(previous[i]))
        for i, cid in enumerate(ids)
        if last[i] >= 0
    }
    seen = customer_queries.first_seen_days(ctx.db, ctx.brand.id, ctx.subset, ctx.brand.timezone)
    for cid, first_seen in seen.items():
        f, la, pr = marks.get(cid, (None, None, None))
        stage = lifecycle_stage(f, la, pr, first_seen, today, p)
        _collect(members, f"lifecycle_{stage}", cid)


def _purchase_marks(
    data: Days, today: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Per customer code: first and last purchase day up to ``today`` and the purchase day
    before the last (-1 when none)."""
    n = data.customers
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    previous = np.full(n, -1, dtype=np.int64)
    if data.days.size == 0:
        return first, last, previous
    lo = int(data.days.min())
    codes, days, _ = purchase_days(data, lo, today)
    if codes.size == 0:
        return first, last, previous
    # pairs are sorted by (code, day): the first of a run is the first day, the last the last
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size] - 1
    first[codes[starts]] = days[starts]
    last[codes[ends]] = days[ends]
    has_prev = ends > starts
    previous[codes[ends[has_prev]]] = days[ends[has_prev] - 1]
    return first, last, previous


# ---------------------------------------------------------------- model tags


def evaluate_model(ctx: Context, tags: list[Tag]) -> dict[str, Members | Exception]:
    from siyu.tags import value

    params = settings(ctx, "value_model", "value")
    data = _days(ctx)
    end = ctx.today
    summary = value.summarise_days(data, end, unit=str(params["unit"]))
    derived = _derived(ctx, "value_model")
    if ctx.mode == "full" and derived.get("as_of") != end.isoformat():
        try:
            model = value.fit(summary, float(params["penalizer"]))
        except value.NotEnoughData as exc:
            raise Invalid("value.not_enough_data", reason=str(exc)) from exc
        derived = {"fit": model, "as_of": end.isoformat()}
        _store_derived(ctx, "value_model", derived)
    elif "fit" not in derived:
        raise Invalid("tags.needs_full_run", measure="value model")
    pred = value.predict(
        summary,
        derived["fit"],
        horizon_days=int(params["horizon_days"]),
        discount_rate=float(params["discount_rate"]),
    )
    ids = pred.customer_id.to_pylist()
    numbers = {
        "p_alive": pred.p_alive,
        "purchases": pred.purchases,
        "spend_fen": pred.spend_fen,
        "value_fen": pred.value_fen.astype(np.float64),
    }
    out: dict[str, Members | Exception] = {}
    for t in tags:
        measure = str(t.spec.get("measure"))
        if measure not in numbers:
            out[t.id] = Invalid("tags.bad_settings", reason=f"unknown measure {measure}")
            continue
        scores = [round(float(v), 6) for v in numbers[measure].tolist()]
        out[t.id] = Members.of(ids, None, scores)
    return out


# ---------------------------------------------------------------- org tags


def evaluate_org(ctx: Context, tags: list[Tag]) -> dict[str, Members | Exception]:
    from siyu.customers import queries as customer_queries
    from siyu.tags import facts as tag_facts

    out: dict[str, Members | Exception] = {}
    owners, homes = customer_queries.owners_and_home_units(ctx.db, ctx.brand.id, ctx.subset)
    for t in tags:
        measure = t.spec.get("measure")
        if measure == "owner_guide":
            ids = sorted(owners)
            out[t.id] = Members.of(ids, [owners[c] for c in ids])
        elif measure == "home_store":
            stores = _home_stores(
                ctx.purchases(), tag_facts.visits(ctx.engine, ctx.brand.id, ctx.idmap)
            )
            for cid, code in homes.items():
                stores.setdefault(cid, code)
            ids = sorted(stores)
            out[t.id] = Members.of(ids, [stores[c] for c in ids])
        else:
            out[t.id] = Invalid("tags.bad_settings", reason=f"unknown measure {measure}")
    return out


def _home_stores(purchases: Any, visits: Any) -> dict[str, str]:
    """Most bought-at store per customer (ties: the latest purchase there, then the code),
    then the most visited store for customers who never bought in a store."""
    best: dict[str, tuple[int, Any, str]] = {}
    for cid, ts, code in zip(
        purchases.column("customer_id").to_pylist(),
        purchases.column("ts").to_pylist(),
        purchases.column("store_code").to_pylist(),
        strict=True,
    ):
        if not code:
            continue
        n, latest, _ = best.get(f"{cid}\x1f{code}", (0, ts, code))
        best[f"{cid}\x1f{code}"] = (n + 1, max(latest, ts), code)
    out: dict[str, tuple[int, Any, str]] = {}
    for key, (n, latest, code) in best.items():
        cid = key.split("\x1f", 1)[0]
        cur = out.get(cid)
        if cur is None or (n, latest, code) > cur:
            out[cid] = (n, latest, code)
    stores = {cid: v[2] for cid, v in out.items()}
    seen: dict[str, tuple[int, str]] = {}
    for cid, code, count in zip(
        visits.column("customer_id").to_pylist(),
        visits.column("store_code").to_pylist(),
        visits.column("n").to_pylist(),
        strict=True,
    ):
        if cid in stores:
            continue
        prior = seen.get(cid)
        if prior is None or (count, code) > prior:
            seen[cid] = (count, code)
    stores.update({cid: v[1] for cid, v in seen.items()})
    return stores
