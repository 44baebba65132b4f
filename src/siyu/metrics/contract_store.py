"""Contracts in the store: schemas, writes (``metrics.write``, one transaction, audited) and
reads (``metrics.read``), and a contract evaluated on KPI values.

    c = create_contract(db, actor, brand, ContractIn.model_validate({...}))
    out = show_contract(db, actor, brand, "2026-h2")
    table = evaluate_contract(out, {"diversion_rate": 0.19, "diverted_customers": 1100})

A contract is replaced as a whole (``PUT``): its KPI lines and its forecast rows are the
lists given. Lines are checked with :func:`siyu.metrics.contracts.check_lines` (monotonic in
the KPI's direction) and bonus formulas with :func:`~siyu.metrics.contracts.check_bonus`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.core.audit import record, snapshot
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.metrics import contracts as c
from siyu.metrics.models import Contract, ContractForecast, ContractKpi
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.org.models import Brand

READ = "metrics.read"
WRITE = "metrics.write"
KEY = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
MAX_KPIS = 30
MAX_FORECAST = 600


def known_kpis() -> tuple[str, ...]:
    """KPI keys a contract may name: the KPI catalogue's (``siyu.metrics.definitions``)."""
    return tuple(c.KPI_DEFAULTS)


class KpiLineIn(BaseModel):
    """A contracted KPI. ``direction`` and ``kind`` default from the KPI (``KPI_DEFAULTS``).
    Rates are fractions (0.2 is 20%), amounts and per-customer costs fen."""

    model_config = ConfigDict(extra="forbid")
    kpi: str = Field(min_length=1, max_length=64)
    direction: Literal["higher", "lower"] | None = None
    kind: Literal["count", "amount", "rate", "ratio"] | None = None
    fail: float
    normal: float
    good: float
    excess: float
    bonus: dict[str, Any] = Field(default_factory=lambda: {"kind": "none"})

    def lines(self) -> c.Lines:
        return c.Lines(self.fail, self.normal, self.good, self.excess, self.direction or "higher")


class ForecastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str = Field(description="YYYY-MM")
    channel: str = Field(min_length=1, max_length=64)
    committed_traffic: int = Field(ge=0, le=10**12)
    diversion_rate: float = Field(ge=0, le=1)
    gmv_per_customer: int = Field(default=0, ge=0, le=10**12, description="fen")
    delivered_traffic: int | None = Field(default=None, ge=0, le=10**12)

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        if not MONTH.match(value):
            raise ValueError("a month as YYYY-MM")
        return value


class ContractIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY)
    name: str = Field(min_length=1, max_length=100)
    starts_on: date
    ends_on: date
    status: Literal["draft", "active", "closed"] = "active"
    commitment_pct: int = Field(default=c.DEFAULT_COMMITMENT_PCT, ge=1, le=100)
    notes: str | None = Field(default=None, max_length=2000)
    kpis: list[KpiLineIn] = Field(default_factory=list, max_length=MAX_KPIS)
    forecast: list[ForecastIn] = Field(default_factory=list, max_length=MAX_FORECAST)

    @model_validator(mode="after")
    def _period(self) -> ContractIn:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        return self


class LineOut(BaseModel):
    kpi: str
    direction: str
    kind: str
    fail: float
    normal: float
    good: float
    excess: float
    bonus: dict[str, Any]
    scaled: bool = Field(description="a traffic shortfall scales this KPI's lines")


class ForecastOut(ForecastIn):
    expected_diverted: int
    expected_gmv: int = Field(description="fen")
    committed_diverted: int = Field(description="the agency's commitment (commitment_pct)")
    committed_gmv: int


class ContractOut(BaseModel):
    id: str
    key: str
    name: str
    starts_on: date
    ends_on: date
    status: str
    commitment_pct: int
    notes: str | None
    version: int
    kpis: list[LineOut]
    forecast: list[ForecastOut]
    totals: dict[str, int] = Field(description="forecast totals and the agency's commitment")
    traffic_factor: float = Field(description="delivered / committed traffic when below 1")


def _authorize(actor: Actor, brand: Brand, permission: str) -> None:
    authorize(actor, permission, org_queries.brand_ref(brand))


