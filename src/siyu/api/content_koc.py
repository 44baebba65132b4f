"""KOC / UGC note endpoints under ``/brands/{brand}/content/koc-notes``.

- ``POST …/koc-notes`` submits a note: staff with ``content.submit``, or the brand's H5 form
  calling with an API key of the brand scoped ``content.submit`` only (the "brand token": it
  can submit, nothing else; naming a customer also needs ``customers.read``). The link is
  checked against the platform's hosts and a post already submitted is a 409.
- ``POST …/koc-notes:import`` submits many (per-row errors, duplicates counted, good rows kept).
- ``GET …/koc-notes`` and ``GET …/koc-notes/{note}`` read notes in the caller's data scope;
  ``GET …/koc-notes/{note}/attribution`` what a note brought (customers, new customers,
  orders, GMV in fen, counted clicks; customers listed with masked PII).
- ``POST …/koc-notes/{note}:approve`` / ``:reject`` review a note (``content.write``); an
  approval pays its reward once, however often it is repeated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.content import ugc
from siyu.org.queries import access_brand

router = APIRouter(tags=["content"])
P = "/brands/{brand}/content/koc-notes"


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(max_length=400)


class KocImportOut(BaseModel):
    total: int
    created: int
    unchanged: int
    rejected: int
    errors: list[dict[str, Any]]
    ids: list[str]


@router.get(P, response_model=list[ugc.KocNoteOut])
def list_notes(
    brand: str,
    db: Db,
    actor: CurrentActor,
    status: Annotated[str | None, Query(max_length=12)] = None,
    platform: Annotated[str | None, Query(max_length=24)] = None,
    q: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ugc.KocNoteOut]:
    b = access_brand(db, actor, brand, "customers.read")
    notes = ugc.list_notes(db, actor, b, status=status, platform=platform, query=q, limit=limit)
    return [ugc.note_out(n) for n in notes]


@router.post(P, response_model=ugc.KocNoteOut, status_code=201)
def submit_note(brand: str, body: ugc.KocNoteIn, db: Db, actor: CurrentActor) -> ugc.KocNoteOut:
    """Submit a note with its link (Xiaohongshu, Douyin, Weibo, WeChat Channels, Dianping or
    another public host); ``content.koc_duplicate`` (409) for a post already submitted."""
    b = access_brand(db, actor, brand, ugc.SUBMIT)
    source = "h5" if actor.kind == "api_key" else "staff"
    return ugc.note_out(ugc.submit_note(db, actor, b, body, source=source))


@router.post(f"{P}:import", response_model=KocImportOut)
def import_notes(
    brand: str, body: list[dict[str, Any]], db: Db, actor: CurrentActor
) -> KocImportOut:
    b = access_brand(db, actor, brand, ugc.SUBMIT)
    return KocImportOut(**ugc.import_notes(db, actor, b, body, first_row=1).as_dict())


@router.get(f"{P}/{{note}}", response_model=ugc.KocNoteOut)
def get_note(brand: str, note: str, db: Db, actor: CurrentActor) -> ugc.KocNoteOut:
    b = access_brand(db, actor, brand, "customers.read")
    return ugc.note_out(ugc.get_note(db, actor, b, note))


@router.get(f"{P}/{{note}}/attribution", response_model=ugc.KocStatsOut)
def attribution(brand: str, note: str, db: Db, actor: CurrentActor) -> ugc.KocStatsOut:
    b = access_brand(db, actor, brand, "customers.read")
    row = ugc.get_note(db, actor, b, note)
    return ugc.stats_out(ugc.attribution(db, actor, b, [row])[row.id])


@router.post(f"{P}/{{note}}:approve", response_model=ugc.KocNoteOut)
def approve(
    brand: str, note: str, body: ugc.KocApproval, db: Db, actor: CurrentActor
) -> ugc.KocNoteOut:
    b = access_brand(db, actor, brand, ugc.REVIEW)
    return ugc.note_out(ugc.approve_note(db, actor, b, note, body))


@router.post(f"{P}/{{note}}:reject", response_model=ugc.KocNoteOut)
def reject(brand: str, note: str, body: RejectIn, db: Db, actor: CurrentActor) -> ugc.KocNoteOut:
    b = access_brand(db, actor, brand, ugc.REVIEW)
    return ugc.note_out(ugc.reject_note(db, actor, b, note, body.reason))
