"""Customer-value models: the published CDNOW estimates from raw transactions, plain-Python
references for the summary, an exact simulator for the predictions, and RFM on a tiny table.

The CDNOW 1/10 sample (2,357 customers who first bought in Q1 1997, 6,919 purchase records)
ships inside the ``lifetimes`` wheel, a dev dependency used only for its data files: its
package cannot be imported here (it imports ``pkg_resources``), and is not needed.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu.core.money import parse_yuan
from siyu.tags import value
from siyu.tags.value_bench import bench, simulate_bgnbd


def _cdnow_file(name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution("Lifetimes")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"lifetimes/datasets/{name}")))
    return path if path.exists() else None


CDNOW = _cdnow_file("CDNOW_sample.txt")
needs_cdnow = pytest.mark.skipif(
    CDNOW is None,
    reason="CDNOW_sample.txt not installed: it comes with the dev dependency lifetimes>=0.11",
)
CAL_END = date(1997, 9, 30)  # 39 weeks from 1997-01-01, inclusive
HOLDOUT_END = date(1998, 6, 30)  # weeks 40-78

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
# Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves", JMR (in dollars).
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def _cdnow_orders() -> pa.Table:
    """The raw records: sample customer id, date, dollars (parsed exactly into cents)."""
    assert CDNOW is not None
    ids, stamps, cents = [], [], []
    for line in CDNOW.read_text().splitlines():
        _master, sample_id, day, _cds, dollars = line.split()
        ids.append(str(int(sample_id)))
        stamps.append(datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC))
        cents.append(parse_yuan(dollars))  # two decimals: "29.33" -> 2933
    return pa.table(
        {
            "customer_id": pa.array(ids),
            "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "amount_fen": pa.array(cents, pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def cdnow() -> value.Summary:
    return value.summarise_table(_cdnow_orders(), CAL_END, HOLDOUT_END, unit="weeks")


@pytest.fixture(scope="module")
def cdnow_model(cdnow: value.Summary) -> dict[str, Any]:
    return value.fit(cdnow)


# --- CDNOW: the published numbers ---------------------------------------------------------


@needs_cdnow
def test_cdnow_summary_matches_the_published_summary(cdnow: value.Summary) -> None:
    # given the summary the authors published with the data (2-decimal weeks and dollars)
    ref_path = _cdnow_file("cdnow_customers_summary_with_transactions.csv")
    assert ref_path is not None
    with ref_path.open() as fh:
        ref = {row["ID"]: row for row in csv.DictReader(fh)}
    # then the raw transactions give the same customers, counts and statistics
    assert len(cdnow) == len(ref) == 2357
    assert int((cdnow.frequency > 0).sum()) == 946
    for i, cid in enumerate(cdnow.customer_id.to_pylist()):
        row = ref[cid]
        assert cdnow.frequency[i] == int(row["x"])
        assert abs(cdnow.recency[i] - float(row["t_x"])) <= 0.005 + 1e-9
        assert abs(cdnow.T[i] - float(row["T"])) <= 0.005 + 1e-9
        assert abs(cdnow.monetary[i] / 100 - float(row["zbar"])) <= 0.005 + 1e-9
    # first purchases all in Q1 1997: at least 183 days (1997-03-31 .. 09-30) of age
    assert cdnow.T.min() >= 183 / 7 - 1e-12
    assert cdnow.T.max() == pytest.approx(272 / 7)


@needs_cdnow
def test_cdnow_bgnbd_reproduces_the_published_estimates(cdnow_model: dict[str, Any]) -> None:
    fitted = cdnow_model["bgnbd"]
    for name, published in PUBLISHED_BGNBD.items():
        assert abs(fitted[name] - published) <= 0.01, (name, fitted[name])
    assert abs(cdnow_model["meta"]["log_likelihood"]["bgnbd"] - PUBLISHED_BGNBD_LL) <= 0.05
    assert cdnow_model["meta"]["converged"] == {"bgnbd": True, "gamma_gamma": True}


@needs_cdnow
def test_cdnow_gamma_gamma_reproduces_the_published_estimates(
    cdnow: value.Summary, cdnow_model: dict[str, Any]
) -> None:
    # given the 946 repeat buyers' mean repeat-purchase value, in dollars as published
    repeat = cdnow.frequency > 0
    dollars, _ = value.fit_gamma_gamma(cdnow.frequency[repeat], cdnow.monetary[repeat] / 100)
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert abs(getattr(dollars, name) - published) <= 0.01, (name, getattr(dollars, name))
    # and gamma is a scale: the fit in fen has the same p, q and 100x gamma
    fen = cdnow_model["gamma_gamma"]
    assert cdnow_model["meta"]["spenders"] == 946
    assert fen["p"] == pytest.approx(dollars.p, rel=1e-6)
    assert fen["q"] == pytest.approx(dollars.q, rel=1e-6)
    assert fen["gamma"] == pytest.approx(100 * dollars.gamma, rel=1e-6)


@needs_cdnow
def test_cdnow_holdout_forecast_is_close_to_what_happened(
    cdnow: value.Summary, cdnow_model: dict[str, Any]
) -> None:
    # given the 39-week holdout (1997-10-01 .. 1998-06-30)
    bg, _ = value.models_from_dict(cdnow_model)
    assert cdnow.holdout is not None and cdnow.holdout_length == pytest.approx(39.0)
    actual = int(cdnow.holdout.sum())
    # when each customer's conditional expectation (eq. 10) is summed
    predicted = float(
        value.expected_purchases(bg, 39.0, cdnow.frequency, cdnow.recency, cdnow.T).sum()
    )
    # and, as the paper's tracking plot does, the cohort's unconditional expectation (eq. 7)
    tracking = float(
        (
            value.expected_purchases_new(bg, cdnow.T + 39.0)
            - value.expected_purchases_new(bg, cdnow.T)
        ).sum()
    )
    # then: 1,882 repeat purchase days happened (1,959 raw records); the model expects
    # 1,653 (conditional) and 1,667 (tracking). BG/NBD runs a little short on CDNOW's
    # holdout — the paper's own tracking plot sits under the actual curve in weeks 40-78 —
    # so the bound is 15%, not a few percent; the simulated test below holds predictions to
    # 2% where the model is true.
    assert actual == 1882
    assert abs(predicted / actual - 1) < 0.15
    assert abs(tracking / actual - 1) < 0.15
    assert predicted == pytest.approx(1653.4, abs=0.5)


@needs_cdnow
def test_reported_log_likelihoods_are_the_per_customer_formulas_summed(
    cdnow: value.Summary, cdnow_model: dict[str, Any]
) -> None:
    # the fit works on compressed, rescaled data; the plain formulas must agree with it
    bg, gg = value.models_from_dict(cdnow_model)
    x, t_x, T, m = cdnow.frequency, cdnow.recency, cdnow.T, cdnow.monetary
    ll = cdnow_model["meta"]["log_likelihood"]
    assert value.bgnbd_log_likelihood(bg, x, t_x, T).sum() == pytest.approx(ll["bgnbd"])
    repeat = x > 0
    gg_ll = value.gamma_gamma_log_likelihood(gg, x[repeat], m[repeat]).sum()
    assert gg_ll == pytest.approx(ll["gamma_gamma"])


@needs_cdnow
def test_fit_is_a_plain_json_dict_and_deterministic(cdnow: value.Summary) -> None:
    first, second = value.fit(cdnow), value.fit(cdnow)
    assert first == second
    assert set(first) == {"bgnbd", "gamma_gamma", "meta"}
    assert set(first["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(first["gamma_gamma"]) == {"p", "q", "gamma"}
    meta = first["meta"]
    assert (meta["customers"], meta["repeaters"], meta["time_unit"]) == (2357, 946, "weeks")
    assert json.loads(json.dumps(first)) == first


# --- model arithmetic ----------------------------------------------------------------------

BG = value.BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)


def _eq10_as_printed(t: float, x: Any, t_x: Any, T: Any) -> Any:
    from scipy.special import hyp2f1

    r, alpha, a, b = BG.r, BG.alpha, BG.a, BG.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    return head / (1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def test_expectations_equal_the_paper_formulas() -> None:
    from scipy.special import hyp2f1

    rng = np.random.default_rng(1)
    x = rng.integers(0, 25, 500).astype(float)
    T = rng.uniform(1, 60, 500)
    t_x = np.where(x > 0, T * rng.random(500), 0.0)
    for t in (1.0, 39.0, 365 / 7):
        ours = value.expected_purchases(BG, t, x, t_x, T)
        np.testing.assert_allclose(ours, _eq10_as_printed(t, x, t_x, T), rtol=1e-9)
    r, alpha, a, b = BG.r, BG.alpha, BG.a, BG.b
    eq7 = (
        (a + b - 1)
        / (a - 1)
        * (1 - (alpha / (alpha + 39)) ** r * hyp2f1(r, b, a + b - 1, 39 / (alpha + 39)))
    )
    assert float(value.expected_purchases_new(BG, 39.0)) == pytest.approx(eq7, rel=1e-12)


def test_heavy_buyers_stay_finite_where_the_printed_formula_overflows() -> None:
    x, t_x, T = np.array([2000.0]), np.array([100.0]), np.array([104.0])
    with np.errstate(all="ignore"):
        assert not np.isfinite(_eq10_as_printed(52.0, x, t_x, T)).all()
    ours = value.expected_purchases(BG, 52.0, x, t_x, T)
    assert np.isfinite(ours).all() and ours[0] >= 0


def test_p_alive_is_a_probability_and_moves_the_right_way() -> None:
    T = 40.0
    t_x = np.linspace(0.5, T, 80)
    for x in (1, 2, 5, 20):
        alive = value.p_alive(BG, np.full_like(t_x, x), t_x, np.full_like(t_x, T))
        assert ((alive >= 0) & (alive <= 1)).all()
        assert (np.diff(alive) > 0).all()  # more recent last purchase, more likely alive
        assert alive[-1] == pytest.approx(1 / (1 + BG.a / (BG.b + x - 1)))
    # the same history looks less alive the longer the silence since
    older = value.p_alive(BG, np.full(5, 3.0), np.full(5, 10.0), np.array([10, 20, 30, 40, 80.0]))
    assert (np.diff(older) < 0).all()
    # no repeat purchase: alive by the model's assumption (drop-out only after a purchase)
    assert (value.p_alive(BG, np.zeros(3), np.zeros(3), np.array([1.0, 10, 100])) == 1).all()


def test_simulated_customers_give_back_parameters_and_holdout() -> None:
    # given 50,000 customers drawn from the BG/NBD story itself, observed 26-39 weeks
    true = value.BgNbd(r=0.25, alpha=4.0, a=0.8, b=2.5)
    rng = np.random.default_rng(0)
    n, hold = 50_000, 39.0
    T = rng.uniform(26, 39, n)
    who, when = simulate_bgnbd(true, T + hold, rng)
    cal = when <= T[who]
    x = np.bincount(who[cal], minlength=n)
    t_x = np.zeros(n)
    np.maximum.at(t_x, who[cal], when[cal])
    actual = int((~cal).sum())
    # when fitted
    bg, info = value.fit_bgnbd(x, t_x, T)
    # then the parameters come back and the holdout is forecast to within 2%
    assert info.converged
    for name in ("r", "alpha", "a", "b"):
        assert getattr(bg, name) == pytest.approx(getattr(true, name), rel=0.1), name
    predicted = float(value.expected_purchases(bg, hold, x, t_x, T).sum())
    assert abs(predicted / actual - 1) < 0.02


def test_expected_spend_shrinks_towards_the_population_mean() -> None:
    gg = value.GammaGamma(p=6.25, q=3.74, gamma=15.44)
    prior = gg.p * gg.gamma / (gg.q - 1)
    spend = value.expected_spend(gg, np.array([0, 1, 10, 1000]), np.array([0.0, 80.0, 80.0, 80.0]))
    assert spend[0] == pytest.approx(prior)
    assert prior < spend[1] < spend[2] < spend[3] < 80.0
    with pytest.raises(ValueError):
        value.expected_spend(value.GammaGamma(1.0, 0.9, 1.0), np.ones(1), np.ones(1))


# --- summary --------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_summary_merges_days_excludes_late_customers_and_counts_holdout() -> None:
    ids = ["a", "a", "a", "a", "b", "c", "c"]
    ts = [
        _utc("2026-01-01T02:00"),
        _utc("2026-01-01T09:00"),  # same day: one purchase of 100 + 50
        _utc("2026-01-15T03:00"),
        _utc("2026-02-10T03:00"),  # holdout
        _utc("2026-01-20T03:00"),
        _utc("2026-02-01T03:00"),  # first purchase after calibration: excluded
        _utc("2026-02-02T03:00"),
    ]
    fen = [100, 50, 400, 999, 70, 1, 1]
    s = value.summarise(ids, ts, fen, date(2026, 1, 31), date(2026, 2, 28), unit="days")
    assert s.customer_id.to_pylist() == ["a", "b"]
    assert s.frequency.tolist() == [1, 0]
    assert s.recency.tolist() == [14.0, 0.0]
    assert s.T.tolist() == [30.0, 11.0]
    assert s.monetary.tolist() == [400.0, 0.0]
    assert s.holdout is not None and s.holdout.tolist() == [1, 0]
    assert s.to_arrow().num_rows == 2


def test_summary_days_are_brand_local() -> None:
    # 15:00 and 17:00 UTC are one UTC day but two days in Shanghai (23:00 and 01:00)
    ts = [_utc("2026-01-01T15:00"), _utc("2026-01-01T17:00")]
    args = (["a", "a"], ts, [100, 200], date(2026, 1, 31))
    assert value.summarise(*args, tz="UTC").frequency.tolist() == [0]
    local = value.summarise(*args, tz="Asia/Shanghai", unit="days")
    assert (local.frequency.tolist(), local.recency.tolist(), local.T.tolist()) == ([1], [1], [30])
    # a zone with DST over the data's range takes pyarrow's general path: New York is
    # UTC-5 in January (10:00, 12:00: one day) and UTC-4 in July (03:00Z is June 30 23:00)
    ny = value.summarise(
        ["a", "a", "b"],
        [*ts, _utc("2026-07-01T03:00")],
        [1, 1, 1],
        date(2026, 7, 31),
        tz="America/New_York",
        unit="days",
    )
    assert ny.frequency.tolist() == [0, 0] and ny.T.tolist() == [211, 31]


def test_summary_refuses_ambiguous_or_wrong_inputs() -> None:
    naive = [datetime(2026, 1, 1, 12)]
    with pytest.raises(ValueError, match="naive"):
        value.summarise(["a"], naive, [1], date(2026, 1, 31))
    with pytest.raises(ValueError, match="negative"):
        value.summarise(["a"], [date(2026, 1, 1)], [-5], date(2026, 1, 31))
    with pytest.raises(ValueError, match="integer fen"):
        value.summarise(["a"], [date(2026, 1, 1)], [1.5], date(2026, 1, 31))
    with pytest.raises(ValueError, match="not a datetime"):
        value.summarise(["a"], [date(2026, 1, 1)], [1], datetime(2026, 1, 31, tzinfo=UTC))
    with pytest.raises(value.NotEnoughData):
        value.fit(value.summarise(["a", "b"], [date(2026, 1, 1)] * 2, [1, 1], date(2026, 1, 31)))


def _reference_summary(rows: list[tuple[str, int, int]], cal: int, end: int) -> dict[str, tuple]:
    """Plain Python: per customer, per day spend, then the definitions in the docstring."""
    spend: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for cid, day, fen in rows:
        if day <= end:
            spend[cid][day] += fen
    out = {}
    for cid, by_day in spend.items():
        cal_days = sorted(d for d in by_day if d <= cal)
        if not cal_days:
            continue
        x = len(cal_days) - 1
        repeat = sum(by_day[d] for d in cal_days[1:])
        holdout = sum(1 for d in by_day if d > cal)
        out[cid] = (
            x,
            cal_days[-1] - cal_days[0],
            cal - cal_days[0],
            repeat / x if x else 0.0,
            holdout,
        )
    return out


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from("abcdefg"), st.integers(0, 40), st.integers(0, 10_000)),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_summary_equals_a_plain_reference_in_any_row_order(
    rows: list[tuple[str, int, int]], seed: int
) -> None:
    start = date(2026, 1, 1)
    cal, end = 25, 33
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = [rows[i] for i in order]
    s = value.summarise(
        [r[0] for r in shuffled],
        [start + timedelta(days=r[1]) for r in shuffled],
        [r[2] for r in shuffled],
        start + timedelta(days=cal),
        start + timedelta(days=end),
        unit="days",
    )
    assert s.holdout is not None
    got = {
        cid: (int(s.frequency[i]), s.recency[i], s.T[i], s.monetary[i], int(s.holdout[i]))
        for i, cid in enumerate(s.customer_id.to_pylist())
    }
    expected = _reference_summary(rows, cal, end)
    assert got.keys() == expected.keys()
    for cid, stats in expected.items():
        assert got[cid] == pytest.approx(stats), cid


# --- RFM ------------------------------------------------------------------------------------


def _noon_shanghai(day: str) -> datetime:
    return _utc(f"{day}T04:00")


def test_rfm_with_brand_cut_points() -> None:
    # given a brand's bands and a tiny order table (as of 2026-06-30, 365-day window)
    rows = [
        ("A", "2026-06-25", 10_000),
        ("A", "2026-06-25", 5_000),  # same day: one purchase
        ("A", "2026-05-01", 30_000),
        ("B", "2025-12-01", 2_000),
        ("C", "2025-06-30", 9_999),  # the day before the window opens: not counted
        ("C", "2026-03-01", 100_000),
        ("D", "2025-01-01", 50_000),  # nothing in the window: not scored
        *[
            ("E", day, 500)
            for day in (
                "2026-06-30",
                "2026-06-01",
                "2026-05-01",
                "2026-04-01",
                "2026-03-01",
                "2026-02-01",
            )
        ],
    ]
    cuts = value.RfmCuts(
        recency=(30, 60, 90, 180),
        frequency=(2, 3, 5, 8),
        monetary=(5_000, 20_000, 50_000, 100_000),
    )
    # when scored
    rfm = value.rfm(
        [r[0] for r in rows],
        [_noon_shanghai(r[1]) for r in rows],
        [r[2] for r in rows],
        as_of=date(2026, 6, 30),
        window_days=365,
        cuts=cuts,
        tz="Asia/Shanghai",
    )
    # then
    got = {
        cid: (int(rec), int(f), int(m), int(rs), int(fs), int(ms), code)
        for cid, rec, f, m, rs, fs, ms, code in zip(
            rfm.customer_id.to_pylist(),
            rfm.recency_days,
            rfm.frequency,
            rfm.monetary_fen,
            rfm.r_score,
            rfm.f_score,
            rfm.m_score,
            rfm.codes(),
            strict=True,
        )
    }
    assert got == {
        "A": (5, 2, 45_000, 5, 2, 3, "important_develop"),
        "B": (211, 1, 2_000, 1, 1, 1, "general_retain"),
        "C": (121, 1, 100_000, 2, 1, 5, "important_retain"),
        "E": (0, 6, 3_000, 5, 4, 1, "general_value"),
    }
    assert rfm.method == {"recency": "cuts", "frequency": "cuts", "monetary": "cuts"}
    labels = dict(zip(rfm.customer_id.to_pylist(), rfm.labels("zh-CN"), strict=True))
    assert labels["A"] == "重要发展客户" and labels["E"] == "一般价值客户"
    assert rfm.labels("en")[0] in {s.en for s in value.SEGMENTS}


def test_rfm_quintiles_give_tied_customers_one_score() -> None:
    recency = np.arange(10)  # 0 (best) .. 9 days
    frequency = np.array([1, 1, 1, 1, 1, 1, 2, 2, 3, 9])
    monetary = np.arange(10) * 1_000
    r, f, m, segment = value.rfm_scores(recency, frequency, monetary)
    assert r.tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert m.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert f.tolist() == [2, 2, 2, 2, 2, 2, 4, 4, 5, 5]
    codes = [value.SEGMENTS[i].code for i in segment]
    assert codes[0] == "general_develop"  # R5 high, F2 low, M1 low
    assert codes[9] == "important_maintain"  # R1 low, F5 high, M5 high


def test_rfm_cut_points_must_be_four_increasing_numbers() -> None:
    with pytest.raises(ValueError):
        value.RfmCuts(recency=(30, 30, 90, 180))
    with pytest.raises(ValueError):
        value.RfmCuts(monetary=(1, 2, 3))  # type: ignore[arg-type]


# --- value and bench ------------------------------------------------------------------------


@needs_cdnow
def test_365_day_value_is_purchases_times_spend_and_discounting_lowers_it(
    cdnow: value.Summary, cdnow_model: dict[str, Any]
) -> None:
    plain = value.predict(cdnow, cdnow_model)
    assert plain.value_fen.dtype == np.int64
    np.testing.assert_array_equal(plain.value_fen, np.rint(plain.purchases * plain.spend_fen))
    assert ((plain.p_alive >= 0) & (plain.p_alive <= 1)).all()
    discounted = value.predict(cdnow, cdnow_model, discount_rate=0.1)
    assert (discounted.value_fen <= plain.value_fen).all()
    assert discounted.value_fen.sum() < plain.value_fen.sum()
    assert plain.to_arrow().num_rows == len(cdnow)
    in_days = value.summarise_table(_cdnow_orders(), CAL_END, unit="days")
    with pytest.raises(ValueError, match="weeks"):
        value.predict(in_days, cdnow_model)


def test_bench_runs_small() -> None:
    result = bench(customers=2_000, transactions=30_000)
    assert result["transactions"] == 30_000
    assert result["converged"] == {"bgnbd": True, "gamma_gamma": True}
    assert result["summary_s"] >= 0 and result["fit_s"] >= 0
