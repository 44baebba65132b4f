"""Staff and roles page: ``/b/{brand}/staff``.

Lists the staff serving the brand within the viewer's data scope, creates staff, lets an
existing staff member of the same agency serve this brand too (a membership), imports staff.
Role choices offered are those the viewer could grant; the domain still has the last word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import SiyuError
from siyu.core.validation import parse
from siyu.org import actions, importer, queries
from siyu.org.models import ROLES, SCOPES, Brand
from siyu.org.permissions import ROLE_PERMISSIONS, permissions_on
from siyu.org.schemas import MembershipIn, StaffIn
from siyu.web.deps import Con, Console, Form, text_field, upload_of
from siyu.web.render import FormState, page, report_view, translator, unit_options

router = APIRouter(include_in_schema=False)

STAFF_FIELDS = ("name", "username", "role", "scope", "unit", "wecom_userid", "password")
MEMBER_FIELDS = ("username", "role", "scope", "unit", "wecom_userid")


def staff_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    member_form: FormState | None = None,
    report: dict[str, Any] | None = None,
    import_error: str = "",
    created: str = "",
) -> Response:
    staff = queries.list_staff(con.db, con.actor, b)
    units = queries.list_units(con.db, con.actor, b)
    perms = permissions_on(con.actor, queries.brand_ref(b))
    t = translator(con.locale)
    return page(
        con,
        "staff.html",
        b,
        "staff",
        status,
        staff=staff,
        role_options=[(r, t(f"ui.role.{r}")) for r in ROLES if ROLE_PERMISSIONS[r] <= perms],
        scope_options=[(s, t(f"ui.scope.{s}")) for s in SCOPES if s != "agency" or b.agency_id],
        unit_options=unit_options(units),
        form=form or FormState(values={"role": "guide"}),
        member_form=member_form or FormState(values={"role": "guide"}),
        report=report,
        import_error=import_error,
        created=created,
    )


@router.get("/b/{brand}/staff")
def staff_list(brand: str, con: Con, created: str = "") -> Response:
    b = con.brand(brand)
    return staff_page(con, b, created=created)


def _clean(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


@router.post("/b/{brand}/staff")
def create_staff(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "staff.write")
    values = {name: text_field(form, name) for name in STAFF_FIELDS}
    raw_password = form.get("password")
    if isinstance(raw_password, str) and raw_password:
        values["password"] = raw_password  # passwords are not trimmed
    try:
        data = parse(StaffIn, _clean(values))
        person = actions.create_staff(con.db, con.actor, b, data)
    except SiyuError as exc:
        values.pop("password", None)  # never echo a password back into the page
        return staff_page(con, b, exc.status, form=FormState.failed(exc, values, con.locale))
    return RedirectResponse(f"/b/{b.slug}/staff?created={quote(person.username)}", status_code=303)


@router.post("/b/{brand}/staff/memberships")
def add_membership(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "staff.write")
    values = {name: text_field(form, name) for name in MEMBER_FIELDS}
    try:
        data = parse(MembershipIn, _clean(values))
        actions.add_membership(con.db, con.actor, b, data)
    except SiyuError as exc:
        return staff_page(con, b, exc.status, member_form=FormState.failed(exc, values, con.locale))
    return RedirectResponse(
        f"/b/{b.slug}/staff?created={quote(data.username.lower())}", status_code=303
    )


@router.post("/b/{brand}/staff/import")
def import_staff(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "staff.write")
    dry_run = text_field(form, "dry_run") in ("1", "on", "true")
    try:
        upload = upload_of(form)
        if upload is None:
            message = translator(con.locale)("ui.import.no_file")
            return staff_page(con, b, 422, import_error=message)
        name, data = upload
        report = importer.import_staff(con.db, con.actor, b, Path(name), data=data, dry_run=dry_run)
    except SiyuError as exc:
        return staff_page(con, b, exc.status, import_error=exc.message(con.locale))
    return staff_page(con, b, report=report_view(report.as_dict(), con.locale))
