"""The metrics API over HTTP on the hand-built story of ``test_metrics_kpis``: the KPI table,
a store manager's scope (acceptance 5, computation side), masked drill-downs, cohorts,
channel value, omni-channel GMV, SOP effect and channel code costs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tests.factories import login
from tests.test_metrics_kpis import story  # noqa: F401 - the fixture

BASE = "/api/v1/brands/a-coffee/metrics"
NOV = {"start": "2026-11-01", "end": "2026-11-30", "as_of": "2026-12-20T00:00:00Z"}


def test_kpi_table_and_drill_down(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    login(client, "a.admin")
    r = client.get(f"{BASE}/kpis", params=NOV)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scoped"] is False and [row["group"] for row in body["rows"]] == ["all"]
    values = body["rows"][0]["values"]
    assert values["diverted_customers"]["value"] == 3  # B, C, G
    assert values["gmv"]["value"] == 35000
    assert values["koc_content_published"] == {
        "value": 0,
        "numerator": 0,
        "denominator": None,
        "note": None,
    }
    r = client.get(
        f"{BASE}/kpis", params={**NOV, "group_by": "store", "kpi": ["gmv", "churn_rate"]}
    )
    assert r.status_code == 200, r.text
    rows = {row["group"]: row["values"] for row in r.json()["rows"]}
    assert set(rows) == {"A-SH01", "A-SH02", "A-GZ01"} and set(rows["A-SH01"]) == {
        "gmv", "churn_rate",
    }  # fmt: skip
    # churn in SH02: F was a friend on 11-01 and was deleted on 11-20 → 1 / 1
    assert rows["A-SH02"]["churn_rate"]["value"] == 1.0
    r = client.get(f"{BASE}/kpis/churn_rate/customers", params=NOV)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 2  # E and F
    assert sorted(c["phone"] for c in page["customers"]) == ["139****0005", "139****0006"]


def test_store_manager_sees_only_their_customers(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    login(client, "a.sh01mgr")
    r = client.get(f"{BASE}/kpis", params={**NOV, "group_by": "store"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scoped"] is True
    assert [row["group"] for row in body["rows"]] == ["A-SH01"]
    assert body["rows"][0]["customers"] == 3  # A, B, G
    # drill-down: everyone first seen in Nov the manager may see (B, G), never C or D
    r = client.get(f"{BASE}/kpis/diversion_rate/customers", params={**NOV, "side": "denominator"})
    assert r.status_code == 200, r.text
    phones = sorted(c["phone"] for c in r.json()["customers"])
    assert phones == ["139****0002", "139****0007"]
    # asking for another store's group gives nothing, not an error that leaks
    r = client.get(
        f"{BASE}/kpis/gmv/customers", params={**NOV, "group_by": "store", "group": "A-SH02"}
    )
    assert r.status_code == 200 and r.json()["total"] == 0
    # cohorts and channel value count their customers only (A, B, G acquired Oct-Nov)
    since_aug = {"start": "2026-08-01", "end": "2026-11-30", "as_of": NOV["as_of"]}
    r = client.get(f"{BASE}/channel-value", params=since_aug)
    assert r.status_code == 200, r.text
    assert sum(row["customers"] for row in r.json()) == 3
    # and they may not set channel costs
    r = client.put(f"{BASE}/channel-codes/poster", json={"cost_per_customer_fen": 1})
    assert r.status_code == 403


def test_cohorts_value_omnichannel_and_costs(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    headers = login(client, "a.admin")
    period = {"start": "2026-08-01", "end": "2026-11-30", "as_of": NOV["as_of"]}
    r = client.get(f"{BASE}/cohorts", params={**period, "months": 1})
    assert r.status_code == 200, r.text
    assert {c["month"]: c["size"] for c in r.json()["cohorts"]} == {
        "2026-08": 1, "2026-09": 1, "2026-10": 1, "2026-11": 3,
    }  # fmt: skip
    r = client.get(f"{BASE}/channel-value", params=period)
    assert {row["group"]: row["cost_per_customer_fen"] for row in r.json()} == {
        "ad": 1800, "poster": 150,
    }  # fmt: skip
    r = client.put(
        f"{BASE}/channel-codes/poster",
        json={"name": "门店海报", "cost_per_customer_fen": 300},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = client.get(f"{BASE}/channel-value", params=period)
    assert {row["group"]: row["cost_fen"] for row in r.json()}["poster"] == 900  # 3 × 300
    r = client.get(f"{BASE}/channel-codes")
    assert [c["code"] for c in r.json()] == ["ad", "poster"]
    r = client.get(f"{BASE}/omnichannel", params=NOV)
    assert r.status_code == 200, r.text
    assert [row["channel"] for row in r.json()] == ["mini_mall", "pos", "tmall"]
    r = client.get(f"{BASE}/definitions")
    assert len(r.json()) == 16


def test_bad_requests_are_clear(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    login(client, "a.admin")
    r = client.get(f"{BASE}/kpis", params={**NOV, "kpi": ["nps"]})
    assert r.status_code == 422 and r.json()["code"] == "metrics.unknown_kpi"
    r = client.get(f"{BASE}/kpis", params={"start": "2026-11-30", "end": "2026-11-01"})
    assert r.status_code == 422 and r.json()["code"] == "metrics.bad_period"
    r = client.get(f"{BASE}/kpis", params={**NOV, "group_by": "city"})
    assert r.status_code == 422
    r = client.get(f"{BASE}/kpis/koc_customers_brought/customers", params=NOV)
    assert r.status_code == 200 and r.json()["total"] == 0
    r = client.get(f"{BASE}/sops/nope/effect")
    assert r.status_code == 404 and r.json()["code"] == "metrics.sop_not_found"
