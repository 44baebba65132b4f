"""Synthetic customers for the value models: an exact BG/NBD simulator and a benchmark.

:func:`simulate_bgnbd` draws repeat-purchase times from the BG/NBD story itself, so a fit
on its output must recover the parameters and the predictions must match what happens
next (the tests use it). :func:`bench` builds a brand-sized order table from it and times
summary, fit and predictions (``siyu bench value``).
"""

from __future__ import annotations

import gc
import time
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from siyu.tags.value_models import BgNbd

if TYPE_CHECKING:
    from numpy.typing import NDArray


def simulate_bgnbd(
    params: BgNbd, length: Any, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Repeat-purchase times of customers observed for ``length`` time units each.

    Returns (customer index, time since the first purchase), grouped by customer in time
    order. Per customer: λ ~ Gamma(r, α), p ~ Beta(a, b); the customer drops out after the
    K-th repeat purchase, K ~ Geometric(p); M ~ Poisson(λ·length) purchases would happen in
    (0, length] if they never dropped out, and they make the first n = min(K, M) of them.
    Given M, those are the first n order statistics of M uniforms, drawn without the other
    M - n as U(j) = S_j / (S_n + G), S_j a sum of j Exp(1) and G ~ Gamma(M + 1 - n): exact,
    and the work is proportional to the purchases actually made.
    """
    length = np.asarray(length, dtype=np.float64)
    n_customers = len(length)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n_customers)
    p = rng.beta(params.a, params.b, n_customers)
    k = rng.geometric(np.clip(p, 1e-12, 1.0))
    m = rng.poisson(lam * length)
    n = np.minimum(k, m)
    who = np.repeat(np.arange(n_customers), n)
    spacing = rng.exponential(1.0, len(who))
    csum = np.cumsum(spacing)
    ends = np.cumsum(n)
    before = np.concatenate([[0.0], csum])[ends - n]  # running total before each customer
    within = csum - before[who]
    rest = rng.gamma(m + 1 - n, 1.0)  # the other M + 1 - n spacings; shape >= 1
    total = np.where(n > 0, within[np.maximum(ends - 1, 0)] if len(within) else 0.0, 0.0)
    times = within / (total + rest)[who] * length[who]
    return who.astype(np.int64), times


def make_orders(customers: int, transactions: int, seed: int = 7) -> tuple[Any, date]:
    """An order table (``customer_id``, ``ts``, ``amount_fen``) and its calibration end.

    First purchases spread over two years; repeat purchases from a BG/NBD simulation
    (heavy buyers: about 19 repeat days per customer), then trimmed or topped up with
    same-day second orders to exactly ``transactions`` rows, ordered by time as a lake
    stores them (so customer ids arrive in random order).
    """
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    rng = np.random.default_rng(seed)
    end = date(2026, 6, 30)
    end_day = (end - date(1970, 1, 1)).days
    age_days = rng.integers(0, 730, customers)
    first_day = end_day - age_days
    params = BgNbd(r=3.0, alpha=5.0, a=0.9, b=18.0)
    who, weeks = simulate_bgnbd(params, age_days / 7.0, rng)
    day = np.concatenate([first_day, first_day[who] + (weeks * 7.0).astype(np.int64)])
    cust = np.concatenate([np.arange(customers), who])
    extra = transactions - len(day)
    if extra < 0:  # drop random repeat rows, never a first purchase
        drop = customers + rng.choice(len(who), -extra, replace=False)
        keep = np.ones(len(day), dtype=bool)
        keep[drop] = False
        day, cust = day[keep], cust[keep]
    elif extra > 0:  # a second order on a day the customer already bought
        copy = rng.integers(0, len(day), extra)
        day, cust = np.concatenate([day, day[copy]]), np.concatenate([cust, cust[copy]])
    # Gamma-Gamma spend: each customer's rate nu ~ Gamma(q=4, gamma=7500 fen), each order
    # ~ Gamma(p=6, nu): a mean order of p*gamma/(q-1) = 15,000 fen (¥150).
    nu = rng.gamma(4.0, 1.0 / 7_500.0, customers)
    amount = np.maximum(np.rint(rng.gamma(6.0, 1.0 / nu[cust])), 1).astype(np.int64)
    # Brand-local days to UTC instants: Asia/Shanghai midnight is 16:00 UTC the day before.
    us = (day * 86_400 - 8 * 3600 + rng.integers(0, 86_400, len(day))) * 1_000_000
    order = np.argsort(us, kind="stable")
    ids = pa.array([f"c{i:09d}" for i in range(customers)])
    table = pa.table(
        {
            "customer_id": ids.take(pa.array(cust[order])),
            "ts": pa.array(us[order], type=pa.timestamp("us", tz="UTC")),
            "amount_fen": pa.array(amount[order]),
        }
    )
    return table, end


def bench(
    customers: int = 1_000_000, transactions: int = 20_000_000, seed: int = 7
) -> dict[str, Any]:
    """Time summary (from a pyarrow table with string ids), fit and 365-day predictions."""
    from siyu.tags.value import fit, predict
    from siyu.tags.value_summary import summarise_days, transactions_from_table

    start = time.perf_counter()
    table, end = make_orders(customers, transactions, seed)
    generate_s = time.perf_counter() - start
    gc.collect()
    t0 = time.perf_counter()
    data = transactions_from_table(table, tz="Asia/Shanghai")
    t1 = time.perf_counter()
    summary = summarise_days(data, end, unit="weeks")
    t2 = time.perf_counter()
    model = fit(summary)
    t3 = time.perf_counter()
    pred = predict(summary, model)
    t4 = time.perf_counter()
    return {
        "benchmark": "value",
        "customers": len(summary),
        "transactions": table.num_rows,
        "repeaters": model["meta"]["repeaters"],
        "generate_s": round(generate_s, 3),
        "read_columns_s": round(t1 - t0, 3),
        "summary_s": round(t2 - t1, 3),
        "fit_s": round(t3 - t2, 3),
        "predict_s": round(t4 - t3, 3),
        "total_s": round(t4 - t0, 3),
        "bgnbd": model["bgnbd"],
        "gamma_gamma": model["gamma_gamma"],
        "converged": model["meta"]["converged"],
        "value_fen_total": int(pred.value_fen.sum()),
    }