def _check(db: Session, brand: Brand, body: ContractIn) -> list[KpiLineIn]:
    known = set(known_kpis())
    seen: set[str] = set()
    out = []
    for i, line in enumerate(body.kpis):
        where = f"kpis.{i}"
        if line.kpi not in known:
            raise Invalid(
                "metrics.unknown_contract_kpi", kpi=line.kpi, known=", ".join(sorted(known))
            )
        if line.kpi in seen:
            raise Invalid("metrics.duplicate_kpi", kpi=line.kpi)
        seen.add(line.kpi)
        default = c.KPI_DEFAULTS.get(line.kpi, c.KpiDefault("higher", "ratio"))
        filled = line.model_copy(
            update={
                "direction": line.direction or default.direction,
                "kind": line.kind or default.kind,
            }
        )
        c.check_lines(filled.lines(), line.kpi if line.kpi else where)
        filled.bonus = c.check_bonus(line.bonus, f"{line.kpi}.bonus")
        out.append(filled)
    cells = set()
    for row in body.forecast:
        if (row.month, row.channel) in cells:
            raise Invalid("metrics.duplicate_forecast", month=row.month, channel=row.channel)
        cells.add((row.month, row.channel))
    return out


def _write_children(db: Session, brand: Brand, contract: Contract, body: ContractIn) -> None:
    lines = _check(db, brand, body)
    db.execute(delete(ContractKpi).where(ContractKpi.contract_id == contract.id))
    db.execute(delete(ContractForecast).where(ContractForecast.contract_id == contract.id))
    db.flush()
    for i, line in enumerate(lines):
        db.add(
            ContractKpi(
                brand_id=brand.id,
                contract_id=contract.id,
                kpi=line.kpi,
                direction=line.direction,
                kind=line.kind,
                fail_line=line.fail,
                normal_line=line.normal,
                good_line=line.good,
                excess_line=line.excess,
                bonus=line.bonus,
                position=i,
            )
        )
    for row in body.forecast:
        db.add(ContractForecast(brand_id=brand.id, contract_id=contract.id, **row.model_dump()))


def contract_row(db: Session, brand: Brand, ref: str) -> Contract:
    row = db.scalar(select(Contract).where(Contract.brand_id == brand.id, Contract.key == ref))
    if row is None:
        row = db.scalar(select(Contract).where(Contract.brand_id == brand.id, Contract.id == ref))
    if row is None:
        raise NotFound("metrics.contract_not_found", contract=ref)
    return row


def create_contract(db: Session, actor: Actor, brand: Brand, body: ContractIn) -> Contract:
    _authorize(actor, brand, WRITE)
    with atomic(db):
        taken = db.scalar(
            select(Contract.id).where(Contract.brand_id == brand.id, Contract.key == body.key)
        )
        if taken:
            raise Conflict("metrics.contract_exists", contract=body.key)
        contract = Contract(
            brand_id=brand.id,
            key=body.key,
            name=body.name,
            starts_on=body.starts_on,
            ends_on=body.ends_on,
            status=body.status,
            commitment_pct=body.commitment_pct,
            notes=body.notes,
            created_by=actor.label,
        )
        db.add(contract)
        db.flush()
        _write_children(db, brand, contract, body)
        record(
            db,
            actor,
            "metrics.contract_created",
            "contract",
            contract.id,
            brand=brand,
            after=body.model_dump(mode="json"),
        )
    return contract


def replace_contract(
    db: Session, actor: Actor, brand: Brand, ref: str, body: ContractIn
) -> Contract:
    """Replace a contract's fields, lines and forecast (its key may change if free)."""
    _authorize(actor, brand, WRITE)
    with atomic(db):
        contract = contract_row(db, brand, ref)
        if body.key != contract.key:
            taken = db.scalar(
                select(Contract.id).where(Contract.brand_id == brand.id, Contract.key == body.key)
            )
            if taken:
                raise Conflict("metrics.contract_exists", contract=body.key)
        before = _dump(db, contract)
        for name in ("key", "name", "starts_on", "ends_on", "status", "commitment_pct", "notes"):
            setattr(contract, name, getattr(body, name))
        contract.version += 1
        contract.updated_at = utcnow()
        _write_children(db, brand, contract, body)
        record(
            db,
            actor,
            "metrics.contract_updated",
            "contract",
            contract.id,
            brand=brand,
            before=before,
            after=body.model_dump(mode="json"),
        )
    return contract


