"""Cohorts and channel value on the hand-built story of ``test_metrics_kpis`` (see there).

Acquisitions (first WeCom add): E 08-01 (ad), F 09-01 (poster), A 10-05 (poster),
B 11-02 (poster), C 11-03 (ad), G 11-25 (ad). As of 2026-12-20 00:00 UTC.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.metrics import cohorts as co
from siyu.metrics.errors import MetricsInvalid
from tests.test_metrics_kpis import AS_OF, story  # noqa: F401 - the fixture

START, END = date(2026, 8, 1), date(2026, 11, 30)


def test_retention_and_repurchase_cohorts(db: Session, story: Any) -> None:  # noqa: F811
    t = co.cohorts(db, SYSTEM, story, start=START, end=END, months=2, as_of=AS_OF)
    got = {c.month: (c.size, c.retention, c.repurchase) for c in t.cohorts}
    assert got == {
        # E never leaves; no order since the add (its 9999 was in 2025)
        "2026-08": (1, [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
        # F is deleted on 11-20: a friend at the end of Sep and Oct, not at the end of Nov
        "2026-09": (1, [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]),
        # A: second order 11-20 → repurchased by the end of Nov (k = 1); Dec not over (None)
        "2026-10": (1, [1.0, 1.0, None], [0.0, 1.0, None]),
        # B deleted 11-15; C and G still friends on 12-01 → 2/3; nobody bought twice
        "2026-11": (3, [pytest.approx(2 / 3, abs=1e-6), None, None], [0.0, None, None]),
    }


def test_cohorts_by_channel_code(db: Session, story: Any) -> None:  # noqa: F811
    t = co.cohorts(db, SYSTEM, story, start=date(2026, 11, 1), end=END, by="channel_code",
                   months=0, as_of=AS_OF)  # fmt: skip
    got = {c.group: (c.size, c.retention) for c in t.cohorts}
    # November: poster = B (deleted 11-15); ad = C, G (both still friends on 12-01)
    assert got == {"poster": (1, [0.0]), "ad": (2, [1.0])}


def test_channel_value_next_to_cost(db: Session, story: Any) -> None:  # noqa: F811
    rows = {r.group: r for r in co.channel_value(db, SYSTEM, story, start=START, end=END,
                                                  as_of=AS_OF)}  # fmt: skip
    poster, ad = rows["poster"], rows["ad"]
    # poster: F, A, B at 150 fen each = 450; net paid since their add: A 15000 - 2000 = 13000,
    # B 20000, F 0 → 33000, i.e. 11000 per customer; 33000 / 450 = 73.3333
    assert (poster.customers, poster.cost_fen, poster.cost_per_customer_fen) == (3, 450, 150)
    assert (poster.value_fen, poster.value_per_customer_fen) == (33000, 11000)
    assert poster.value_to_cost == pytest.approx(73.3333)
    # observed days (10:00 Shanghai = 02:00 UTC adds): A 75.92, F 109.92, B 47.92 → 77.9
    assert poster.observed_days == pytest.approx(77.9)
    # ad: E, C, G at 1800 = 5400, no order after their add (C's was before it)
    assert (ad.customers, ad.cost_fen, ad.value_fen, ad.value_to_cost) == (3, 5400, 0, 0.0)
    by_store = {r.group: r.customers for r in co.channel_value(
        db, SYSTEM, story, start=START, end=END, by="store", as_of=AS_OF)}  # fmt: skip
    # SH01: A, B, G; SH02: C, F; GZ01: E
    assert by_store == {"A-SH01": 3, "A-SH02": 2, "A-GZ01": 1}


def test_bad_dimension(db: Session, story: Any) -> None:  # noqa: F811
    with pytest.raises(MetricsInvalid) as exc:
        co.cohorts(db, SYSTEM, story, start=START, end=END, by="guide")
    assert exc.value.code == "metrics.bad_dimension"


def test_customers_behind_a_cohort_cell(db: Session, story: Any) -> None:  # noqa: F811
    from siyu.metrics import scope
    from tests.test_metrics_kpis import customer_id

    dims = scope.load(db, SYSTEM, story)
    B, C, G = (customer_id(db, story, w) for w in "BCG")

    def ids(**kw: Any) -> tuple[set[str], int]:
        got, total = co.cohort_customer_ids(dims, as_of=AS_OF, **kw)
        return set(got), total

    # November's cohort: B, C, G; at the end of November (k = 0) C and G are still friends
    assert ids(month=date(2026, 11, 1)) == ({B, C, G}, 3)
    assert ids(month=date(2026, 11, 1), k=0, measure="retained") == ({C, G}, 2)
    assert ids(month=date(2026, 11, 1), k=0, measure="repurchased") == (set(), 0)
    # October's (A): repurchased by the end of November (k = 1), not of October (k = 0)
    a = customer_id(db, story, "A")
    assert ids(month=date(2026, 10, 1), k=1, measure="repurchased") == ({a}, 1)
    assert ids(month=date(2026, 10, 1), k=0, measure="repurchased") == (set(), 0)
    # by channel code: November's poster cohort is B, deleted before the month ended
    assert ids(month=date(2026, 11, 1), by="channel_code", group="poster") == ({B}, 1)
    assert ids(month=date(2026, 11, 1), by="channel_code", group="poster", measure="retained") == (
        set(),
        0,
    )
    # a page, and only the days of the table that showed the cell
    got, total = co.cohort_customer_ids(
        dims, month=date(2026, 11, 1), page_size=2, page=2, as_of=AS_OF
    )
    assert total == 3 and len(got) == 1
    assert ids(month=date(2026, 11, 1), within=(date(2026, 11, 1), date(2026, 11, 10))) == (
        {B, C},
        2,
    )
    with pytest.raises(MetricsInvalid) as exc:
        co.cohort_customer_ids(dims, month=date(2026, 11, 1), measure="gmv")
    assert exc.value.code == "metrics.bad_measure"
