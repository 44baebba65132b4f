"""Customer value: RFM, BG/NBD + Gamma-Gamma, and the 365-day value of each customer.

A Chinese brand judges a customer by what they are worth over the next year, not by the
size of one order. This package turns raw transactions into that number, vectorised
(numpy + scipy; pyarrow only to read columns), so a brand with a million customers is
scored in seconds. Heavy imports live inside functions: only callers that score customers
pay for scipy.

Pipeline::

    from siyu.tags import value
    s = value.summarise_table(orders, calibration_end=date(2026, 6, 30), tz="Asia/Shanghai")
    model = value.fit(s)                   # plain dict, printed by `siyu value fit --json`
    pred = value.predict(s, model)         # p_alive, purchases, spend, value_fen per customer

Summary (:mod:`.value_summary`). A purchase is a brand-local day with at least one
transaction. Per customer, over the calibration period ending ``calibration_end`` (inclusive):
``x`` = purchase days - 1 (repeat purchases), ``t_x`` = last - first purchase day, ``T`` =
calibration end - first purchase day (days, or weeks = days / 7), ``m`` = mean fen of the
repeat purchase days. Customers whose first purchase is later are not in the summary.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way", Marketing
Science 24(2)). While active, purchases follow Poisson(λ), λ ~ Gamma(r, α); after each repeat
purchase the customer drops out with probability p ~ Beta(a, b). With B the beta function:

- likelihood (eq. 6): L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
  + [x > 0] B(a+1, b+x-1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)),
  evaluated as logs with ``gammaln``/``betaln`` and ``logaddexp``;
- P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) · ((α+T)/(α+t_x))^(r+x))
  (Fader, Hardie & Lee, "Computing P(alive) using the BG/NBD model", note 021);
- E[Y(t) | x, t_x, T] (eq. 10) = (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x)
  ₂F₁(r+x, b+x; a+b+x-1; t/(α+T+t))] · P(alive), computed through Euler's
  transformation as (a+b+x-1)/(a-1) · [1 - (1-z)^(a-1) ₂F₁(a+b-1-r, a-1; a+b+x-1; z)] ·
  P(alive), z = t/(α+T+t), which stays finite for heavy buyers;
- E[X(t)] for a new customer (eq. 7) = (a+b-1)/(a-1) · [1 - (α/(α+t))^r
  ₂F₁(r, b; a+b-1; t/(α+t))] — the same expression at x = t_x = T = 0.

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves for customer
base analysis", JMR 42(4); Fader & Hardie, "The Gamma-Gamma model of monetary value", 2013).
Each transaction's value ~ Gamma(p, ν), ν ~ Gamma(q, γ); fitted on repeat buyers with the
density of their mean repeat spend m over x purchases:
f(m | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m^(px-1) x^(px) / (γ + x m)^(px+q),
and E[M | x, m] = p (γ + x m) / (p x + q - 1) = a weighted mean of the population mean
pγ/(q-1) and the customer's own m (requires q > 1). Spend independent of frequency is the
model's assumption (check it on a brand's data before trusting the value).

365-day value (:func:`predict`), in fen, for customers at the calibration end:
V = E[M | x, m] · Σ_k (E[Y(t_k) | ·] - E[Y(t_(k-1)) | ·]) / (1 + d)^(k·H/(K·365)),
with H = the horizon (365 days), t_k = k·H/K in the summary's unit, K steps (12: months) and
d the annual discount rate. Purchases expected in step k are discounted as if made at its
end; with d = 0 this is exactly E[Y(H)] · E[M]. Rounded to whole fen (money is integer fen).

Parameters are fitted by maximum likelihood on log-parameters (L-BFGS-B with analytic
gradients, a Nelder-Mead fallback, then a polish), on customers compressed to distinct
(x, t_x, T) rows. Reproduces the published CDNOW estimates from the raw transactions
(tests/test_value_models.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from siyu.tags.value_models import (
    BgNbd,
    GammaGamma,
    NotEnoughData,
    bgnbd_log_likelihood,
    expected_purchases,
    expected_purchases_new,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    p_alive,
)
from siyu.tags.value_rfm import SEGMENTS, Rfm, RfmCuts, rfm, rfm_from_days, rfm_scores
from siyu.tags.value_summary import (
    UNIT_DAYS,
    Summary,
    summarise,
    summarise_days,
    summarise_table,
    transactions,
    transactions_from_table,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "SEGMENTS",
    "BgNbd",
    "GammaGamma",
    "NotEnoughData",
    "Predictions",
    "Rfm",
    "RfmCuts",
    "Summary",
    "bgnbd_log_likelihood",
    "expected_purchases",
    "expected_purchases_new",
    "expected_spend",
    "fit",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "models_from_dict",
    "p_alive",
    "predict",
    "rfm",
    "rfm_from_days",
    "rfm_scores",
    "summarise",
    "summarise_days",
    "summarise_table",
    "transactions",
    "transactions_from_table",
]


def fit(summary: Summary, penalizer: float = 0.0) -> dict[str, Any]:
    """Fit both models; a JSON-ready dict (parameters, then ``meta``).

    ``{"bgnbd": {"r", "alpha", "a", "b"}, "gamma_gamma": {"p", "q", "gamma"}, "meta": {...}}``
    with gamma in fen and the BG/NBD rates per ``meta.time_unit``. Repeat buyers whose mean
    repeat spend is 0 (free orders) cannot enter the Gamma-Gamma fit and are left out of it
    (``meta.spenders`` counts those that did).
    """
    x, t_x, T, m = summary.frequency, summary.recency, summary.T, summary.monetary
    bg, bg_info = fit_bgnbd(x, t_x, T, penalizer)
    spenders = (x > 0) & (m > 0)
    if not spenders.any():
        raise NotEnoughData("Gamma-Gamma needs repeat buyers with a positive spend")
    gg, gg_info = fit_gamma_gamma(x[spenders], m[spenders], penalizer)
    return {
        "bgnbd": bg.as_dict(),
        "gamma_gamma": gg.as_dict(),
        "meta": {
            "customers": len(summary),
            "repeaters": int((x > 0).sum()),
            "spenders": int(spenders.sum()),
            "time_unit": summary.unit,
            "spend_unit": "fen",
            "calibration_end": summary.calibration_end.isoformat(),
            "penalizer": float(penalizer),
            "log_likelihood": {
                "bgnbd": bg_info.log_likelihood,
                "gamma_gamma": gg_info.log_likelihood,
            },
            "converged": {"bgnbd": bg_info.converged, "gamma_gamma": gg_info.converged},
            "iterations": {"bgnbd": bg_info.iterations, "gamma_gamma": gg_info.iterations},
        },
    }


def models_from_dict(model: Mapping[str, Any]) -> tuple[BgNbd, GammaGamma]:
    """The parameter objects of a :func:`fit` result (or a stored copy of one)."""
    bg, gg = model["bgnbd"], model["gamma_gamma"]
    return (
        BgNbd(float(bg["r"]), float(bg["alpha"]), float(bg["a"]), float(bg["b"])),
        GammaGamma(float(gg["p"]), float(gg["q"]), float(gg["gamma"])),
    )


@dataclass(frozen=True)
class Predictions:
    customer_id: Any  # pyarrow Array, summary order
    p_alive: NDArray[np.float64]
    purchases: NDArray[np.float64]  # expected purchase days in the horizon (undiscounted)
    spend_fen: NDArray[np.float64]  # expected mean spend per purchase
    value_fen: NDArray[np.int64]  # discounted expected value over the horizon
    horizon_days: int
    discount_rate: float

    def to_arrow(self) -> Any:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

        return pa.table(
            {
                "customer_id": self.customer_id,
                "p_alive": self.p_alive,
                "purchases": self.purchases,
                "spend_fen": self.spend_fen,
                "value_fen": self.value_fen,
            }
        )


def predict(
    summary: Summary,
    model: Mapping[str, Any],
    horizon_days: int = 365,
    discount_rate: float = 0.0,
    steps: int = 12,
) -> Predictions:
    """Per-customer P(alive), expected purchases, spend and value over ``horizon_days``.

    The horizon starts at the summary's calibration end; the model must have been fitted
    in the summary's time unit (``meta.time_unit``).
    """
    unit = model.get("meta", {}).get("time_unit", summary.unit)
    if unit != summary.unit:
        raise ValueError(f"model is in {unit}, summary in {summary.unit}")
    if horizon_days < 1 or steps < 1 or discount_rate <= -1:
        raise ValueError("need horizon_days >= 1, steps >= 1 and discount_rate > -1")
    bg, gg = models_from_dict(model)
    x, t_x, T = summary.frequency, summary.recency, summary.T
    horizon = horizon_days / UNIT_DAYS[summary.unit]
    alive = p_alive(bg, x, t_x, T)
    purchases = expected_purchases(bg, horizon, x, t_x, T)
    spend = expected_spend(gg, x, summary.monetary)
    if discount_rate == 0.0:
        discounted = purchases
    else:
        discounted = np.zeros(len(x))
        before = np.zeros(len(x))
        for k in range(1, steps + 1):
            upto = (
                purchases if k == steps else expected_purchases(bg, horizon * k / steps, x, t_x, T)
            )
            years = horizon_days * k / steps / 365.0
            discounted += (upto - before) / (1.0 + discount_rate) ** years
            before = upto
    value = np.rint(discounted * spend).astype(np.int64)
    return Predictions(
        summary.customer_id, alive, purchases, spend, value, horizon_days, discount_rate
    )