def delete_contract(db: Session, actor: Actor, brand: Brand, ref: str) -> None:
    _authorize(actor, brand, WRITE)
    with atomic(db):
        contract = contract_row(db, brand, ref)
        before = _dump(db, contract)
        db.execute(delete(ContractKpi).where(ContractKpi.contract_id == contract.id))
        db.execute(delete(ContractForecast).where(ContractForecast.contract_id == contract.id))
        db.delete(contract)
        record(
            db,
            actor,
            "metrics.contract_deleted",
            "contract",
            contract.id,
            brand=brand,
            before=before,
        )


def _dump(db: Session, contract: Contract) -> dict[str, Any]:
    out = snapshot(contract)
    out["kpis"] = [snapshot(k) for k in _kpis(db, contract.id)]
    out["forecast"] = [snapshot(f) for f in _forecast(db, contract.id)]
    return out


def _kpis(db: Session, contract_id: str) -> list[ContractKpi]:
    return list(
        db.scalars(
            select(ContractKpi)
            .where(ContractKpi.contract_id == contract_id)
            .order_by(ContractKpi.position)
        )
    )


def _forecast(db: Session, contract_id: str) -> list[ContractForecast]:
    return list(
        db.scalars(
            select(ContractForecast)
            .where(ContractForecast.contract_id == contract_id)
            .order_by(ContractForecast.month, ContractForecast.channel)
        )
    )


def _out(db: Session, contract: Contract) -> ContractOut:
    rows = _forecast(db, contract.id)
    pct = contract.commitment_pct
    forecast = []
    plain = []
    for r in rows:
        f = c.ForecastRow(
            r.month,
            r.channel,
            r.committed_traffic,
            r.diversion_rate,
            r.gmv_per_customer,
            r.delivered_traffic,
        )
        plain.append(f)
        forecast.append(
            ForecastOut(
                month=r.month,
                channel=r.channel,
                committed_traffic=r.committed_traffic,
                diversion_rate=r.diversion_rate,
                gmv_per_customer=r.gmv_per_customer,
                delivered_traffic=r.delivered_traffic,
                expected_diverted=f.expected_diverted,
                expected_gmv=f.expected_gmv,
                committed_diverted=c.commitment(f.expected_diverted, pct),
                committed_gmv=c.commitment(f.expected_gmv, pct),
            )
        )
    committed = sum(f.committed_traffic for f in plain)
    delivered = sum(
        f.committed_traffic if f.delivered_traffic is None else f.delivered_traffic for f in plain
    )
    diverted = sum(f.expected_diverted for f in plain)
    gmv = sum(f.expected_gmv for f in plain)
    totals = {
        "committed_traffic": committed,
        "delivered_traffic": delivered,
        "expected_diverted": diverted,
        "expected_gmv": gmv,
        "committed_diverted": c.commitment(diverted, pct),
        "committed_gmv": c.commitment(gmv, pct),
    }
    kpis = [
        LineOut(
            kpi=k.kpi,
            direction=k.direction,
            kind=k.kind,
            fail=k.fail_line,
            normal=k.normal_line,
            good=k.good_line,
            excess=k.excess_line,
            bonus=k.bonus or {"kind": "none"},
            scaled=k.kind in c.SCALED_KINDS,
        )
        for k in _kpis(db, contract.id)
    ]
    return ContractOut(
        id=contract.id,
        key=contract.key,
        name=contract.name,
        starts_on=contract.starts_on,
        ends_on=contract.ends_on,
        status=contract.status,
        commitment_pct=pct,
        notes=contract.notes,
        version=contract.version,
        kpis=kpis,
        forecast=forecast,
        totals=totals,
        traffic_factor=c.traffic_factor(plain),
    )


def list_contracts(db: Session, actor: Actor, brand: Brand) -> list[ContractOut]:
    _authorize(actor, brand, READ)
    rows = db.scalars(
        select(Contract)
        .where(Contract.brand_id == brand.id)
        .order_by(Contract.starts_on.desc(), Contract.key)
    )
    return [_out(db, r) for r in rows]


