"""Content endpoints: the material library (own and agency-shared) with versions and folders,
template checks and previews, content settings (allowed redirect domains, UTM), tracking
links and clicks, materials and A/B/n variants on SOP touch steps, performance per material
and per variant — and the public tracking-link redirect ``GET /t/{code}`` (no login)."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.content import actions, queries, templating
from siyu.content.schemas import (
    ClickOut,
    FolderIn,
    FolderOut,
    ImportResult,
    LinkIn,
    LinkOut,
    MaterialIn,
    MaterialOut,
    MaterialPatch,
    PerformanceOut,
    PreviewIn,
    PreviewOut,
    SettingsIn,
    SettingsOut,
    StepContentIn,
    VariantResults,
    VersionOut,
)
from siyu.org.queries import access_brand
from siyu.sop import queries as sop_queries
from siyu.sop.schemas import SopOut

router = APIRouter(tags=["content"])
public_router = APIRouter(tags=["content"])

READ = "org.read"
CUSTOMERS = "customers.read"
WRITE = "content.write"
P = "/brands/{brand}/content"


class TemplateCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20_000)


class TemplateCheckOut(BaseModel):
    ok: bool
    variables: list[str]


class VariableOut(BaseModel):
    name: str
    description: str
    attributes: list[str]


@router.get(f"{P}/materials", response_model=list[MaterialOut])
def list_materials(
    brand: str,
    db: Db,
    actor: CurrentActor,
    q: Annotated[str, Query(max_length=100)] = "",
    kind: Annotated[str | None, Query(max_length=16)] = None,
    tag: Annotated[str | None, Query(max_length=80)] = None,
    folder: Annotated[str | None, Query(max_length=26)] = None,
    library: Annotated[Literal["brand", "agency"] | None, Query()] = None,
    status: Annotated[Literal["active", "archived"] | None, Query()] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[MaterialOut]:
    """The library: the brand's materials and its agency's shared ones, newest first."""
    b = access_brand(db, actor, brand, READ)
    return queries.list_materials(
        db,
        actor,
        b,
        q=q,
        kind=kind,
        tag=tag,
        folder_id=folder,
        library=library,
        status=status,
        limit=limit,
    )


@router.post(f"{P}/materials", response_model=MaterialOut, status_code=201)
def create_material(brand: str, body: MaterialIn, db: Db, actor: CurrentActor) -> MaterialOut:
    """A new material. Platform limits (WeCom text ≤ 4,000 bytes, ≤ 9 attachments, link
    title/description lengths, mini-program appid/page …) and templates (known variables,
    no forbidden constructs) are checked; every problem is listed with its field."""
    b = access_brand(db, actor, brand, WRITE)
    m = actions.create_material(db, actor, b, body)
    return queries.get_material(db, actor, b, m.id)


@router.post(f"{P}/materials:import", response_model=ImportResult)
def import_materials(
    brand: str, body: list[dict[str, Any]], db: Db, actor: CurrentActor
) -> ImportResult:
    """Create many materials; bad rows are reported (row, field, code), good ones kept."""
    b = access_brand(db, actor, brand, WRITE)
    return actions.import_materials(db, actor, b, body[:1000])


@router.get(f"{P}/materials/{{material}}", response_model=MaterialOut)
def get_material(brand: str, material: str, db: Db, actor: CurrentActor) -> MaterialOut:
    b = access_brand(db, actor, brand, READ)
    return queries.get_material(db, actor, b, material)


@router.patch(f"{P}/materials/{{material}}", response_model=MaterialOut)
def update_material(
    brand: str, material: str, body: MaterialPatch, db: Db, actor: CurrentActor
) -> MaterialOut:
    """Edit a material; a new body or fallbacks makes a new version (old ones are kept)."""
    b = access_brand(db, actor, brand, WRITE)
    actions.update_material(db, actor, b, material, body)
    return queries.get_material(db, actor, b, material)


@router.get(f"{P}/materials/{{material}}/versions", response_model=list[VersionOut])
def versions(brand: str, material: str, db: Db, actor: CurrentActor) -> list[VersionOut]:
    b = access_brand(db, actor, brand, READ)
    return queries.versions(db, actor, b, material)


@router.get(f"{P}/folders", response_model=list[FolderOut])
def list_folders(brand: str, db: Db, actor: CurrentActor) -> list[FolderOut]:
    b = access_brand(db, actor, brand, READ)
    return queries.list_folders(db, actor, b)


@router.post(f"{P}/folders", response_model=FolderOut, status_code=201)
def create_folder(brand: str, body: FolderIn, db: Db, actor: CurrentActor) -> FolderOut:
    b = access_brand(db, actor, brand, WRITE)
    f = actions.create_folder(db, actor, b, body)
    return FolderOut(
        id=f.id, name=f.name, parent_id=f.parent_id, library="agency" if f.agency_id else "brand"
    )


@router.get(f"{P}/settings", response_model=SettingsOut)
def get_settings(brand: str, db: Db, actor: CurrentActor) -> SettingsOut:
    b = access_brand(db, actor, brand, READ)
    return queries.get_settings(db, actor, b)


@router.put(f"{P}/settings", response_model=SettingsOut)
def set_settings(brand: str, body: SettingsIn, db: Db, actor: CurrentActor) -> SettingsOut:
    """The domains tracking links may redirect to (subdomains included) and UTM defaults."""
    b = access_brand(db, actor, brand, WRITE)
    actions.set_settings(db, actor, b, body)
    return queries.get_settings(db, actor, b)


@router.get(f"{P}/variables", response_model=list[VariableOut])
def variables(brand: str, db: Db, actor: CurrentActor) -> list[VariableOut]:
    """The template variables and their allowed attributes."""
    access_brand(db, actor, brand, READ)
    return [
        VariableOut(
            name=k, description=v, attributes=sorted(templating.ATTRIBUTES.get(k, frozenset()))
        )
        for k, v in templating.VARIABLES.items()
    ]


@router.post(f"{P}/templates:check", response_model=TemplateCheckOut)
def check_template(
    brand: str, body: TemplateCheckIn, db: Db, actor: CurrentActor
) -> TemplateCheckOut:
    """Check a template as saving would: 422 with the code, line, column and name of an
    unknown variable or a forbidden construct."""
    access_brand(db, actor, brand, WRITE)
    return TemplateCheckOut(ok=True, variables=list(templating.check(body.text).variables))


@router.post(f"{P}/preview", response_model=PreviewOut)
def preview(brand: str, body: PreviewIn, db: Db, actor: CurrentActor) -> PreviewOut:
    """Render a template or a material for a real customer in your data scope, PII masked
    (an editor's tool: needs ``content.write``)."""
    b = access_brand(db, actor, brand, WRITE)
    return queries.preview(db, actor, b, body)


@router.get(f"{P}/links", response_model=list[LinkOut])
def list_links(
    brand: str,
    db: Db,
    actor: CurrentActor,
    material: Annotated[str | None, Query(max_length=26)] = None,
    koc_note: Annotated[str | None, Query(max_length=26)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LinkOut]:
    b = access_brand(db, actor, brand, READ)
    return queries.list_links(db, actor, b, material_id=material, koc_note_id=koc_note, limit=limit)


@router.post(f"{P}/links", response_model=LinkOut, status_code=201)
def create_link(brand: str, body: LinkIn, db: Db, actor: CurrentActor) -> LinkOut:
    """A tracking link (``/t/{code}``) to one of the brand's allowed domains; anything else
    is 422 ``content.redirect_refused`` with the reason."""
    b = access_brand(db, actor, brand, WRITE)
    link = actions.create_link(db, actor, b, body)
    return queries.get_link(db, actor, b, link.code)


@router.get(f"{P}/links/{{code}}", response_model=LinkOut)
def get_link(brand: str, code: str, db: Db, actor: CurrentActor) -> LinkOut:
    b = access_brand(db, actor, brand, READ)
    return queries.get_link(db, actor, b, code)


@router.get(f"{P}/clicks", response_model=list[ClickOut])
def list_clicks(
    brand: str,
    db: Db,
    actor: CurrentActor,
    code: Annotated[str | None, Query(max_length=16)] = None,
    bots: Annotated[bool, Query(description="include bot/preview requests")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ClickOut]:
    """Recent clicks, newest first (customers named only within your data scope)."""
    b = access_brand(db, actor, brand, CUSTOMERS)
    return queries.clicks(db, actor, b, code=code, include_bots=bots, limit=limit)


@router.post(f"{P}/sops/{{sop}}:set-content", response_model=SopOut)
def set_step_content(
    brand: str, sop: str, body: StepContentIn, db: Db, actor: CurrentActor
) -> SopOut:
    """Put a material, or A/B/n variants of materials with weights, on a touch step (the
    current versions are pinned; the SOP's version goes up). Needs ``sop.write`` too."""
    b = access_brand(db, actor, brand, WRITE)
    s = actions.set_step_content(db, actor, b, sop, body)
    return sop_queries.show_sop(db, actor, b, s.key)


@router.get(f"{P}/sops/{{sop}}/variants", response_model=VariantResults)
def variant_results(
    brand: str,
    sop: str,
    db: Db,
    actor: CurrentActor,
    step: Annotated[int, Query(ge=0, le=49)] = 0,
    metric: Annotated[Literal["reply", "click", "order", "gmv"], Query()] = "click",
    window: Annotated[int, Query(ge=1, le=90, description="attribution days")] = 7,
    days: Annotated[int, Query(ge=1, le=366)] = 90,
    confidence: Annotated[float, Query(ge=0.5, lt=1)] = 0.95,
) -> VariantResults:
    """Per variant: customers, successes, rate or GMV per customer, lift against the control,
    confidence interval and p-value (two-proportion z-test; Welch's t-test for GMV)."""
    b = access_brand(db, actor, brand, CUSTOMERS)
    return queries.variant_results(
        db,
        actor,
        b,
        sop,
        step,
        metric=metric,
        window_days=window,
        days=days,
        confidence=confidence,
    )


@router.get(f"{P}/performance", response_model=PerformanceOut)
def performance(
    brand: str,
    db: Db,
    actor: CurrentActor,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    window: Annotated[int, Query(ge=1, le=90, description="attribution days")] = 7,
    segment: Annotated[str | None, Query(max_length=64)] = None,
) -> PerformanceOut:
    """Per material: sends, delivered, replies, clicks, orders and GMV (fen) within the
    attribution window; best and worst materials (optionally within a segment)."""
    b = access_brand(db, actor, brand, CUSTOMERS)
    return queries.performance(db, actor, b, days=days, window_days=window, segment=segment)


# ---------------------------------------------------------------- public redirect


class _Limiter:
    """Requests per client in a sliding second-window, kept in memory: a best-effort brake on
    one client hammering the redirect (each allowed request writes one row)."""

    def __init__(self, per_minute: int = 120) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 50_000:
                self._hits.clear()
            hits = [t for t in self._hits.get(key, []) if now - t < 60]
            if len(hits) >= self.per_minute:
                self._hits[key] = hits
                return False
            hits.append(now)
            self._hits[key] = hits
            return True


LIMITER = _Limiter()


@public_router.api_route(
    "/t/{code}", methods=["GET", "HEAD"], include_in_schema=False, response_model=None
)
def follow_link(code: str, request: Request, db: Db) -> Response:
    """A tracking link: record the click (bots and previews flagged, not counted) and
    redirect to the target with its UTM parameters — only to the brand's allowed domains."""
    if len(code) > 16 or not code.isalnum():
        return PlainTextResponse("not found", status_code=404)
    ip = request.client.host if request.client else ""
    key = hashlib.sha256(ip.encode()).hexdigest()[:16]
    if not LIMITER.allow(key):
        return PlainTextResponse("too many requests", status_code=429)
    got = actions.record_click(
        db,
        code,
        method=request.method,
        user_agent=request.headers.get("user-agent"),
        ip=ip,
        params={k: v[:64] for k, v in request.query_params.items() if k in ("c", "t", "s")},
    )
    if got.target is None:
        status = 400 if got.reason == "redirect_refused" else 404
        return PlainTextResponse(got.reason or "not found", status_code=status)
    response = RedirectResponse(got.target, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
