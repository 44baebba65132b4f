"""Contracts on values: a KPI's four lines, its status, target scaling and the bonus.

Pure logic (no database): the store (``siyu.metrics.contract_store``), the console, the API
and the reports all call these functions with numbers.

**Lines.** Every contracted KPI has four lines — ``fail``, ``normal``, ``good``, ``excess`` —
and a direction: ``higher`` is better (diversion rate, GMV) or ``lower`` is better (cost per
diverted customer, churn rate). Each line is where its band *starts*; a value sits on the best
line it has reached (``>=`` the line when higher is better, ``<=`` when lower is better); a
value that has not reached the ``normal`` line sits on ``fail``. The ``fail`` line is the floor
of the fail band (the worst value the contract contemplates, often 0): charts draw the band from
it. With lines 0 / 5% / 20% / 25% (higher is better) a 19% diversion rate is ``normal`` and
21% is ``good``; exactly 20% is ``good``.

Lines must be monotonic in the direction: ``fail <= normal < good < excess`` when higher is
better, ``fail >= normal > good > excess`` when lower is better.

**Kinds and scaling.** A KPI's ``kind`` is ``count`` (customers, notes), ``amount`` (a total
in fen, e.g. GMV), ``rate`` (a fraction: 0.19 is 19%) or ``ratio`` (a per-unit figure, e.g.
cost per diverted customer in fen, minutes of response time). When the client delivers less
traffic than it committed, the targets of ``count`` and ``amount`` KPIs scale down with it:
every line × ``delivered / committed`` (the factor is never above 1: traffic beyond the
commitment raises no target). ``rate`` and ``ratio`` KPIs are not scaled: they are already
per unit of traffic, so a shortfall does not make them harder to reach.

**Bonus.** Above the excess line the agency earns a bonus from a formula chosen among a small
set of kinds (data, never code): ``none``; ``fixed`` (``amount`` fen once excess is reached);
``linear`` (``per_unit`` fen for every ``unit`` beyond the excess line, proportionally, with
an optional ``cap``); ``tiered`` (``tiers``: ``[{"beyond": x, "amount": fen}, …]`` — the amount
of the highest tier whose distance beyond the excess line has been reached, optional ``cap``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from siyu.core.errors import FieldError, Invalid

LINES = ("fail", "normal", "good", "excess")
Direction = Literal["higher", "lower"]
Kind = Literal["count", "amount", "rate", "ratio"]
DIRECTIONS = ("higher", "lower")
KINDS = ("count", "amount", "rate", "ratio")
SCALED_KINDS = frozenset({"count", "amount"})
BONUS_KINDS = ("none", "fixed", "linear", "tiered")
MAX_TIERS = 20
DEFAULT_COMMITMENT_PCT = 80


@dataclass(frozen=True)
class KpiDefault:
    """How a known KPI is usually contracted (the console pre-fills these)."""

    direction: Direction
    kind: Kind


# Direction and kind of the contracted KPIs (keys as in ``siyu.metrics.definitions``).
KPI_DEFAULTS: dict[str, KpiDefault] = {
    "diverted_customers": KpiDefault("higher", "count"),
    "diversion_rate": KpiDefault("higher", "rate"),
    "cost_per_diverted": KpiDefault("lower", "ratio"),
    "retention_rate": KpiDefault("higher", "rate"),
    "satisfaction": KpiDefault("higher", "ratio"),
    "churn_rate": KpiDefault("lower", "rate"),
    "interaction_rate": KpiDefault("higher", "rate"),
    "gmv": KpiDefault("higher", "amount"),
    "koc_content_published": KpiDefault("higher", "count"),
    "koc_customers_brought": KpiDefault("higher", "count"),
    "referred_customers": KpiDefault("higher", "count"),
    "repurchase_rate": KpiDefault("higher", "rate"),
    "value_365": KpiDefault("higher", "ratio"),
    "active_members": KpiDefault("higher", "count"),
    "group_participation_rate": KpiDefault("higher", "rate"),
    "guide_response_minutes": KpiDefault("lower", "ratio"),
}


@dataclass(frozen=True)
class Lines:
    fail: float
    normal: float
    good: float
    excess: float
    direction: Direction = "higher"

    def value(self, line: str) -> float:
        return float(getattr(self, line))

    def as_dict(self) -> dict[str, float]:
        return {name: self.value(name) for name in LINES}

    def scaled(self, factor: float) -> Lines:
        return Lines(
            fail=self.fail * factor,
            normal=self.normal * factor,
            good=self.good * factor,
            excess=self.excess * factor,
            direction=self.direction,
        )


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def check_lines(lines: Lines, where: str = "lines") -> None:
    """Raise ``metrics.lines_not_monotonic`` (naming the first offending line) unless the
    lines are finite and ordered in the KPI's direction."""
    errors: list[FieldError] = []
    for name in LINES:
        if not _finite(lines.value(name)):
            errors.append(FieldError("metrics.line_not_number", f"{where}.{name}", reason=name))
    if errors:
        raise Invalid("metrics.lines_invalid", errors=errors, kpi=where)
    if lines.direction not in DIRECTIONS:
        raise Invalid(
            "metrics.lines_invalid",
            errors=[FieldError("metrics.bad_direction", f"{where}.direction", reason="")],
            kpi=where,
        )
    sign = 1 if lines.direction == "higher" else -1
    pairs = (("fail", "normal", False), ("normal", "good", True), ("good", "excess", True))
    for low, high, strict in pairs:
        a, b = sign * lines.value(low), sign * lines.value(high)
        if a > b or (strict and a == b):
            relation = "<" if strict else "<="
            if lines.direction == "lower":
                relation = ">" if strict else ">="
            raise Invalid(
                "metrics.lines_not_monotonic",
                errors=[
                    FieldError(
                        "metrics.lines_not_monotonic",
                        f"{where}.{high}",
                        reason=f"{low} {relation} {high}",
                    )
                ],
                kpi=where,
                low=low,
                high=high,
                relation=relation,
                direction=lines.direction,
            )


