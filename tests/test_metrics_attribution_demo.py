"""Acceptance 3 of the KPI issue on the demo brand: the demo's coupon SOP (``activation_coupon``,
30% holdout, run three weeks ago) shows an effect over its holdout with a confidence interval
that excludes zero; the same campaign switched off before the worker delivered it — its queued
touches failed ``sop_disabled`` by the real dispatcher, nothing reaching anyone — shows an
effect indistinguishable from zero. The SOP's console page shows both.

The demo's customer ids (and so the hash that picks the holdout) differ from one build to the
next, so the "no effect" check is a statistical one: at the reported 95% level it would fail
in one build out of twenty by construction. It is therefore asserted at 99.9% (one build in a
thousand), beside the 95% interval the console shows; the lift is strong enough (z ≈ 5 at
this size) to exclude zero at 99.9% as well.

SQLite only: the demo lives in a data directory (store + lake), built through the same steps
as ``siyu demo`` (one brand, 2,000 customers, to stay quick).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from siyu.core.db import open_session
from siyu.core.tenancy import SYSTEM
from siyu.metrics import attribution
from siyu.org import queries as org_queries
from siyu.sop.models import Enrolment, Outbox, Sop, Touch
from tests.demo_world import build_coffee, demo_dir, point_at

OFF = "activation_off"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from siyu.channels.console import ConsoleChannel
    from siyu.channels.dispatcher import dispatch
    from siyu.demo import campaign

    with demo_dir(tmp_path_factory.mktemp("attribution-demo")) as data:
        with open_session() as db:
            brand = build_coffee(db, data, customers=2_000)
            on = campaign.setup(db, brand)
            again = campaign.setup(db, brand)  # idempotent
            off = campaign.run(db, brand, OFF, "好友促活券（未发出）", switched_off=True)
            # the worker comes by: the switched-off SOP's queued touches must not go out
            console = ConsoleChannel()
            while dispatch(db, 500, adapters={"wecom_1to1": console}):
                pass
        yield {"data": data, "on": on, "again": again, "off": off, "console": console}


@pytest.fixture
def at_demo(demo: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from point_at(demo, monkeypatch)


def test_the_demo_coupon_sop_shows_an_effect_with_a_confidence_interval(at_demo: Any) -> None:
    on = at_demo["on"]
    assert on == at_demo["again"]
    assert on["sop"] == "activation_coupon" and on["status"] == "enabled"
    assert on["enrolled"] >= 400 and 0.2 < on["holdout"] / on["enrolled"] < 0.4
    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        eff = attribution.sop_effect(db, SYSTEM, brand, "activation_coupon", window_days=14)
        strict = attribution.sop_effect(
            db, SYSTEM, brand, "activation_coupon", window_days=14, confidence=0.999
        )
    # every enrolment is three weeks old: all of them are in, split as the engine split them
    assert eff.treated + eff.holdout == on["enrolled"] and eff.immature == 0
    assert eff.holdout == on["holdout"]
    assert eff.conversion is not None and eff.gmv is not None
    c = eff.conversion
    assert c.low < c.diff < c.high and c.se > 0
    assert c.diff == pytest.approx(eff.conversion_treated - eff.conversion_holdout)  # type: ignore[operator]
    # the coupon lifts conversion: the 95% interval (and the 99.9% one) excludes zero
    assert c.low > 0 and not c.includes_zero
    assert strict.conversion is not None and strict.conversion.low > 0
    assert eff.gmv.diff > 0


def test_the_same_sop_switched_off_is_indistinguishable_from_zero(at_demo: Any) -> None:
    off = at_demo["off"]
    assert off["status"] == "disabled" and off["delivered"] == 0 and off["enrolled"] >= 400
    # the real dispatcher failed every queued touch of the switched-off SOP
    assert list(at_demo["console"].sent) == []
    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        sop_id = db.scalar(select(Sop.id).where(Sop.brand_id == brand.id, Sop.key == OFF))
        queued = list(
            db.scalars(
                select(Outbox).where(
                    Outbox.touch_id.in_(select(Touch.id).where(Touch.sop_id == sop_id))
                )
            )
        )
        assert queued and {(r.status, r.reason) for r in queued} == {("failed", "sop_disabled")}
        held = db.scalar(
            select(Enrolment.id).where(Enrolment.sop_id == sop_id, Enrolment.holdout).limit(1)
        )
        assert held is not None
        eff = attribution.sop_effect(db, SYSTEM, brand, OFF, window_days=14, confidence=0.999)
        lift = attribution.sop_effect(db, SYSTEM, brand, "activation_coupon", window_days=14)
    assert eff.treated + eff.holdout == off["enrolled"] and eff.immature == 0
    assert eff.conversion is not None and eff.gmv is not None
    for d in (eff.conversion, eff.gmv):
        assert d.low < 0 < d.high and d.includes_zero and d.p_value > 0.001
    # its difference is smaller than the switched-on campaign's lift
    assert lift.conversion is not None
    assert abs(eff.conversion.diff) < lift.conversion.diff


def test_the_sop_page_shows_the_effect(at_demo: Any) -> None:
    from siyu.demo.org import PASSWORD
    from siyu.server import create_app

    with TestClient(create_app()) as client:
        r = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD},
            follow_redirects=False,
        )
        assert r.status_code in (302, 303), r.text
        page = client.get("/b/demo-coffee/sops/activation_coupon?window=14")
        assert page.status_code == 200
        html = page.text
        assert 'id="sop-effect"' in html and 'data-window="14"' in html
        assert 'data-effect="conversion" data-verdict="up"' in html
        assert "显著提升" in html and "置信区间" in html
        # the switched-off SOP's card says what its 95% interval says (which includes zero
        # in nineteen builds out of twenty: see the module doc)
        with open_session() as db:
            brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
            c = attribution.sop_effect(db, SYSTEM, brand, OFF, window_days=14).conversion
        assert c is not None
        verdict = "zero" if c.includes_zero else ("up" if c.low > 0 else "down")
        page = client.get(f"/b/demo-coffee/sops/{OFF}?window=14")
        assert f'data-effect="conversion" data-verdict="{verdict}"' in page.text
        # the effect is the API's figure too
        r = client.get(
            "/api/v1/brands/demo-coffee/metrics/sops/activation_coupon/effect",
            params={"window_days": 14},
        )
        assert r.status_code == 200 and r.json()["conversion"]["low"] > 0
