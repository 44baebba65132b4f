"""A/B/n variants (acceptance 3): stable weighted assignment, the engine carrying content id,
version and variant into touches and the outbox, and the significance figures — checked
against scipy on fixed data — in the per-variant results table."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.content import actions, queries, variants
from siyu.content.schemas import LinkIn, MaterialIn, SettingsIn, StepContentIn
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.sop import engine
from siyu.sop.models import Outbox, Touch
from tests.test_sop_engine import DAY1, PHONES, add_sop, customer_of, ev, setup_brand

# fixed data: variant and control successes out of customers
PROPORTIONS = [(120, 1000, 100, 1000), (45, 300, 30, 310), (7, 50, 9, 52), (0, 40, 3, 40)]
GMV_B = [0, 0, 3990, 0, 12800, 0, 0, 5600, 0, 2990, 0, 0, 19900, 0, 0, 0, 4500, 0, 0, 0]
GMV_A = [0, 2990, 0, 0, 0, 3990, 0, 0, 0, 0, 0, 0, 5600, 0, 0, 0, 0, 0, 0, 0, 990, 0]


@pytest.mark.parametrize(("s1", "n1", "s0", "n0"), PROPORTIONS)
def test_two_proportion_z_test_matches_scipy(s1: int, n1: int, s0: int, n0: int) -> None:
    from scipy import stats

    got = variants.two_proportion(s1, n1, s0, n0, confidence=0.95)
    # the pooled z-test is the chi-square test of the 2×2 table without continuity correction
    table = [[s1, n1 - s1], [s0, n0 - s0]]
    chi2, p, _dof, _exp = stats.chi2_contingency(table, correction=False)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.stat is not None and got.stat**2 == pytest.approx(chi2, rel=1e-9)
    assert (got.stat > 0) == (s1 / n1 > s0 / n0)
    # the interval of the difference: unpooled standard error, normal quantile
    p1, p0 = s1 / n1, s0 / n0
    se = (p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0) ** 0.5
    q = stats.norm.ppf(0.975)
    assert got.ci_low == pytest.approx(p1 - p0 - q * se, rel=1e-9)
    assert got.ci_high == pytest.approx(p1 - p0 + q * se, rel=1e-9)
    assert got.lift == pytest.approx((p1 - p0) / p0, rel=1e-12)


def test_welch_t_test_matches_scipy() -> None:
    from scipy import stats

    got = variants.welch([float(x) for x in GMV_B], [float(x) for x in GMV_A], confidence=0.9)
    ref = stats.ttest_ind(GMV_B, GMV_A, equal_var=False)
    assert got.stat == pytest.approx(ref.statistic, rel=1e-9)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.9)
    assert got.ci_low == pytest.approx(ci.low, rel=1e-7)
    assert got.ci_high == pytest.approx(ci.high, rel=1e-7)
    assert got.df == pytest.approx(ref.df, rel=1e-9)


def test_assignment_is_stable_and_follows_weights() -> None:
    weights = {"A": 20, "B": 30, "C": 50}
    ids = [f"C{i:06d}" for i in range(20_000)]
    got = [variants.assign("winback", cid, 0, weights) for cid in ids]
    assert got == [variants.assign("winback", cid, 0, weights) for cid in ids]
    shares = Counter(got)
    for name, w in weights.items():
        assert abs(shares[name] / len(ids) - w / 100) < 0.015, shares
    # another step or SOP draws independently
    other = [variants.assign("winback", cid, 2, weights) for cid in ids[:2000]]
    assert other != got[:2000]


def _split_key(db: Session, brand: Any) -> str:
    """An SOP key whose A/B split of the eight customers leaves at least two in each
    variant: customer ids are random, and the test needs both arms populated."""
    from siyu.customers.models import Customer

    ids = list(db.scalars(select(Customer.id).where(Customer.brand_id == brand.id)))
    for i in range(100):
        key = "winback" if i == 0 else f"winback{i}"
        got = [variants.assign(key, cid, 0, {"A": 50, "B": 50}) for cid in ids]
        if min(got.count("A"), got.count("B")) >= 2:
            return key
    raise AssertionError("no balanced split among 100 keys")


def _touch_with_variants(db: Session) -> tuple[Any, Any, dict[str, str], str]:
    brand = setup_brand(db, n=8)
    key = _split_key(db, brand)
    actions.set_settings(db, SYSTEM, brand, SettingsIn(allowed_domains=["mall.example.com"]))
    mats = {}
    for name, text in (("A", "{{ nickname }}，好久不见"), ("B", "{{ nickname }}，送你一张券")):
        m = actions.create_material(
            db, SYSTEM, brand, MaterialIn(kind="text", name=f"winback {name}", body={"text": text})
        )
        mats[name] = m.id
    sop = add_sop(
        db,
        brand,
        key,
        [{"type": "touch", "channel": "wecom_1to1", "content": {"text": "placeholder"}}],
    )
    actions.set_step_content(
        db,
        SYSTEM,
        brand,
        key,
        StepContentIn.model_validate(
            {
                "step": 0,
                "variants": [
                    {"name": "A", "weight": 50, "material_id": mats["A"]},
                    {"name": "B", "weight": 50, "material_id": mats["B"]},
                ],
            }
        ),
    )
    # a new version of B after the step was set: the step keeps the version it pinned
    from siyu.content.schemas import MaterialPatch

    actions.update_material(
        db, SYSTEM, brand, mats["B"], MaterialPatch(body={"text": "{{ nickname }}，新券"})
    )
    return brand, sop, mats, key


def test_engine_sends_variants_and_results_are_computed(db: Session, world: Any) -> None:
    brand, sop, mats, key = _touch_with_variants(db)
    engine.run_day(db, SYSTEM, brand, DAY1)
    touches = list(db.scalars(select(Touch).where(Touch.sop_id == sop.id)))
    assert len(touches) == 8 and all(t.status == "sent" for t in touches)
    for t in touches:
        name = t.content["variant"]
        assert name == variants.assign(key, t.customer_id, 0, {"A": 50, "B": 50})
        assert t.content["content_id"] == mats[name] and t.content["version"] == 1
    payloads = {o.touch_id: o.payload for o in db.scalars(select(Outbox))}
    for t in touches:
        p = payloads[t.id]
        assert (p["content_id"], p["version"], p["variant"]) == (
            mats[t.content["variant"]],
            1,
            t.content["variant"],
        )
    # clicks: through one link per variant, signed for the customer and touch
    links = {
        name: actions.create_link(
            db,
            SYSTEM,
            brand,
            LinkIn(target_url="https://mall.example.com/x", material_id=mid, variant=name),
        )
        for name, mid in mats.items()
    }
    by_variant: dict[str, list[Touch]] = {"A": [], "B": []}
    for t in sorted(touches, key=lambda t: t.customer_id):
        by_variant[t.content["variant"]].append(t)
    assert by_variant["A"] and by_variant["B"]
    clickers = by_variant["A"][:1] + by_variant["B"][:2]
    for t in clickers:
        at = t.send_at + timedelta(hours=1) if t.send_at else None
        url = actions.signed_url(links[t.content["variant"]], t.customer_id, t.id)
        params = dict(parse_qsl(urlsplit(url).query))
        got = actions.record_click(
            db, links[t.content["variant"]].code, user_agent="Mozilla/5.0", params=params, now=at
        )
        assert got.target and got.click and got.click.touch_id == t.id
    # a "click" 0.3 s after the send is a link preview: kept, not counted
    t0 = by_variant["A"][-1]
    params = dict(parse_qsl(urlsplit(actions.signed_url(links["A"], t0.customer_id, t0.id)).query))
    assert t0.send_at is not None
    early = actions.record_click(
        db,
        links["A"].code,
        user_agent="Mozilla/5.0",
        params=params,
        now=t0.send_at + timedelta(milliseconds=300),
    )
    assert early.click is not None and early.click.bot and early.reason == "too_soon"
    # orders: one B customer buys within the window, one A customer after it
    by_id = {t.customer_id: t for t in touches}
    phone_of = {customer_of(db, brand, p): p for p in PHONES[:8]}
    b_buyer, a_late = by_variant["B"][-1].customer_id, by_variant["A"][-1].customer_id
    ingest.ingest_batch(
        db,
        SYSTEM,
        brand,
        [
            ev(
                "o1",
                "order_paid",
                "2026-07-02T12:00:00+08:00",
                phone_of[b_buyer],
                order_id="O1",
                channel="mini_mall",
                paid_fen=12_900,
            ),
            ev(
                "o2",
                "order_paid",
                "2026-07-20T12:00:00+08:00",
                phone_of[a_late],
                order_id="O2",
                channel="mini_mall",
                paid_fen=9_900,
            ),
        ],
    )
    now = datetime(2026, 7, 25, tzinfo=UTC)
    res = queries.variant_results(db, SYSTEM, brand, key, 0, metric="click", now=now)
    assert res.test == "two_proportion_z"
    rows = {r.variant: r for r in res.rows}
    assert [r.variant for r in res.rows] == ["A", "B"] and rows["A"].control
    nA, nB = len(by_variant["A"]), len(by_variant["B"])
    assert (rows["A"].customers, rows["A"].successes) == (nA, 1)
    assert (rows["B"].customers, rows["B"].successes) == (nB, 2)
    ref = variants.two_proportion(2, nB, 1, nA)
    assert rows["B"].p_value == pytest.approx(ref.p_value)
    assert rows["B"].lift == pytest.approx((2 / nB - 1 / nA) / (1 / nA))
    res = queries.variant_results(db, SYSTEM, brand, key, 0, metric="gmv", now=now)
    rows = {r.variant: r for r in res.rows}
    assert res.test == "welch_t"
    assert rows["B"].gmv_fen == 12_900 and rows["A"].gmv_fen == 0  # A's order is too late
    res = queries.variant_results(
        db, SYSTEM, brand, key, 0, metric="order", window_days=30, now=now
    )
    rows = {r.variant: r for r in res.rows}
    assert rows["A"].successes == 1 and rows["B"].successes == 1
    assert by_id  # every touch has its customer
    # performance per material: the same facts, per content
    perf = queries.performance(db, SYSTEM, brand, days=60, window_days=7, now=now)
    per = {r.material_id: r for r in perf.rows}
    assert per[mats["A"]].sends == nA and per[mats["B"]].sends == nB
    assert per[mats["A"]].clicks == 1 and per[mats["B"]].clicks == 2
    assert per[mats["B"]].orders == 1 and per[mats["B"]].gmv_fen == 12_900
    assert per[mats["A"]].orders == 0