def reached(value: float, line: float, direction: Direction) -> bool:
    return value >= line if direction == "higher" else value <= line


@dataclass(frozen=True)
class Status:
    """Where a value sits: its line, the next line up (None on excess), how far it is to it
    (always >= 0, in the KPI's unit) and how far beyond excess it is (0 below excess)."""

    line: str
    next_line: str | None
    to_next: float | None
    beyond_excess: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "next_line": self.next_line,
            "to_next": self.to_next,
            "beyond_excess": self.beyond_excess,
        }


def status_of(value: float, lines: Lines) -> Status:
    """The line ``value`` sits on (see the module doc) and the distance to the next one."""
    d = lines.direction
    sign = 1.0 if d == "higher" else -1.0
    line = "fail"
    for name in ("normal", "good", "excess"):
        if reached(value, lines.value(name), d):
            line = name
    if line == "excess":
        return Status("excess", None, None, sign * (value - lines.excess))
    nxt = LINES[LINES.index(line) + 1]
    return Status(line, nxt, sign * (lines.value(nxt) - value), 0.0)


def scale_factor(committed: float, delivered: float | None) -> float:
    """``delivered / committed`` when the client delivered less than it committed, else 1."""
    if delivered is None or committed <= 0 or delivered >= committed:
        return 1.0
    return max(0.0, delivered / committed)


def projected(value: float | None, kind: str, elapsed: float) -> float | None:
    """The value at the contract's end if the pace so far holds: count and amount KPIs
    accumulate, so a value covering ``elapsed`` (0 < elapsed ≤ 1) of the contract's days
    projects to ``value / elapsed``; rates and ratios are already per unit and stay."""
    if value is None or not math.isfinite(value):
        return None
    if kind in SCALED_KINDS and 0.0 < elapsed < 1.0:
        return value / elapsed
    return value


def effective_lines(lines: Lines, kind: str, factor: float) -> Lines:
    """The lines after a traffic shortfall: count and amount KPIs scale, rates and ratios
    do not (module doc)."""
    if kind in SCALED_KINDS and factor < 1.0:
        return lines.scaled(factor)
    return lines


# ---------------------------------------------------------------- bonus formulas


def _number(formula: dict[str, Any], name: str, where: str, *, required: bool = True) -> float:
    value = formula.get(name)
    if value is None and not required:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(
            "metrics.bonus_invalid",
            errors=[FieldError("metrics.bonus_invalid", f"{where}.{name}", reason="number")],
            field=name,
            reason="a number is required",
        )
    if value < 0:
        raise Invalid(
            "metrics.bonus_invalid",
            errors=[FieldError("metrics.bonus_invalid", f"{where}.{name}", reason=">= 0")],
            field=name,
            reason="must not be negative",
        )
    return float(value)


