"""Contracts on values: lines, status, scaling on a traffic shortfall, bonus formulas."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.errors import Invalid
from siyu.metrics.contracts import (
    ForecastRow,
    Lines,
    bonus,
    check_bonus,
    check_lines,
    commitment,
    evaluate,
    status_of,
    traffic_factor,
)

# The seed's example: a 20% diversion rate is good, 5% and up is passing.
DIVERSION = Lines(fail=0.0, normal=0.05, good=0.20, excess=0.25, direction="higher")
# Cost per diverted customer in fen: lower is better.
COST = Lines(fail=5000, normal=3000, good=2000, excess=1500, direction="lower")


def test_acceptance_diversion_rate_19_is_normal_21_is_good() -> None:
    at19 = status_of(0.19, DIVERSION)
    assert at19.line == "normal"
    assert at19.next_line == "good"
    assert at19.to_next == pytest.approx(0.01)
    at21 = status_of(0.21, DIVERSION)
    assert at21.line == "good"
    assert at21.next_line == "excess"
    assert at21.to_next == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("value", "line"),
    [(0.0, "fail"), (0.049, "fail"), (0.05, "normal"), (0.20, "good"), (0.25, "excess")],
)
def test_a_value_sits_on_the_best_line_it_reached(value: float, line: str) -> None:
    assert status_of(value, DIVERSION).line == line


def test_lower_is_better_lines() -> None:
    assert status_of(6000, COST).line == "fail"
    assert status_of(3000, COST).line == "normal"
    mid = status_of(2500, COST)
    assert (mid.line, mid.next_line, mid.to_next) == ("normal", "good", 500)
    top = status_of(1200, COST)
    assert (top.line, top.next_line, top.beyond_excess) == ("excess", None, 300)


def test_acceptance_traffic_shortfall_of_30_percent_scales_counts_not_rates() -> None:
    # the client committed 10,000 visitors over two channels and delivered 7,000 (-30%)
    rows = [
        ForecastRow("2026-11", "store_qr", 6000, 0.2, 8000, delivered_traffic=4000),
        ForecastRow("2026-11", "ecommerce", 4000, 0.2, 8000, delivered_traffic=3000),
    ]
    factor = traffic_factor(rows)
    assert factor == pytest.approx(0.7)
    diverted = Lines(fail=0, normal=1000, good=1500, excess=2000)
    # 1,100 diverted customers: "normal" against the contracted lines ...
    plain = evaluate("diverted_customers", "count", diverted, 1100)
    assert plain.status is not None and plain.status.line == "normal"
    # ... "good" against the scaled ones (700 / 1,050 / 1,400), 300 short of excess
    cut = evaluate("diverted_customers", "count", diverted, 1100, factor=factor)
    assert cut.effective.as_dict() == pytest.approx(
        {"fail": 0, "normal": 700, "good": 1050, "excess": 1400}
    )
    assert cut.status is not None and cut.status.line == "good"
    assert cut.status.to_next == pytest.approx(300)
    # amounts scale the same way; a rate keeps its lines: 19% is still "normal"
    gmv = evaluate("gmv", "amount", Lines(0, 100_000, 200_000, 300_000), 150_000, factor=factor)
    assert gmv.effective.good == pytest.approx(140_000)
    assert gmv.status is not None and gmv.status.line == "good"
    rate = evaluate("diversion_rate", "rate", DIVERSION, 0.19, factor=factor)
    assert rate.effective == DIVERSION
    assert rate.status is not None and rate.status.line == "normal"


def test_no_scaling_without_a_shortfall() -> None:
    over = [ForecastRow("2026-11", "a", 1000, 0.1, 100, delivered_traffic=1500)]
    unknown = [ForecastRow("2026-11", "a", 1000, 0.1, 100)]
    assert traffic_factor(over) == 1.0
    assert traffic_factor(unknown) == 1.0


def test_forecast_and_commitment() -> None:
    row = ForecastRow("2026-12", "store_qr", 12_345, 0.2, 8_800)
    assert row.expected_diverted == 2469  # 12,345 × 0.2 = 2,469
    assert row.expected_gmv == 2469 * 8_800
    assert commitment(row.expected_diverted) == 1975  # 80% of 2,469 = 1,975.2
    assert commitment(1000, 75) == 750


def test_lines_must_be_monotonic_in_their_direction() -> None:
    check_lines(DIVERSION)
    check_lines(COST)
    with pytest.raises(Invalid) as exc:
        check_lines(Lines(0, 0.20, 0.05, 0.25), "diversion_rate")
    assert exc.value.code == "metrics.lines_not_monotonic"
    assert exc.value.errors[0].field == "diversion_rate.good"
    with pytest.raises(Invalid) as exc:
        check_lines(Lines(1000, 3000, 2000, 1500, "lower"), "cost")
    assert exc.value.errors[0].field == "cost.normal"
    with pytest.raises(Invalid) as exc:  # equal good and excess lines leave no good band
        check_lines(Lines(0, 1, 2, 2))
    assert exc.value.code == "metrics.lines_not_monotonic"
    with pytest.raises(Invalid) as exc:
        check_lines(Lines(0, 1, float("nan"), 3))
    assert exc.value.code == "metrics.lines_invalid"


def test_bonus_formulas() -> None:
    excess = status_of(0.30, DIVERSION)  # 5 points beyond the excess line
    linear = {"kind": "linear", "per_unit": 100_000, "unit": 0.01}  # ¥1,000 per point
    assert bonus(linear, excess) == 500_000
    assert bonus({**linear, "cap": 300_000}, excess) == 300_000
    tiered = {
        "kind": "tiered",
        "tiers": [{"beyond": 0.05, "amount": 800_000}, {"beyond": 0, "amount": 200_000}],
    }
    assert bonus(tiered, excess) == 800_000
    assert bonus(tiered, status_of(0.26, DIVERSION)) == 200_000
    assert bonus({"kind": "fixed", "amount": 99}, excess) == 99
    assert bonus(linear, status_of(0.21, DIVERSION)) == 0  # below excess: nothing
    # lower is better: 300 fen under the excess line, ¥10 per 100 fen
    assert bonus({"kind": "linear", "per_unit": 1000, "unit": 100}, status_of(1200, COST)) == 3000


@pytest.mark.parametrize(
    ("formula", "field"),
    [
        ({"kind": "python", "expr": "1"}, "bonus.kind"),
        ({"kind": "linear", "per_unit": 5}, "bonus.unit"),
        ({"kind": "linear", "per_unit": 5, "unit": 0}, "bonus.unit"),
        ({"kind": "fixed", "amount": -1}, "bonus.amount"),
        ({"kind": "fixed", "amount": 1, "code": "x"}, "bonus.code"),
        ({"kind": "tiered", "tiers": []}, "bonus.tiers"),
        ({"kind": "tiered", "tiers": [{"beyond": 1}]}, "bonus.tiers.0.amount"),
    ],
)
def test_bad_bonus_formulas_are_refused_by_field(formula: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as exc:
        check_bonus(formula)
    assert exc.value.code == "metrics.bonus_invalid"
    assert exc.value.errors[0].field == field


# ---------------------------------------------------------------- the store and the API

BASE = "/api/v1/brands/a-coffee"


def contract_body(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "key": "2026-h2",
        "name": "2026 下半年",
        "starts_on": "2026-07-01",
        "ends_on": "2026-12-31",
        "kpis": [
            {"kpi": "diversion_rate", "fail": 0, "normal": 0.05, "good": 0.20, "excess": 0.25},
            {
                "kpi": "diverted_customers",
                "fail": 0,
                "normal": 1000,
                "good": 1500,
                "excess": 2000,
                "bonus": {"kind": "linear", "per_unit": 500, "unit": 1, "cap": 100_000},
            },
            {
                "kpi": "cost_per_diverted",
                "fail": 5000,
                "normal": 3000,
                "good": 2000,
                "excess": 1500,
            },
        ],
        "forecast": [
            {
                "month": "2026-11",
                "channel": "store_qr",
                "committed_traffic": 6000,
                "diversion_rate": 0.2,
                "gmv_per_customer": 8000,
                "delivered_traffic": 4000,
            },
            {
                "month": "2026-11",
                "channel": "ecommerce",
                "committed_traffic": 4000,
                "diversion_rate": 0.2,
                "gmv_per_customer": 8000,
                "delivered_traffic": 3000,
            },
        ],
    }
    body.update(extra)
    return body


def _key(db: Session, *scopes: str) -> dict[str, str]:
    from tests.factories import api_key

    return {"Authorization": f"Bearer {api_key(db, 'a-coffee', *scopes)}"}


def test_contracts_over_http(client: Any, db: Session, world: object) -> None:
    h = _key(db, "metrics.read", "metrics.write")
    r = client.post(f"{BASE}/contracts", json=contract_body(), headers=h)
    assert r.status_code == 201, r.text
    out = r.json()
    # defaults from the KPI: cost per diverted customer is lower-is-better and not scaled
    kinds = {k["kpi"]: (k["direction"], k["kind"], k["scaled"]) for k in out["kpis"]}
    assert kinds == {
        "diversion_rate": ("higher", "rate", False),
        "diverted_customers": ("higher", "count", True),
        "cost_per_diverted": ("lower", "ratio", False),
    }
    assert out["commitment_pct"] == 80
    # 6,000 × 0.2 = 1,200 and 4,000 × 0.2 = 800 diverted expected; the agency commits 80%
    assert out["totals"]["expected_diverted"] == 2000
    assert out["totals"]["committed_diverted"] == 1600
    assert out["totals"]["expected_gmv"] == 2000 * 8000
    assert out["traffic_factor"] == pytest.approx(0.7)  # 7,000 delivered of 10,000

    # the stored contract evaluated on actual values: the shortfall scales the count KPI
    from siyu.metrics import contract_store

    shown = contract_store.ContractOut.model_validate(
        client.get(f"{BASE}/contracts/2026-h2", headers=h).json()
    )
    got = {
        s.kpi: s
        for s in contract_store.evaluate_contract(
            shown, {"diversion_rate": 0.19, "diverted_customers": 1100, "cost_per_diverted": 2500}
        )
    }
    assert got["diversion_rate"].line == "normal"
    assert got["diverted_customers"].line == "good"
    assert got["diverted_customers"].effective["excess"] == pytest.approx(1400)
    assert got["cost_per_diverted"].line == "normal"
    assert got["cost_per_diverted"].to_next == pytest.approx(500)
    at21 = contract_store.evaluate_contract(shown, {"diversion_rate": 0.21})
    assert [s.line for s in at21 if s.kpi == "diversion_rate"] == ["good"]
    # 1,500 diverted beyond the scaled excess line of 1,400: 100 × ¥5
    over = contract_store.evaluate_contract(shown, {"diverted_customers": 1500})
    assert [s.bonus for s in over if s.kpi == "diverted_customers"] == [50_000]
    # to date: 46 of the contract's 184 days (Jul 1 … Aug 15) → a quarter gone; 400 diverted
    # so far sit on fail (below the scaled normal line, 700) but the pace projects 400 / 0.25
    # = 1,600, beyond the excess line; a rate is already per unit and projects to itself
    elapsed = contract_store.elapsed_share(shown, date(2026, 7, 1), date(2026, 8, 15))
    assert elapsed == pytest.approx(46 / 184)
    assert contract_store.elapsed_share(shown, date(2026, 8, 1), date(2026, 8, 15)) == 1.0
    pace = {
        s.kpi: s
        for s in contract_store.evaluate_contract(
            shown, {"diverted_customers": 400, "diversion_rate": 0.19}, elapsed=elapsed
        )
    }
    d = pace["diverted_customers"]
    assert d.line == "fail" and d.projected == pytest.approx(1600)
    assert d.projected_line == "excess" and d.elapsed == pytest.approx(0.25)
    r = pace["diversion_rate"]
    assert r.projected == pytest.approx(0.19) and r.projected_line == "normal"

    # lines out of order: a clear error naming the KPI and the line
    bad = contract_body(key="bad")
    bad["kpis"] = [{"kpi": "churn_rate", "fail": 0.5, "normal": 0.2, "good": 0.3, "excess": 0.1}]
    r = client.post(f"{BASE}/contracts", json=bad, headers=h)
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "metrics.lines_not_monotonic"
    assert problem["errors"][0]["field"] == "churn_rate.good"
    bad["kpis"] = [{"kpi": "no_such_kpi", "fail": 0, "normal": 1, "good": 2, "excess": 3}]
    assert client.post(f"{BASE}/contracts", json=bad, headers=h).json()["code"] == (
        "metrics.unknown_contract_kpi"
    )
    assert client.post(f"{BASE}/contracts", json=contract_body(), headers=h).status_code == 409

    # replace: the delivered traffic catches up, the factor goes back to 1
    body = contract_body()
    for row in body["forecast"]:  # type: ignore[attr-defined]
        row["delivered_traffic"] = row["committed_traffic"]
    r = client.put(f"{BASE}/contracts/2026-h2", json=body, headers=h)
    assert r.status_code == 200 and r.json()["traffic_factor"] == 1.0
    assert r.json()["version"] == 2
    assert [c["key"] for c in client.get(f"{BASE}/contracts", headers=h).json()] == ["2026-h2"]
    # reading needs metrics.read, writing metrics.write
    ro = _key(db, "metrics.read")
    assert client.put(f"{BASE}/contracts/2026-h2", json=body, headers=ro).status_code == 403
    assert client.delete(f"{BASE}/contracts/2026-h2", headers=h).status_code == 204
    assert client.get(f"{BASE}/contracts/2026-h2", headers=h).status_code == 404


def test_store_managers_read_contracts_but_cannot_write_them(db: Session, world: object) -> None:
    from siyu.core.errors import Forbidden
    from siyu.core.tenancy import SYSTEM
    from siyu.metrics import contract_store
    from siyu.org import auth, queries
    from siyu.org.models import Staff

    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    contract_store.create_contract(
        db, SYSTEM, brand, contract_store.ContractIn.model_validate(contract_body())
    )
    staff = db.scalar(select(Staff).where(Staff.username == "a.sh01mgr"))
    assert staff is not None
    actor = auth.actor_for_staff(db, staff)
    assert [c.key for c in contract_store.list_contracts(db, actor, brand)] == ["2026-h2"]
    with pytest.raises(Forbidden):
        contract_store.delete_contract(db, actor, brand, "2026-h2")
