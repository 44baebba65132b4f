"""Event intake: batches (up to 10,000 events, answered per item), single real-time events
(queued in the inbox, 202) and the brand's event types."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from siyu.api.deps import CurrentActor, Db
from siyu.core.errors import FieldError, Invalid, SiyuError, TooLarge
from siyu.ingest import actions, queries
from siyu.ingest.catalogue import Envelope
from siyu.ingest.schemas import (
    MAX_BATCH,
    BatchIn,
    BatchOut,
    CustomEventIn,
    CustomEventOut,
    EventQueued,
)
from siyu.org.queries import access_brand

router = APIRouter(tags=["events"])
# 10,000 events of about 1 KB each, with room to spare; checked before anything is parsed.
MAX_BODY = 32 * 1024 * 1024
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}},
    }
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge("http.too_large", limit=f"{limit // (1024 * 1024)} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a client may lie about, or omit, Content-Length
            raise TooLarge("http.too_large", limit=f"{limit // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def _events_of(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SiyuError("http.malformed_body", reason=str(exc)[:200]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("events"), list) or len(data) != 1:
        raise Invalid(
            "validation.failed",
            errors=[FieldError("invalid.shape", "events", None, 'expected {"events": [...]}')],
        )
    events: list[Any] = data["events"]
    if len(events) > MAX_BATCH:
        raise TooLarge("http.too_large", limit=f"{MAX_BATCH} events")
    return events


@router.post(
    "/brands/{brand}/events:batch",
    response_model=BatchOut,
    openapi_extra=_BATCH_BODY,
    responses={413: {"description": "More than 10,000 events or a body over 32 MB"}},
)
async def events_batch(brand: str, request: Request, db: Db, actor: CurrentActor) -> BatchOut:
    """Ingest up to 10,000 events. Each item is answered: ``accepted``, ``duplicate`` (its
    event_id was stored before, or earlier in this batch) or ``rejected`` with errors."""
    b = access_brand(db, actor, brand, "events.write")
    events = _events_of(await _read_body(request, MAX_BODY))
    # The work is CPU-bound and synchronous: keep it off the event loop.
    return await run_in_threadpool(actions.ingest_batch, db, actor, b, events)


@router.post("/brands/{brand}/events", response_model=EventQueued, status_code=202)
def event_single(brand: str, body: Envelope, db: Db, actor: CurrentActor) -> EventQueued:
    """Accept one real-time event: validated now, written to the lake by ``siyu worker``."""
    b = access_brand(db, actor, brand, "events.write")
    return actions.accept_event(db, actor, b, body.model_dump(mode="json"))


@router.get("/brands/{brand}/event-types")
def event_types(brand: str, db: Db, actor: CurrentActor) -> list[dict[str, Any]]:
    """The standard catalogue and the brand's own event types, with their fields."""
    b = access_brand(db, actor, brand, "org.read")
    return queries.catalogue(db, b)


@router.post("/brands/{brand}/event-types", response_model=CustomEventOut, status_code=201)
def declare_event_type(brand: str, body: CustomEventIn, db: Db, actor: CurrentActor) -> Any:
    b = access_brand(db, actor, brand, "events.write")
    return actions.declare_event_type(db, actor, b, body)


__all__ = ["BatchIn", "router"]
