"""Customer pages: search ``/b/{brand}/customers`` and the Customer 360
``/b/{brand}/customers/{customer}``, with reveal, split and merge, and the customer's tags
(manual ones set and removed here through ``tags.actions.set_manual``).

Reads go through the customers domain's funnel (``queries.access_customer``, ``search``), so
the viewer's data scope applies without this module knowing about it; every value shown is
masked. Revealing a phone, email or name is a POST (CSRF-checked) to
``…/customers/{customer}/reveal`` that calls ``customers.actions.reveal`` — the action checks
``customers.reveal`` and writes the audit entry. With htmx the answer is a fragment swapped in
place of the masked value; without JavaScript it is the whole page.

OneID reviews and the full run live in :mod:`siyu.web.oneid`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import Invalid, SiyuError
from siyu.customers import actions, queries
from siyu.customers.views import Customer360, customer_360, search_rows
from siyu.org.models import Brand
from siyu.tags import actions as tag_actions
from siyu.tags import queries as tag_queries
from siyu.tags.schemas import ManualTagIn
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, has_key, html, page, translator

router = APIRouter(include_in_schema=False)

SEARCH_LIMIT = 50
CUSTOMER_ID = re.compile(r"[0-9A-Za-z]{1,40}")
REVEALABLE = ("name", "phone", "email")


def labeller(locale: str) -> Callable[[str, str | None], str]:
    """``label("id_type", "phone")`` → 手机号; a value without a catalogue entry (a brand's
    custom identifier type, an unknown event) is shown as it is."""
    t = translator(locale)

    def label(family: str, value: str | None) -> str:
        if not value:
            return "—"
        key = f"ui.{family}.{value}"
        return str(t(key)) if has_key(key, locale) else value

    return label


def _pii_values(view: Customer360) -> dict[str, str]:
    """The masked value shown for each revealable field: the name, and the most recently
    seen phone and email (the ones ``actions.reveal`` decrypts)."""
    out = {"name": view.name, "phone": "", "email": ""}
    for field in ("phone", "email"):
        seen = [i for i in view.identities if i.type == field and not i.weak]
        if seen:
            out[field] = max(seen, key=lambda i: i.last_seen_at).value
    return out


@router.get("/b/{brand}/customers")
def search(brand: str, con: Con, q: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    query = q.strip()[:100]
    rows = search_rows(con.db, con.actor, b, query, limit=SEARCH_LIMIT)
    return page(con, "customers.html", b, "customers", q=query, rows=rows, limit=SEARCH_LIMIT)


def customer_page(
    con: Console,
    b: Brand,
    customer_id: str,
    status: int = 200,
    revealed: dict[str, str] | None = None,
    split_form: FormState | None = None,
    merge_form: FormState | None = None,
    notice: dict[str, str] | None = None,
    tag_form: FormState | None = None,
) -> Response:
    customer = queries.access_customer(con.db, con.actor, b, customer_id)
    view = customer_360(con.db, con.actor, b, customer)
    held = tag_queries.customer_tags(con.db, con.actor, b, view.id)
    manual = [
        (t.key, f"{t.name} · {g.name}")
        for g in tag_queries.tag_library(con.db, con.actor, b)
        for t in g.tags
        if t.kind == "manual" and t.status == "active"
    ]
    return page(
        con,
        "customers_360.html",
        b,
        "customers",
        status,
        c=view,
        pii=_pii_values(view),
        revealed=revealed or {},
        label=labeller(con.locale),
        split_form=split_form or FormState(),
        merge_form=merge_form or FormState(),
        notice=notice or {},
        tags=held,
        manual_tags=manual,
        tag_form=tag_form or FormState(),
        canonical=f"/b/{b.slug}/customers/{view.id}",
    )


@router.get("/b/{brand}/customers/{customer}")
def show(
    brand: str, customer: str, con: Con, merged_from: str = "", split: str = "", merged: str = ""
) -> Response:
    b = con.brand(brand, "customers.read")
    found = queries.access_customer(con.db, con.actor, b, customer)
    if found.id != customer:
        # a merged-away id: show the survivor under its own address
        target = f"/b/{b.slug}/customers/{found.id}?merged_from={quote(customer)}"
        return RedirectResponse(target, status_code=303)
    # the notices only ever name customer ids; anything else in the query string is dropped
    given = {"merged_from": merged_from, "split": split, "merged": merged}
    notice = {k: v for k, v in given.items() if CUSTOMER_ID.fullmatch(v)}
    return customer_page(con, b, found.id, notice=notice)


@router.post("/b/{brand}/customers/{customer}/reveal")
def reveal(brand: str, customer: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "customers.read")
    field = text_field(form, "field")
    partial = bool(con.request.headers.get("hx-request"))
    base = {"brand": b, "cid": customer, "field": field}
    try:
        value = actions.reveal(con.db, con.actor, b, customer, field)
    except SiyuError as exc:
        if not partial or field not in REVEALABLE:
            raise
        context = {"value": "", "error": exc.message(con.locale), "error_code": exc.code}
        return html(con.request, "customers_reveal.html", {**base, **context}, exc.status)
    if partial:
        context = {"value": value, "error": "", "error_code": ""}
        return html(con.request, "customers_reveal.html", {**base, **context})
    return customer_page(con, b, customer, revealed={field: value})


@router.post("/b/{brand}/customers/{customer}/split")
def split(brand: str, customer: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "customers.merge")
    current = queries.access_customer(con.db, con.actor, b, customer, "customers.merge")
    identities = [i for i in form.getlist("identity") if isinstance(i, str) and i]
    note = text_field(form, "note")[:400] or None
    try:
        stayed, moved = actions.split_customer(con.db, con.actor, b, current.id, identities, note)
    except SiyuError as exc:
        values: dict[str, Any] = {"identity": identities, "note": note or ""}
        state = FormState.failed(exc, values, con.locale)
        return customer_page(con, b, current.id, exc.status, split_form=state)
    target = f"/b/{b.slug}/customers/{stayed.id}?split={quote(moved.id)}"
    return RedirectResponse(target, status_code=303)


@router.post("/b/{brand}/customers/{customer}/merge")
def merge(brand: str, customer: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "customers.merge")
    current = queries.access_customer(con.db, con.actor, b, customer, "customers.merge")
    other = text_field(form, "other")[:100]
    note = text_field(form, "note")[:400] or None
    try:
        if not other or other == current.id:
            raise Invalid("customers.merge_needs_two")
        survivor = actions.merge_customers(con.db, con.actor, b, [current.id, other], note)
    except SiyuError as exc:
        state = FormState.failed(exc, {"other": other, "note": note or ""}, con.locale)
        if exc.code == "customers.not_found":
            state.errors.setdefault("other", state.message)
        return customer_page(con, b, current.id, exc.status, merge_form=state)
    absorbed = other if survivor.id == current.id else current.id
    target = f"/b/{b.slug}/customers/{survivor.id}?merged={quote(absorbed)}"
    return RedirectResponse(target, status_code=303)


@router.post("/b/{brand}/customers/{customer}/tags")
def set_tag(brand: str, customer: str, con: Con, form: Form) -> Response:
    """Set (``present=1``) or remove (``present=0``) a manual tag on this customer."""
    b = con.brand(brand, "customers.write")
    current = queries.access_customer(con.db, con.actor, b, customer, "customers.write")
    key = text_field(form, "tag")[:64]
    present = text_field(form, "present") != "0"
    try:
        body = ManualTagIn(customer_ids=[current.id], present=present)
        tag_actions.set_manual(con.db, con.actor, b, key, body)
    except SiyuError as exc:
        state = FormState.failed(exc, {"tag": key}, con.locale)
        state.errors.setdefault("tag", state.message)
        return customer_page(con, b, current.id, exc.status, tag_form=state)
    return RedirectResponse(f"/b/{b.slug}/customers/{current.id}#tags", status_code=303)
