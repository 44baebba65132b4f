"""Tag and segment endpoints: the tag library with health, rule checks with a live count,
tag definitions, manual tags, computation runs, value model fit, segments, snapshots and
exports."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.core.errors import Invalid
from siyu.org.queries import access_brand
from siyu.tags import actions, queries, rules, segments
from siyu.tags.lang import check_rule, to_json
from siyu.tags.schemas import (
    CustomerTagOut,
    ManualTagIn,
    PreviewRow,
    RuleCheckIn,
    RuleCheckOut,
    RunIn,
    RunOut,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    SettingsIn,
    SnapshotOut,
    TagGroupIn,
    TagGroupOut,
    TagIn,
    TagOut,
    TagPatch,
)

router = APIRouter(tags=["tags"])


def _tag_out(db: Db, actor: CurrentActor, brand: Any, key: str) -> TagOut:
    for group in queries.tag_library(db, actor, brand):
        for tag in group.tags:
            if tag.key == key:
                return tag
    raise AssertionError(key)  # the caller has just found or written it


@router.get("/brands/{brand}/tags", response_model=list[TagGroupOut])
def library(brand: str, db: Db, actor: CurrentActor) -> list[TagGroupOut]:
    """Every tag group with its tags and each tag's health (ok, stale, failing, never,
    paused), members, last run, duration and last error."""
    b = access_brand(db, actor, brand, "customers.read")
    return queries.tag_library(db, actor, b)


@router.get("/brands/{brand}/tags/health", response_model=list[TagOut])
def health(brand: str, db: Db, actor: CurrentActor) -> list[TagOut]:
    """Tags that are failing, stale or were never computed."""
    b = access_brand(db, actor, brand, "customers.read")
    return queries.problems(db, actor, b)


@router.post("/brands/{brand}/tag-groups", response_model=TagGroupOut, status_code=201)
def create_group(brand: str, body: TagGroupIn, db: Db, actor: CurrentActor) -> TagGroupOut:
    b = access_brand(db, actor, brand, "tags.write")
    group = actions.create_group(db, actor, b, body)
    return next(g for g in queries.tag_library(db, actor, b) if g.key == group.key)


@router.post("/brands/{brand}/tags", response_model=TagOut, status_code=201)
def create_tag(brand: str, body: TagIn, db: Db, actor: CurrentActor) -> TagOut:
    """A rule tag (``rule`` text or ``rule_json`` tree) or a manual tag."""
    b = access_brand(db, actor, brand, "tags.write")
    tag = actions.create_tag(db, actor, b, body)
    return _tag_out(db, actor, b, tag.key)


@router.patch("/brands/{brand}/tags/{tag}", response_model=TagOut)
def update_tag(brand: str, tag: str, body: TagPatch, db: Db, actor: CurrentActor) -> TagOut:
    b = access_brand(db, actor, brand, "tags.write")
    actions.update_tag(db, actor, b, tag, body)
    return _tag_out(db, actor, b, tag)


@router.delete("/brands/{brand}/tags/{tag}", status_code=204)
def delete_tag(brand: str, tag: str, db: Db, actor: CurrentActor) -> Response:
    b = access_brand(db, actor, brand, "tags.write")
    actions.delete_tag(db, actor, b, tag)
    return Response(status_code=204)


@router.post("/brands/{brand}/tags:check", response_model=RuleCheckOut)
def check(brand: str, body: RuleCheckIn, db: Db, actor: CurrentActor) -> RuleCheckOut:
    """Check a rule (text or JSON tree) as the builder edits it: its canonical text and tree
    and the live count of customers it selects, or the error with its position."""
    b = access_brand(db, actor, brand, "tags.write")
    try:
        text = rules.normalise(db, b, body.rule, body.rule_json)
        tree = to_json(check_rule(text, rules.catalogue(db, b)).tree)
        count = segments.count(db, actor, b, text)
    except Invalid as exc:
        return RuleCheckOut(
            ok=False, error={"code": exc.code, "message": exc.message("en"), **exc.params}
        )
    return RuleCheckOut(ok=True, rule=text, rule_json=tree, count=count)


@router.put("/brands/{brand}/tags/{tag}/customers", response_model=dict[str, int])
def set_manual(
    brand: str, tag: str, body: ManualTagIn, db: Db, actor: CurrentActor
) -> dict[str, int]:
    """Set (``present: true``) or remove a manual tag on customers in your data scope."""
    b = access_brand(db, actor, brand, "customers.write")
    return actions.set_manual(db, actor, b, tag, body)


@router.put("/brands/{brand}/tag-settings", response_model=dict[str, Any])
def settings(brand: str, body: SettingsIn, db: Db, actor: CurrentActor) -> dict[str, Any]:
    """Brand-set parameters: RFM cut points, lifecycle days, value model horizon."""
    b = access_brand(db, actor, brand, "tags.write")
    group = actions.update_settings(db, actor, b, body)
    return dict(group.settings.get("params", {}))


@router.post("/brands/{brand}/tags:compute", response_model=RunOut)
def compute(brand: str, body: RunIn, db: Db, actor: CurrentActor) -> Any:
    """Compute now: ``auto`` (incremental unless the brand-local day changed), ``full`` or
    ``incremental``. Tags that fail are reported in the run and flagged, others still run."""
    b = access_brand(db, actor, brand, "tags.write")
    return RunOut.model_validate(actions.compute(db, actor, b, body), from_attributes=True)


@router.get("/brands/{brand}/tag-runs", response_model=list[RunOut])
def runs(
    brand: str, db: Db, actor: CurrentActor, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[RunOut]:
    b = access_brand(db, actor, brand, "customers.read")
    return [
        RunOut.model_validate(r, from_attributes=True) for r in queries.runs(db, actor, b, limit)
    ]


@router.get("/brands/{brand}/customers/{customer}/tags", response_model=list[CustomerTagOut])
def customer_tags(brand: str, customer: str, db: Db, actor: CurrentActor) -> list[CustomerTagOut]:
    b = access_brand(db, actor, brand, "customers.read")
    return queries.customer_tags(db, actor, b, customer)


class ValueFitOut(BaseModel):
    bgnbd: dict[str, float]
    gamma_gamma: dict[str, float]
    meta: dict[str, Any]


@router.get("/brands/{brand}/value-model", response_model=ValueFitOut)
def value_fit(
    brand: str, db: Db, actor: CurrentActor, until: Annotated[date | None, Query()] = None
) -> Any:
    """BG/NBD and Gamma-Gamma fitted on the brand's net purchases up to ``until``."""
    b = access_brand(db, actor, brand, "customers.read")
    return queries.fit_value_model(db, actor, b, until)


