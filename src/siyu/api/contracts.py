"""Contract endpoints: contracts with their KPI lines and forecast (create, replace, delete),
a contract's status on the actual KPI values, client reports on demand and report schedules."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from siyu.api.deps import CurrentActor, Db
from siyu.metrics import contract_store as store
from siyu.metrics import reports
from siyu.org.queries import access_brand

router = APIRouter(tags=["metrics"])


@router.get("/brands/{brand}/contracts", response_model=list[store.ContractOut])
def list_contracts(brand: str, db: Db, actor: CurrentActor) -> list[store.ContractOut]:
    """The brand's contracts, latest first, with forecast totals and the traffic factor."""
    b = access_brand(db, actor, brand, store.READ)
    return store.list_contracts(db, actor, b)


@router.post("/brands/{brand}/contracts", response_model=store.ContractOut, status_code=201)
def create_contract(
    brand: str, body: store.ContractIn, db: Db, actor: CurrentActor
) -> store.ContractOut:
    """A contract: period, commitment share, each KPI's four lines (monotonic in the KPI's
    direction, else 422 ``metrics.lines_not_monotonic`` naming the line), bonus formulas and
    the forecast table."""
    b = access_brand(db, actor, brand, store.WRITE)
    contract = store.create_contract(db, actor, b, body)
    return store.show_contract(db, actor, b, contract.key)


@router.get("/brands/{brand}/contracts/{contract}", response_model=store.ContractOut)
def show_contract(brand: str, contract: str, db: Db, actor: CurrentActor) -> store.ContractOut:
    b = access_brand(db, actor, brand, store.READ)
    return store.show_contract(db, actor, b, contract)


@router.put("/brands/{brand}/contracts/{contract}", response_model=store.ContractOut)
def replace_contract(
    brand: str, contract: str, body: store.ContractIn, db: Db, actor: CurrentActor
) -> store.ContractOut:
    """Replace the contract as a whole (lines and forecast are the lists given)."""
    b = access_brand(db, actor, brand, store.WRITE)
    row = store.replace_contract(db, actor, b, contract, body)
    return store.show_contract(db, actor, b, row.key)


@router.delete("/brands/{brand}/contracts/{contract}", status_code=204)
def delete_contract(brand: str, contract: str, db: Db, actor: CurrentActor) -> Response:
    b = access_brand(db, actor, brand, store.WRITE)
    store.delete_contract(db, actor, b, contract)
    return Response(status_code=204)


@router.get("/brands/{brand}/contracts/{contract}/status", response_model=list[store.KpiStatusOut])
def contract_status(
    brand: str,
    contract: str,
    db: Db,
    actor: CurrentActor,
    start: Annotated[date | None, Query(description="default: the contract's start")] = None,
    end: Annotated[date | None, Query(description="default: today or the contract's end")] = None,
) -> list[store.KpiStatusOut]:
    """Each contracted KPI's actual value over the period (your data scope), the line it sits
    on, the distance to the next line and the bonus earned; count and amount lines scaled
    by the client's delivered traffic."""
    b = access_brand(db, actor, brand, store.READ)
    return reports.contract_status(db, actor, b, contract, start, end)


@router.get("/brands/{brand}/reports/{period}")
def report(
    brand: str,
    period: Literal["daily", "weekly", "monthly"],
    db: Db,
    actor: CurrentActor,
    format: Annotated[Literal["xlsx", "html", "pdf"], Query()] = "xlsx",
    day: Annotated[date | None, Query(description="a day in the period; default: the last")] = None,
    lang: Annotated[Literal["zh-CN", "en"], Query()] = "zh-CN",
) -> Response:
    """A client report for the period as a file: XLSX, self-contained HTML, or PDF (A4,
    rendered with ReportLab; 422 ``metrics.pdf_unavailable`` only where it is missing)."""
    b = access_brand(db, actor, brand, store.READ)
    built = reports.build(db, actor, b, period, day, lang)
    data, media, name = reports.render(built, format)
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/brands/{brand}/report-schedules", response_model=list[reports.ScheduleOut])
def list_schedules(brand: str, db: Db, actor: CurrentActor) -> list[reports.ScheduleOut]:
    b = access_brand(db, actor, brand, store.READ)
    return reports.list_schedules(db, actor, b)


@router.post(
    "/brands/{brand}/report-schedules", response_model=reports.ScheduleOut, status_code=201
)
def create_schedule(
    brand: str, body: reports.ScheduleIn, db: Db, actor: CurrentActor
) -> reports.ScheduleOut:
    """Send a report every day, week or month by e-mail (``siyu worker`` generates it)."""
    b = access_brand(db, actor, brand, store.WRITE)
    return reports.create_schedule(db, actor, b, body)


@router.delete("/brands/{brand}/report-schedules/{schedule}", status_code=204)
def delete_schedule(brand: str, schedule: str, db: Db, actor: CurrentActor) -> Response:
    b = access_brand(db, actor, brand, store.WRITE)
    reports.delete_schedule(db, actor, b, schedule)
    return Response(status_code=204)
