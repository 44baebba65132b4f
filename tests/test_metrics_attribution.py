"""Omni-channel GMV on the hand-built story, the Welch difference against scipy, and the
incremental effect of an SOP over its holdout in a demo-like world (acceptance 3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.metrics import attribution as at
from siyu.metrics.kpis import compute_kpis
from siyu.org.queries import access_brand
from siyu.sop import actions as sop_actions
from siyu.sop import engine
from siyu.sop.models import Enrolment, Sop, Touch
from siyu.sop.schemas import SopIn
from siyu.tags import segments
from siyu.tags.schemas import SegmentIn
from tests.test_metrics_kpis import AS_OF, story  # noqa: F401 - the fixture


def test_omnichannel_gmv(db: Session, story: Any) -> None:  # noqa: F811
    rows = {r.channel: r for r in at.omnichannel(db, SYSTEM, story, start=date(2026, 11, 1),
                                                 end=date(2026, 11, 30), as_of=AS_OF)}  # fmt: skip
    # November's paid orders: A 10000 pos and 5000 tmall (a friend since 10-05), B 20000
    # mini_mall (a friend 11-02 … 11-15), C 8000 pos (before its add), D 3000 pos (never)
    assert list(rows) == ["mini_mall", "pos", "tmall"]  # by private-domain GMV
    assert (rows["mini_mall"].pd_gmv_fen, rows["mini_mall"].pd_buyers) == (20000, 1)
    pos = rows["pos"]
    assert (pos.pd_gmv_fen, pos.pd_orders, pos.other_gmv_fen, pos.other_orders) == (
        10000, 1, 11000, 2,
    )  # fmt: skip
    # A's 2000 refund of the Tmall order on 11-21, while a friend
    assert (rows["tmall"].pd_gmv_fen, rows["tmall"].pd_refunds_fen) == (5000, 2000)
    # shares of 35000: 20000, 10000, 5000
    assert rows["mini_mall"].pd_share == pytest.approx(4 / 7, abs=1e-6)
    assert rows["tmall"].pd_share == pytest.approx(1 / 7, abs=1e-6)


def test_welch_matches_scipy() -> None:
    from scipy import stats  # type: ignore[import-untyped]

    treated = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1]
    holdout = [0, 0, 1, 0, 0, 1, 0, 0, 0]
    got = at.welch(at.arm([float(x) for x in treated]), at.arm([float(x) for x in holdout]))
    assert got is not None
    ref = stats.ttest_ind(treated, holdout, equal_var=False)
    # diff = 8/12 - 2/9 = 0.444…
    assert got.diff == pytest.approx(8 / 12 - 2 / 9)
    assert got.z == pytest.approx(ref.statistic)
    assert got.df == pytest.approx(ref.df)
    assert got.se == pytest.approx(got.diff / ref.statistic)
    z = stats.norm.ppf(0.975)
    assert got.low == pytest.approx(got.diff - z * got.se)
    assert got.high == pytest.approx(got.diff + z * got.se)
    assert got.p_value == pytest.approx(2 * stats.norm.sf(abs(ref.statistic)))
    # GMV-like values
    a = [12000.0, 0.0, 3500.0, 0.0, 8800.0, 0.0, 0.0, 2600.0]
    b = [0.0, 3200.0, 0.0, 0.0, 0.0, 2600.0]
    got = at.welch(at.arm(a), at.arm(b), confidence=0.9)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert got is not None and got.z == pytest.approx(ref.statistic)
    assert got.high - got.diff == pytest.approx(stats.norm.ppf(0.95) * got.se)
    assert at.welch(at.arm([1.0]), at.arm(b)) is None  # too few to say anything


# ---------------------------------------------------------------- acceptance 3


N = 400
DAY = date(2026, 11, 12)
ENABLED = datetime(2026, 11, 10, 16, 0, tzinfo=UTC)  # 11-11 00:00 in Shanghai
WINDOW = 20  # days; the last orders land before today (2026-12-04 on this project's clock)
P_BASE = 0.2  # anyone enrolled buys within the window with this chance
P_TOUCHED = 0.5  # … and a customer the SOP actually reached, with this one


def world_with_sop(db: Session, uplift: bool, seed: int = 11) -> tuple[Any, datetime]:
    """N customers who viewed a page, an SOP with a 50% holdout enrolling all of them today,
    then a month of purchases: everybody at the base rate, and — when ``uplift`` — the
    customers the SOP's touch reached at the higher rate (the SOP works). Without uplift,
    treated and holdout behave alike (as if the SOP did nothing)."""
    brand = access_brand(db, SYSTEM, "a-coffee")
    phones = [f"1371{i:07d}" for i in range(N)]
    views = [
        {
            "event_id": f"v{i}",
            "event_type": "page_viewed",
            "occurred_at": "2026-11-10T10:00:00+08:00",
            "source": "test",
            "identifiers": [{"type": "phone", "value": p}],
            "properties": {"path": "/pages/index"},
        }
        for i, p in enumerate(phones)
    ]
    assert ingest.ingest_batch(db, SYSTEM, brand, views).accepted == N
    segments.create(
        db, SYSTEM, brand,
        SegmentIn(key="viewers", name="浏览过", definition="exists(page_viewed, last 365d)"),
    )  # fmt: skip
    body = SopIn.model_validate(
        {
            "key": "nudge",
            "name": "唤醒",
            "audience": {"kind": "segment", "segment": "viewers"},
            "holdout_pct": 50,
            "steps": [{"type": "touch", "channel": "sms", "content": {"text": "回来看看"},
                       "valid_hours": 48}],
        }
    )  # fmt: skip
    sop_actions.create_sop(db, SYSTEM, brand, body)
    sop = sop_actions.enable_sop(db, SYSTEM, brand, "nudge")
    # switched on the day before DAY (the data must lie in the past: the lake refuses facts
    # from the future)
    db.execute(update(Sop).where(Sop.id == sop.id).values(enabled_at=ENABLED))
    db.commit()
    engine.run_day(db, SYSTEM, brand, DAY)
    enrolments = list(db.scalars(select(Enrolment)))
    reached = set(db.scalars(select(Touch.customer_id).where(Touch.status == "sent")))
    assert len(enrolments) == N and reached
    from siyu.customers import vault
    from siyu.customers.models import Identity

    phone_of: dict[str | None, str] = {}
    for phone in phones:
        h = vault.match_hash(brand.id, "phone", phone)
        phone_of[db.scalar(select(Identity.customer_id).where(Identity.value_hash == h))] = phone
    rng = np.random.default_rng(seed)
    # Which customers land in the holdout depends on their (random) ids, so the draws are
    # paired and stratified: the k-th holdout and the k-th treated enrolment share one uniform
    # from an evenly spread, shuffled grid. Each arm's buying rate is then its probability to
    # within one customer, and neither test can fail by sampling luck.
    held = sorted((e for e in enrolments if e.holdout), key=lambda e: e.id)
    treated = sorted((e for e in enrolments if not e.holdout), key=lambda e: e.id)
    pairs = max(len(held), len(treated))
    grid = (rng.permutation(pairs) + 0.5) / pairs
    draws: dict[str, tuple[float, float, int]] = {}
    for k in range(pairs):
        draw = (
            float(grid[k]),
            float(rng.uniform(0.5, WINDOW - 1)),
            int(rng.integers(2000, 9000)),
        )
        for arm in (held, treated):
            if k < len(arm):
                draws[arm[k].id] = draw
    orders = []
    for e in enrolments:
        p = P_TOUCHED if uplift and e.customer_id in reached else P_BASE
        u, day, paid = draws[e.id]
        if u < p:
            entered = (
                e.entered_at.replace(tzinfo=UTC) if e.entered_at.tzinfo is None else e.entered_at
            )
            when = entered + timedelta(days=day)
            orders.append(
                {
                    "event_id": f"o-{e.id}",
                    "event_type": "order_paid",
                    "occurred_at": when.isoformat(),
                    "source": "test",
                    "identifiers": [{"type": "phone", "value": phone_of[e.customer_id]}],
                    "properties": {"order_id": f"O-{e.id}", "channel": "mini_mall",
                                   "paid_fen": paid},
                }
            )  # fmt: skip
    assert ingest.ingest_batch(db, SYSTEM, brand, orders).accepted == len(orders)
    first = min(e.entered_at for e in enrolments)
    first = first.replace(tzinfo=UTC) if first.tzinfo is None else first
    return brand, first + timedelta(days=WINDOW + 1)


def test_sop_effect_with_confidence_interval(db: Session, world: Any) -> None:
    brand, as_of = world_with_sop(db, uplift=True)
    eff = at.sop_effect(db, SYSTEM, brand, "nudge", window_days=WINDOW, as_of=as_of)
    assert eff.treated + eff.holdout == N and eff.immature == 0
    assert 150 < eff.holdout < 250  # a 50% holdout
    assert eff.conversion is not None and eff.gmv is not None
    # a real lift: the interval is above zero and holds the lift put into the world
    assert eff.conversion.low > 0 and not eff.conversion.includes_zero
    assert eff.conversion.low < P_TOUCHED - P_BASE < eff.conversion.high + 0.05
    assert eff.gmv.low > 0
    # the KPI table grouped by SOP: the treated are the SOP's group, the holdout in none
    t = compute_kpis(db, SYSTEM, brand, start=DAY, end=DAY + timedelta(days=WINDOW),
                     group_by="sop", kpis=["repurchase_rate"], as_of=as_of)  # fmt: skip
    assert {r.label: r.customers for r in t.rows} == {"唤醒": eff.treated, "(none)": eff.holdout}
    # the window is honoured: before it is over nothing counts
    early = at.sop_effect(
        db, SYSTEM, brand, "nudge", window_days=WINDOW, as_of=as_of - timedelta(days=5)
    )
    assert early.treated + early.holdout == 0 and early.immature == N


def test_without_an_effect_the_interval_holds_zero(db: Session, world: Any) -> None:
    brand, as_of = world_with_sop(db, uplift=False)
    eff = at.sop_effect(db, SYSTEM, brand, "nudge", window_days=WINDOW, as_of=as_of)
    assert eff.conversion is not None and eff.gmv is not None
    assert eff.conversion.includes_zero and eff.gmv.includes_zero
    assert abs(eff.conversion.diff) < 2 * eff.conversion.se


def test_unknown_sop(db: Session, world: Any) -> None:
    from siyu.metrics.errors import MetricsNotFound

    brand = access_brand(db, SYSTEM, "a-coffee")
    with pytest.raises(MetricsNotFound):
        at.sop_effect(db, SYSTEM, brand, "nope")
