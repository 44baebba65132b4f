"""Brand overview and org-tree pages: ``/b/{brand}`` and ``/b/{brand}/org``.

Every read goes through ``access_brand`` and the domain's scoped queries (a store manager
sees only their store's subtree); every write goes through ``org.actions`` / the importer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import SiyuError
from siyu.core.validation import parse
from siyu.org import actions, importer, queries
from siyu.org.models import ROLES, UNIT_KINDS, Brand
from siyu.org.permissions import unit_filter
from siyu.org.schemas import StaffOut, UnitIn
from siyu.web.deps import Con, Console, Form, text_field, upload_of
from siyu.web.render import FormState, page, report_view, translator, unit_options

router = APIRouter(include_in_schema=False)

CHART_FONT = (
    '-apple-system, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", Roboto, Arial, sans-serif'
)
UNIT_FIELDS = ("code", "name", "kind", "parent", "city", "address")


def staff_by_unit(staff: list[StaffOut]) -> dict[str, list[StaffOut]]:
    out: dict[str, list[StaffOut]] = {}
    for person in staff:
        if person.unit_id:
            out.setdefault(person.unit_id, []).append(person)
    return out


def role_chart(con: Console, staff: list[StaffOut]) -> dict[str, Any]:
    """An ECharts option: staff per role, roles in their canonical order, labels translated."""
    t = translator(con.locale)
    counts = Counter(s.role for s in staff)
    roles = [r for r in ROLES if counts[r]]
    return {
        "textStyle": {"fontFamily": CHART_FONT},
        "grid": {"left": 8, "right": 16, "top": 16, "bottom": 8, "containLabel": True},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "xAxis": {"type": "value", "minInterval": 1},
        "yAxis": {"type": "category", "inverse": True, "data": [t(f"ui.role.{r}") for r in roles]},
        "series": [
            {
                "type": "bar",
                "name": t("ui.overview.staff"),
                "barMaxWidth": 22,
                "itemStyle": {"color": "#2f6fed", "borderRadius": [0, 4, 4, 0]},
                "label": {"show": True, "position": "right"},
                "data": [counts[r] for r in roles],
            }
        ],
    }


@router.get("/b/{brand}")
def overview(brand: str, con: Con) -> Response:
    b = con.brand(brand)
    units = queries.list_units(con.db, con.actor, b)
    staff = queries.list_staff(con.db, con.actor, b)
    kinds = Counter(u.kind for u in units)
    roles = Counter(s.role for s in staff)
    return page(
        con,
        "overview.html",
        b,
        "overview",
        unit_count=len(units),
        staff_count=len(staff),
        store_count=kinds["store"],
        guide_count=roles["guide"],
        units_by_kind=[(k, kinds[k]) for k in UNIT_KINDS if kinds[k]],
        staff_by_role=[(r, roles[r]) for r in ROLES if roles[r]],
        chart=role_chart(con, staff),
    )


def org_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    report: dict[str, Any] | None = None,
    import_error: str = "",
    created: str = "",
) -> Response:
    tree = queries.unit_tree(con.db, con.actor, b)
    units = queries.list_units(con.db, con.actor, b)
    staff = queries.list_staff(con.db, con.actor, b)
    t = translator(con.locale)
    return page(
        con,
        "org.html",
        b,
        "org",
        status,
        tree=tree,
        units=units,
        staff_by_unit=staff_by_unit(staff),
        kind_options=[(k, t(f"ui.kind.{k}")) for k in UNIT_KINDS],
        parent_options=unit_options(units),
        allow_root=unit_filter(con.actor, queries.brand_ref(b)).all,
        form=form or FormState(values={"kind": "store"}),
        report=report,
        import_error=import_error,
        created=created,
    )


@router.get("/b/{brand}/org")
def org_tree(brand: str, con: Con, created: str = "") -> Response:
    b = con.brand(brand)
    return org_page(con, b, created=created)


@router.post("/b/{brand}/org/units")
def create_unit(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "org.write")
    values = {name: text_field(form, name) for name in UNIT_FIELDS}
    try:
        data = parse(UnitIn, {k: v for k, v in values.items() if v})
        unit = actions.create_unit(con.db, con.actor, b, data)
    except SiyuError as exc:
        return org_page(con, b, exc.status, form=FormState.failed(exc, values, con.locale))
    return RedirectResponse(f"/b/{b.slug}/org?created={unit.code}", status_code=303)


@router.post("/b/{brand}/org/import")
def import_units(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "org.write")
    dry_run = text_field(form, "dry_run") in ("1", "on", "true")
    try:
        upload = upload_of(form)
        if upload is None:
            return org_page(con, b, 422, import_error=translator(con.locale)("ui.import.no_file"))
        name, data = upload
        report = importer.import_units(con.db, con.actor, b, Path(name), data=data, dry_run=dry_run)
    except SiyuError as exc:
        return org_page(con, b, exc.status, import_error=exc.message(con.locale))
    return org_page(con, b, report=report_view(report.as_dict(), con.locale))
