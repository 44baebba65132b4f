"""The WeCom page ``/b/{brand}/wecom``: the app's connection (secrets write-only), the last
sync and a sync button, channel codes with the friends each brought and the cost per friend,
inheritance (在职 / 离职继承) with the transfers' progress, and the mirrored groups.

The page and every write need ``wecom.manage``; writes are ``siyu.wecom`` actions, which
check the permission and write the audit entry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from siyu.core.errors import Invalid, SiyuError
from siyu.core.validation import parse
from siyu.org.models import Brand
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, page
from siyu.wecom import apps, inherit, sync, ways
from siyu.wecom.models import WecomApp, WecomContact, WecomGroup, WecomTransfer

router = APIRouter(include_in_schema=False)

APP_FIELDS = ("corp_id", "agent_id", "secret", "token", "aes_key", "base_url", "welcome_text")
WAY_FIELDS = ("name", "state", "source", "staff_userids", "cost_yuan")
TRANSFER_FIELDS = ("mode", "handover_userid", "takeover_userid", "external_userids", "message")
DONE = ("app", "sync", "way", "transfer")


def _view(con: Console, b: Brand, status: int = 200, **forms: Any) -> Response:
    db = con.db
    app = db.get(WecomApp, b.id)
    contacts = dict(
        db.execute(
            select(WecomContact.status, func.count())
            .where(WecomContact.brand_id == b.id)
            .group_by(WecomContact.status)
        ).all()
    )
    transfers = dict(
        db.execute(
            select(WecomTransfer.status, func.count())
            .where(WecomTransfer.brand_id == b.id)
            .group_by(WecomTransfer.status)
        ).all()
    )
    groups = list(
        db.scalars(
            select(WecomGroup)
            .where(WecomGroup.brand_id == b.id)
            .order_by(WecomGroup.member_count.desc())
            .limit(50)
        )
    )
    app_values: dict[str, Any] = {}
    if app is not None:
        app_values = {
            "corp_id": app.corp_id,
            "agent_id": app.agent_id or "",
            "base_url": app.base_url,
            "welcome_text": (app.settings or {}).get("welcome_text", ""),
        }
    return page(
        con,
        "wecom.html",
        b,
        "wecom",
        status,
        app=apps.out(app) if app is not None else None,
        contacts={str(k): int(v) for k, v in contacts.items()},
        transfers={str(k): int(v) for k, v in transfers.items()},
        groups=groups,
        ways=ways.list_ways(db, b),
        app_form=forms.get("app_form") or FormState(values=app_values),
        way_form=forms.get("way_form") or FormState(),
        transfer_form=forms.get("transfer_form") or FormState(values={"mode": "resigned"}),
        notice=forms.get("notice", ""),
        sync_error=forms.get("sync_error", ""),
        canonical=f"/b/{b.slug}/wecom",
    )


@router.get("/b/{brand}/wecom")
def wecom_page(brand: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, apps.MANAGE)
    return _view(con, b, notice=done if done in DONE else "")


def _failed(exc: SiyuError, values: dict[str, str], con: Console) -> FormState:
    state = FormState.failed(exc, values, con.locale)
    fld = str(exc.params.get("field") or "").split(":")[0]
    if fld in values:
        state.errors.setdefault(fld, state.message)
    return state


@router.post("/b/{brand}/wecom/app")
def save_app(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, apps.MANAGE)
    values = {name: text_field(form, name) for name in APP_FIELDS}
    current = con.db.get(WecomApp, b.id)
    settings = dict(current.settings or {}) if current else {}
    settings["welcome_text"] = values["welcome_text"]
    raw = {
        "corp_id": values["corp_id"],
        "agent_id": values["agent_id"] or None,
        "secret": values["secret"],
        "token": values["token"],
        "aes_key": values["aes_key"],
        "base_url": values["base_url"] or apps.OFFICIAL,
        "settings": settings,
    }
    safe = {k: v for k, v in values.items() if k not in ("secret", "token", "aes_key")}
    try:
        apps.configure(con.db, con.actor, b, parse(apps.AppIn, raw))
    except SiyuError as exc:
        return _view(con, b, exc.status, app_form=_failed(exc, safe, con))
    return RedirectResponse(f"/b/{b.slug}/wecom?done=app", status_code=303)


@router.post("/b/{brand}/wecom/sync")
def run_sync(brand: str, con: Con) -> Response:
    b = con.brand(brand, apps.MANAGE)
    try:
        sync.sync_brand(con.db, con.actor, b)
    except SiyuError as exc:
        con.db.rollback()
        return _view(con, b, exc.status, sync_error=exc.message(con.locale))
    return RedirectResponse(f"/b/{b.slug}/wecom?done=sync", status_code=303)


@router.post("/b/{brand}/wecom/contact-ways")
def create_way(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, apps.MANAGE)
    values = {name: text_field(form, name) for name in WAY_FIELDS}
    try:
        cost = round(float(values["cost_yuan"] or 0) * 100)
    except ValueError:
        exc = Invalid("validation.failed", field="cost_yuan")
        return _view(con, b, 422, way_form=_failed(exc, values, con))
    raw = {
        "name": values["name"],
        "state": values["state"],
        "source": values["source"] or None,
        "staff_userids": [s for s in values["staff_userids"].replace(",", " ").split() if s],
        "cost_fen": cost,
    }
    try:
        ways.create_way(con.db, con.actor, b, parse(ways.ContactWayIn, raw))
    except SiyuError as exc:
        return _view(con, b, exc.status, way_form=_failed(exc, values, con))
    return RedirectResponse(f"/b/{b.slug}/wecom?done=way", status_code=303)


@router.post("/b/{brand}/wecom/transfers")
def transfer(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, apps.MANAGE)
    values = {name: text_field(form, name) for name in TRANSFER_FIELDS}
    ids = [s for s in values["external_userids"].replace(",", " ").split() if s]
    raw = {
        "mode": values["mode"],
        "handover_userid": values["handover_userid"],
        "takeover_userid": values["takeover_userid"],
        "external_userids": ids or None,
        "message": values["message"] or None,
    }
    try:
        out = inherit.transfer_customers(con.db, con.actor, b, parse(inherit.TransferIn, raw))
    except SiyuError as exc:
        return _view(con, b, exc.status, transfer_form=_failed(exc, values, con))
    return RedirectResponse(
        f"/b/{b.slug}/wecom?done=transfer&requested={out.requested}", status_code=303
    )
