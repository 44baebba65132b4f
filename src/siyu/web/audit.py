"""Audit log page: ``/b/{brand}/audit`` — latest entries first, times in the brand's zone."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from siyu.org import queries
from siyu.web.deps import Con
from siyu.web.render import page

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/b/{brand}/audit")
def audit_log(brand: str, con: Con, before: str | None = None) -> Response:
    b = con.brand(brand, "audit.read")
    entries = queries.list_audit(con.db, con.actor, b, limit=PAGE_SIZE + 1, before=before)
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    return page(
        con,
        "audit.html",
        b,
        "audit",
        entries=entries,
        older=entries[-1].id if more else None,
        before=before,
    )