def show_contract(db: Session, actor: Actor, brand: Brand, ref: str) -> ContractOut:
    _authorize(actor, brand, READ)
    return _out(db, contract_row(db, brand, ref))


def contract_for(db: Session, actor: Actor, brand: Brand, day: date) -> ContractOut | None:
    """The active contract covering ``day`` (the latest-starting one), if any."""
    _authorize(actor, brand, READ)
    row = db.scalar(
        select(Contract)
        .where(
            Contract.brand_id == brand.id,
            Contract.status == "active",
            Contract.starts_on <= day,
            Contract.ends_on >= day,
        )
        .order_by(Contract.starts_on.desc())
        .limit(1)
    )
    return _out(db, row) if row is not None else None


def as_input(contract: ContractOut) -> dict[str, Any]:
    """A contract as the body that would recreate it (the console's JSON editor)."""
    return {
        "key": contract.key,
        "name": contract.name,
        "starts_on": contract.starts_on.isoformat(),
        "ends_on": contract.ends_on.isoformat(),
        "status": contract.status,
        "commitment_pct": contract.commitment_pct,
        "notes": contract.notes,
        "kpis": [
            {
                "kpi": k.kpi,
                "direction": k.direction,
                "kind": k.kind,
                "fail": k.fail,
                "normal": k.normal,
                "good": k.good,
                "excess": k.excess,
                "bonus": k.bonus,
            }
            for k in contract.kpis
        ],
        "forecast": [
            ForecastIn.model_validate(
                f.model_dump(include=set(ForecastIn.model_fields))
            ).model_dump()
            for f in contract.forecast
        ],
    }


class KpiStatusOut(BaseModel):
    kpi: str
    kind: str
    direction: str
    value: float | None
    lines: dict[str, float]
    effective: dict[str, float]
    factor: float
    line: str | None
    next_line: str | None
    to_next: float | None
    beyond_excess: float
    bonus: int = Field(description="fen")
    elapsed: float = Field(default=1.0, description="share of the contract's days the value covers")
    projected: float | None = Field(
        default=None, description="the value at the contract's end at the pace so far"
    )
    projected_line: str | None = Field(
        default=None, description="the line the projected value would sit on"
    )


def elapsed_share(contract: ContractOut, start: date, end: date) -> float:
    """The share of the contract's days that ``start``…``end`` covers when it runs from the
    contract's start (1.0 for any other window: nothing to project)."""
    if start != contract.starts_on:
        return 1.0
    total = (contract.ends_on - contract.starts_on).days + 1
    done = (min(end, contract.ends_on) - contract.starts_on).days + 1
    return max(0.0, min(1.0, done / total)) if total > 0 else 1.0


def evaluate_contract(
    contract: ContractOut,
    values: dict[str, float | None],
    factor: float | None = None,
    elapsed: float = 1.0,
) -> list[KpiStatusOut]:
    """Each contracted KPI's status on ``values`` (KPI key → value; missing = no value),
    count and amount lines scaled by the contract's traffic factor (or ``factor``); with
    ``elapsed`` < 1 (a value to date), where the pace so far would end (``projected``)."""
    f = contract.traffic_factor if factor is None else factor
    out = []
    for k in contract.kpis:
        lines = c.Lines(
            k.fail, k.normal, k.good, k.excess, "lower" if k.direction == "lower" else "higher"
        )
        ev = c.evaluate(k.kpi, k.kind, lines, values.get(k.kpi), factor=f, bonus_formula=k.bonus)
        st = ev.status
        ahead = c.projected(ev.value, k.kind, elapsed)
        out.append(
            KpiStatusOut(
                kpi=k.kpi,
                kind=k.kind,
                direction=k.direction,
                value=ev.value,
                lines=lines.as_dict(),
                effective=ev.effective.as_dict(),
                factor=f,
                line=st.line if st else None,
                next_line=st.next_line if st else None,
                to_next=st.to_next if st else None,
                beyond_excess=st.beyond_excess if st else 0.0,
                bonus=ev.bonus,
                elapsed=round(elapsed, 6),
                projected=ahead,
                projected_line=None if ahead is None else c.status_of(ahead, ev.effective).line,
            )
        )
    return out
