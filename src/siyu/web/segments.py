"""Segment pages: ``/b/{brand}/segments`` (the list, the segment builder with live count and
masked preview, snapshots, exports) and ``/b/{brand}/segments/{segment}/edit``.

A definition is a rule of the tag language in which every tag is a boolean column
``tag_<key>`` (:mod:`siyu.tags.segments`). While it is typed, htmx asks
``GET /b/{brand}/segments/preview?definition=…`` for the count and the first members, with
masked name and phone. An export is a POST (CSRF-checked) answered with the file itself; the
domain checks ``segments.export`` and audits it with its row count.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import SiyuError
from siyu.core.validation import parse
from siyu.org.models import Brand
from siyu.org.permissions import permissions_on
from siyu.org.queries import brand_ref
from siyu.tags import segments
from siyu.tags.schemas import SegmentIn, SegmentPatch
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import SECURITY_HEADERS, FormState, page
from siyu.web.tags import check_answer, check_rule

router = APIRouter(include_in_schema=False)

KEY = re.compile(r"[a-z][a-z0-9_]{1,63}")
FIELDS = ("key", "name", "definition", "description")
EDIT_FIELDS = ("name", "definition", "description")
DONE = ("created", "updated", "snapshot")


def _definition_errors(state: FormState, exc: SiyuError) -> FormState:
    if "position" in exc.params or exc.code.startswith("tags."):
        state.errors.setdefault("definition", state.message)
    if exc.code == "segments.exists":
        state.errors.setdefault("key", state.message)
    return state


def segments_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    notice: dict[str, str] | None = None,
    error: SiyuError | None = None,
) -> Response:
    found = segments.list_segments(con.db, con.actor, b)
    rows: list[dict[str, Any]] = [
        {"segment": s, "snapshot": segments.latest_snapshot(con.db, b, s)} for s in found
    ]
    state = form or FormState()
    definition = str(state.value("definition") or "")
    return page(
        con,
        "segments.html",
        b,
        "segments",
        status,
        rows=rows,
        form=state,
        check=check_rule(con, b, definition, definition=True, preview=True) if definition else None,
        formats=segments.EXPORT_FORMATS,
        notice=notice or {},
        error=error.message(con.locale) if error else "",
        error_code=error.code if error else "",
        canonical=f"/b/{b.slug}/segments",
    )


@router.get("/b/{brand}/segments")
def list_segments(brand: str, con: Con, done: str = "", segment: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    ok = done in DONE and KEY.fullmatch(segment)
    return segments_page(con, b, notice={"done": done, "segment": segment} if ok else {})


@router.get("/b/{brand}/segments/preview")
def preview(brand: str, con: Con, definition: str = "") -> Response:
    b = con.brand(brand, "tags.write")
    result = check_rule(con, b, definition, definition=True, preview=True)
    return check_answer(con, b, result, "definition")


@router.post("/b/{brand}/segments")
def create(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    values = {name: text_field(form, name) for name in FIELDS}
    try:
        seg = segments.create(
            con.db, con.actor, b, parse(SegmentIn, {k: v for k, v in values.items() if v})
        )
    except SiyuError as exc:
        state = _definition_errors(FormState.failed(exc, values, con.locale), exc)
        return segments_page(con, b, exc.status, form=state)
    query = urlencode({"done": "created", "segment": seg.key})
    return RedirectResponse(f"/b/{b.slug}/segments?{query}", status_code=303)


def edit_page(
    con: Console, b: Brand, key: str, status: int = 200, form: FormState | None = None
) -> Response:
    segments.list_segments(con.db, con.actor, b)  # the read permission
    seg = segments.segment_by_key(con.db, b, key)
    values = {"name": seg.name, "definition": seg.definition, "description": seg.description or ""}
    state = form or FormState(values=values)
    definition = str(state.value("definition") or "")
    return page(
        con,
        "segments_edit.html",
        b,
        "segments",
        status,
        seg=seg,
        snapshot=segments.latest_snapshot(con.db, b, seg),
        form=state,
        check=check_rule(con, b, definition, definition=True, preview=True)
        if definition and "tags.write" in permissions_on(con.actor, brand_ref(b))
        else None,
        formats=segments.EXPORT_FORMATS,
        canonical=f"/b/{b.slug}/segments/{seg.key}/edit",
    )


@router.get("/b/{brand}/segments/{segment}/edit")
def edit(brand: str, segment: str, con: Con) -> Response:
    b = con.brand(brand, "customers.read")
    return edit_page(con, b, segment)


@router.post("/b/{brand}/segments/{segment}/edit")
def update(brand: str, segment: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    values = {name: text_field(form, name) for name in EDIT_FIELDS}
    try:
        seg = segments.update(
            con.db,
            con.actor,
            b,
            segment,
            parse(SegmentPatch, {k: v for k, v in values.items() if v}),
        )
    except SiyuError as exc:
        if exc.code == "segments.not_found":
            raise
        state = _definition_errors(FormState.failed(exc, values, con.locale), exc)
        return edit_page(con, b, segment, exc.status, form=state)
    query = urlencode({"done": "updated", "segment": seg.key})
    return RedirectResponse(f"/b/{b.slug}/segments?{query}", status_code=303)


@router.post("/b/{brand}/segments/{segment}/snapshot")
def snapshot(brand: str, segment: str, con: Con) -> Response:
    b = con.brand(brand, "tags.write")
    try:
        segments.snapshot(con.db, con.actor, b, segment)
    except SiyuError as exc:
        if exc.code == "segments.not_found":
            raise
        return segments_page(con, b, exc.status, error=exc)
    query = urlencode({"done": "snapshot", "segment": segment})
    return RedirectResponse(f"/b/{b.slug}/segments?{query}", status_code=303)


@router.post("/b/{brand}/segments/{segment}/export")
def export(brand: str, segment: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "segments.export")
    name, data, media = segments.export(con.db, con.actor, b, segment, text_field(form, "format"))
    disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
    headers = {**SECURITY_HEADERS, "Content-Disposition": disposition}
    return Response(data, media_type=media, headers=headers)