def check_bonus(formula: dict[str, Any] | None, where: str = "bonus") -> dict[str, Any]:
    """Validate a bonus formula; returns it normalised (``{"kind": "none"}`` for nothing)."""
    if not formula:
        return {"kind": "none"}
    kind = formula.get("kind", "none")
    if kind not in BONUS_KINDS:
        raise Invalid(
            "metrics.bonus_invalid",
            errors=[FieldError("metrics.bonus_invalid", f"{where}.kind", reason=str(kind))],
            field="kind",
            reason=f"one of {', '.join(BONUS_KINDS)}",
        )
    allowed = {
        "none": {"kind"},
        "fixed": {"kind", "amount"},
        "linear": {"kind", "per_unit", "unit", "cap"},
        "tiered": {"kind", "tiers", "cap"},
    }[kind]
    extra = sorted(set(formula) - allowed)
    if extra:
        raise Invalid(
            "metrics.bonus_invalid",
            errors=[FieldError("metrics.bonus_invalid", f"{where}.{extra[0]}", reason="unknown")],
            field=extra[0],
            reason=f"not a setting of a {kind} bonus",
        )
    out: dict[str, Any] = {"kind": kind}
    if kind == "fixed":
        out["amount"] = int(_number(formula, "amount", where))
    elif kind == "linear":
        out["per_unit"] = int(_number(formula, "per_unit", where))
        unit = _number(formula, "unit", where)
        if unit <= 0:
            raise Invalid(
                "metrics.bonus_invalid",
                errors=[FieldError("metrics.bonus_invalid", f"{where}.unit", reason="> 0")],
                field="unit",
                reason="must be above 0",
            )
        out["unit"] = unit
    elif kind == "tiered":
        tiers = formula.get("tiers")
        if not isinstance(tiers, list) or not tiers or len(tiers) > MAX_TIERS:
            raise Invalid(
                "metrics.bonus_invalid",
                errors=[FieldError("metrics.bonus_invalid", f"{where}.tiers", reason="list")],
                field="tiers",
                reason=f"a list of 1 to {MAX_TIERS} tiers",
            )
        clean = []
        for i, tier in enumerate(tiers):
            if not isinstance(tier, dict) or set(tier) - {"beyond", "amount"}:
                raise Invalid(
                    "metrics.bonus_invalid",
                    errors=[
                        FieldError("metrics.bonus_invalid", f"{where}.tiers.{i}", reason="tier")
                    ],
                    field=f"tiers.{i}",
                    reason='each tier is {"beyond": x, "amount": fen}',
                )
            clean.append(
                {
                    "beyond": _number(tier, "beyond", f"{where}.tiers.{i}"),
                    "amount": int(_number(tier, "amount", f"{where}.tiers.{i}")),
                }
            )
        clean.sort(key=lambda t: t["beyond"])
        out["tiers"] = clean
    if kind in ("linear", "tiered") and formula.get("cap") is not None:
        out["cap"] = int(_number(formula, "cap", where))
    return out


def bonus(formula: dict[str, Any] | None, status: Status) -> int:
    """The bonus in fen for a value with this status (0 below the excess line)."""
    f = check_bonus(formula)
    if status.line != "excess" or f["kind"] == "none":
        return 0
    beyond = max(0.0, status.beyond_excess)
    if f["kind"] == "fixed":
        return int(f["amount"])
    if f["kind"] == "linear":
        # a float quotient like 0.05 / 0.01 may land a hair off an integer: round first
        units = round(beyond / float(f["unit"]), 9)
        amount = math.floor(units * int(f["per_unit"]) + 0.5)
    else:
        amount = 0
        for tier in f["tiers"]:
            if beyond >= float(tier["beyond"]) - 1e-12:
                amount = int(tier["amount"])
    cap = f.get("cap")
    return min(amount, int(cap)) if cap is not None else amount


@dataclass(frozen=True)
class Evaluation:
    """A contracted KPI evaluated on an actual value."""

    kpi: str
    kind: str
    value: float | None
    lines: Lines  # as contracted
    effective: Lines  # after traffic scaling
    factor: float
    status: Status | None  # None without a value
    bonus: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi,
            "kind": self.kind,
            "direction": self.lines.direction,
            "value": self.value,
            "lines": self.lines.as_dict(),
            "effective": self.effective.as_dict(),
            "factor": self.factor,
            "status": self.status.as_dict() if self.status else None,
            "bonus": self.bonus,
        }


def evaluate(
    kpi: str,
    kind: str,
    lines: Lines,
    value: float | None,
    *,
    factor: float = 1.0,
    bonus_formula: dict[str, Any] | None = None,
) -> Evaluation:
    eff = effective_lines(lines, kind, factor)
    if value is None or not math.isfinite(value):
        return Evaluation(kpi, kind, None, lines, eff, factor, None, 0)
    st = status_of(value, eff)
    return Evaluation(kpi, kind, value, lines, eff, factor, st, bonus(bonus_formula, st))


# ---------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class ForecastRow:
    """One month and channel of the forecast: the client's committed traffic, the expected
    diversion rate and GMV per diverted customer (fen), and the traffic delivered so far."""

    month: str  # YYYY-MM
    channel: str
    committed_traffic: int
    diversion_rate: float
    gmv_per_customer: int
    delivered_traffic: int | None = None

    @property
    def expected_diverted(self) -> int:
        return math.floor(self.committed_traffic * self.diversion_rate + 0.5)

    @property
    def expected_gmv(self) -> int:
        return self.expected_diverted * self.gmv_per_customer


def commitment(forecast_value: float, pct: int = DEFAULT_COMMITMENT_PCT) -> int:
    """The agency's commitment: ``pct`` % of the forecast, rounded half up."""
    return math.floor(forecast_value * pct / 100 + 0.5)


def traffic_factor(rows: list[ForecastRow]) -> float:
    """The scaling factor over a set of forecast rows: Σ delivered / Σ committed when that is
    below 1. A row without a delivered figure counts as delivered in full (no data, no cut)."""
    committed = sum(r.committed_traffic for r in rows)
    delivered = sum(
        r.committed_traffic if r.delivered_traffic is None else r.delivered_traffic for r in rows
    )
    return scale_factor(committed, delivered)