# ---------------------------------------------------------------- segments


def _segment_out(seg: Any) -> SegmentOut:
    return SegmentOut.model_validate(seg, from_attributes=True)


@router.get("/brands/{brand}/segments", response_model=list[SegmentOut])
def list_segments(brand: str, db: Db, actor: CurrentActor) -> list[SegmentOut]:
    b = access_brand(db, actor, brand, "customers.read")
    return [_segment_out(s) for s in segments.list_segments(db, actor, b)]


@router.post("/brands/{brand}/segments", response_model=SegmentOut, status_code=201)
def create_segment(brand: str, body: SegmentIn, db: Db, actor: CurrentActor) -> SegmentOut:
    b = access_brand(db, actor, brand, "tags.write")
    return _segment_out(segments.create(db, actor, b, body))


@router.patch("/brands/{brand}/segments/{segment}", response_model=SegmentOut)
def update_segment(
    brand: str, segment: str, body: SegmentPatch, db: Db, actor: CurrentActor
) -> SegmentOut:
    b = access_brand(db, actor, brand, "tags.write")
    return _segment_out(segments.update(db, actor, b, segment, body))


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: str = Field(min_length=1, max_length=4000)
    limit: int = Field(default=20, ge=0, le=200)


class PreviewOut(BaseModel):
    count: int
    rows: list[PreviewRow]


@router.post("/brands/{brand}/segments:preview", response_model=PreviewOut)
def preview(brand: str, body: PreviewIn, db: Db, actor: CurrentActor) -> PreviewOut:
    """The live count of a definition and its first members, PII masked."""
    b = access_brand(db, actor, brand, "tags.write")
    total, rows = segments.preview(db, actor, b, body.definition, body.limit)
    return PreviewOut(count=total, rows=rows)


@router.post("/brands/{brand}/segments/{segment}:snapshot", response_model=SnapshotOut)
def snapshot(brand: str, segment: str, db: Db, actor: CurrentActor) -> SnapshotOut:
    b = access_brand(db, actor, brand, "tags.write")
    snap = segments.snapshot(db, actor, b, segment)
    return SnapshotOut(
        id=snap.id,
        segment=segment,
        taken_at=snap.taken_at,
        count=snap.count,
        definition=snap.definition,
    )


@router.get(
    "/brands/{brand}/segments/{segment}/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/octet-stream": {}}}},
)
def export(
    brand: str,
    segment: str,
    db: Db,
    actor: CurrentActor,
    format: Annotated[Literal["csv", "xlsx", "audience"], Query()] = "csv",
) -> Response:
    """The latest snapshot as CSV or XLSX (masked), or an audience pack (MD5 and SHA-256 of
    each member's normalised phone). Audited."""
    b = access_brand(db, actor, brand, "segments.export")
    name, data, media = segments.export(db, actor, b, segment, format)
    return Response(
        content=data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
