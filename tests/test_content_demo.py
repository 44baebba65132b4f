"""Acceptance 2 and 3 on the demo brand: a tracking-link click from the demo is a click tied
to customer, touch and content (and a ``link_clicked`` event in the lake); an open redirect
on the demo brand is refused; the demo's A/B test shows per-variant metrics and a
significance figure that scipy confirms.

SQLite only: the demo lives in a data directory (store + lake), built here through the same
steps as ``siyu demo`` (one brand, few customers, to stay quick).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from siyu.analytics import lake
from siyu.cli.main import app
from siyu.content import actions, queries
from siyu.content.models import LinkClick, TrackingLink
from siyu.content.schemas import LinkIn
from siyu.core.db import open_session
from siyu.core.errors import Invalid
from siyu.core.tenancy import SYSTEM
from siyu.org import queries as org_queries
from siyu.sop.models import Sop, Touch
from tests.demo_world import build_coffee, demo_dir, point_at


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from siyu.demo import content as demo_content

    with demo_dir(tmp_path_factory.mktemp("content-demo")) as data:
        with open_session() as db:
            brand = build_coffee(db, data, customers=900)
            made = demo_content.setup(db, brand)
            again = demo_content.setup(db, brand)  # idempotent
        yield {"data": data, "made": made, "again": again}


@pytest.fixture
def at_demo(demo: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point this test (past the per-test data directory) at the demo's."""
    yield from point_at(demo, monkeypatch)


def test_demo_click_is_tied_to_customer_touch_and_content(at_demo: Any) -> None:
    demo = at_demo
    assert {**demo["made"], "ms": 0} == {**demo["again"], "ms": 0}
    assert demo["made"]["materials"] >= 9 and demo["made"]["clicks"] > 0
    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        counted = list(
            db.scalars(select(LinkClick).where(LinkClick.brand_id == brand.id, ~LinkClick.bot))
        )
        assert counted
        touches = {t.id: t for t in db.scalars(select(Touch).where(Touch.brand_id == brand.id))}
        for c in counted:
            touch = touches[str(c.touch_id)]
            assert c.customer_id == touch.customer_id
            assert c.material_id == touch.content["content_id"]
            assert c.variant == touch.content["variant"]
            assert c.at > touch.send_at
        # the preview crawler's fetches were kept but not counted
        bots = list(db.scalars(select(LinkClick).where(LinkClick.bot)))
        assert all(b.reason in ("bot_ua", "too_soon") for b in bots)
        # and every counted click is a link_clicked event in the lake, naming the touch
        events = lake.read("events", brand.id, ["event_type", "properties", "identity_key"])
        clicked = [
            json.loads(p)
            for t, p in zip(
                events.column("event_type").to_pylist(),
                events.column("properties").to_pylist(),
                strict=True,
            )
            if t == "link_clicked"
        ]
        assert sorted(e["touch_id"] for e in clicked) == sorted(str(c.touch_id) for c in counted)
        # an open redirect on the demo brand is refused
        for url in ("https://mall.siyu-demo.cn.evil.com/", "//evil.com", "https://evil.com"):
            with pytest.raises(Invalid) as exc:
                actions.create_link(db, SYSTEM, brand, LinkIn(target_url=url))
            assert exc.value.code == "content.redirect_refused"


def test_demo_ab_results_with_significance_checked_by_scipy(at_demo: Any) -> None:
    from scipy import stats

    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        sop = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == "new_menu_ab"))
        assert sop is not None
        res = queries.variant_results(db, SYSTEM, brand, "new_menu_ab", 0, metric="click")
        a, b = res.rows
        assert (a.variant, a.control, b.variant) == ("A", True, "B")
        sent = list(db.scalars(select(Touch).where(Touch.sop_id == sop.id, Touch.status == "sent")))
        assert a.customers + b.customers == len({t.customer_id for t in sent}) > 20
        assert b.p_value is not None and b.lift is not None
        table = [
            [b.successes, b.customers - b.successes],
            [a.successes, a.customers - a.successes],
        ]
        _chi2, p, _dof, _exp = stats.chi2_contingency(table, correction=False)
        assert b.p_value == pytest.approx(p, rel=1e-9)
        # the API gives the same table, with GMV compared by Welch's test
        gmv = queries.variant_results(db, SYSTEM, brand, "new_menu_ab", 0, metric="gmv")
        assert gmv.test == "welch_t" and sum(r.gmv_fen for r in gmv.rows) > 0
        links = list(db.scalars(select(TrackingLink).where(TrackingLink.sop_id == sop.id)))
        assert {lk.variant for lk in links} == {"A", "B"}
        perf = queries.performance(db, SYSTEM, brand, days=30)
        assert {r.material_id for r in perf.rows} == {lk.material_id for lk in links}
        assert all(r.delivered == r.sends for r in perf.rows)
        assert perf.best and perf.best[0] in {r.material_id for r in perf.rows}
        assert sent[0].send_at and sent[0].send_at < sent[0].decided_at + timedelta(days=1)  # type: ignore[operator]


def test_cli_stats_on_the_demo(at_demo: Any) -> None:
    demo = at_demo
    runner = CliRunner()
    data = str(demo["data"])
    r = runner.invoke(app, ["content", "stats", "--brand", "demo-coffee", "--data-dir", data])
    assert r.exit_code == 0, r.output
    assert "新品尝鲜" in r.output and "gmv_yuan" in r.output
    r = runner.invoke(
        app,
        [
            "content",
            "stats",
            "--brand",
            "demo-coffee",
            "--data-dir",
            data,
            "--sop",
            "new_menu_ab",
            "--metric",
            "click",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "A (control)" in r.output and "p_value" in r.output
    r = runner.invoke(
        app, ["content", "list", "--brand", "demo-coffee", "--data-dir", data, "--kind", "link"]
    )
    assert r.exit_code == 0 and "链接卡片" in r.output
    # import: the good lines are kept, the bad one is reported with its line and field
    lines = [
        {"kind": "text", "name": "导入一", "body": {"text": "{{ nickname }}好"}},
        {"kind": "link", "name": "导入二", "body": {"title": "t", "url": "notaurl"}},
        {"kind": "image", "name": "导入三", "body": {"url": "https://img.example.com/3.png"}},
    ]
    path = Path(data) / "materials.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    r = runner.invoke(
        app, ["content", "import", str(path), "--brand", "demo-coffee", "--data-dir", data]
    )
    assert r.exit_code == 1, r.output
    assert "2 created, 1 refused" in r.output
    assert "row 2 field body.url" in r.output and "content.bad_url" in r.output
    r = runner.invoke(
        app, ["content", "list", "--brand", "demo-coffee", "--data-dir", data, "--q", "导入"]
    )
    assert "导入一" in r.output and "导入三" in r.output and "导入二" not in r.output
