"""SOP endpoints: definitions (with live counts), templates, enable/disable, the breathing
policy, the decision explorer and a guide's tasks for the workbench."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.org.queries import access_brand
from siyu.sop import actions, queries
from siyu.sop.schemas import (
    KEY,
    DecisionOut,
    GuideTaskOut,
    SopIn,
    SopOut,
    SopPatch,
    TemplateOut,
)

router = APIRouter(tags=["sop"])

READ = "customers.read"
WRITE = "sop.write"


class FromTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(min_length=1, max_length=64)
    key: str | None = Field(default=None, pattern=KEY)
    name: str | None = Field(default=None, min_length=1, max_length=100)
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="top-level fields of the definition to replace (audience, priority …)",
    )


@router.get("/brands/{brand}/sops", response_model=list[SopOut])
def list_sops(
    brand: str,
    db: Db,
    actor: CurrentActor,
    status: Annotated[Literal["draft", "enabled", "disabled"] | None, Query()] = None,
) -> list[SopOut]:
    """The brand's SOPs, highest priority first, with live counts (enrolments active and in
    holdout, touches sent / deferred / suppressed in the last 7 days)."""
    b = access_brand(db, actor, brand, READ)
    return queries.list_sops(db, actor, b, status)


@router.post("/brands/{brand}/sops", response_model=SopOut, status_code=201)
def create_sop(brand: str, body: SopIn, db: Db, actor: CurrentActor) -> SopOut:
    """A new SOP as a draft. Conditions are checked in the tag language (errors carry line
    and column, and ``where``), tags and segments must exist in the brand."""
    b = access_brand(db, actor, brand, WRITE)
    sop = actions.create_sop(db, actor, b, body)
    return queries.show_sop(db, actor, b, sop.key)


@router.post("/brands/{brand}/sops:from-template", response_model=SopOut, status_code=201)
def from_template(brand: str, body: FromTemplateIn, db: Db, actor: CurrentActor) -> SopOut:
    """A draft SOP from a ready-made template (``GET sop-templates``)."""
    b = access_brand(db, actor, brand, WRITE)
    sop = actions.create_from_template(
        db, actor, b, body.template, **{**body.overrides, "key": body.key, "name": body.name}
    )
    return queries.show_sop(db, actor, b, sop.key)


@router.get("/brands/{brand}/sop-templates", response_model=list[TemplateOut])
def templates(brand: str, db: Db, actor: CurrentActor) -> list[TemplateOut]:
    """The ready-made templates and what each needs from the brand."""
    b = access_brand(db, actor, brand, READ)
    return queries.templates(db, actor, b)


@router.get("/brands/{brand}/sops/{sop}", response_model=SopOut)
def show_sop(brand: str, sop: str, db: Db, actor: CurrentActor) -> SopOut:
    b = access_brand(db, actor, brand, READ)
    return queries.show_sop(db, actor, b, sop)


@router.patch("/brands/{brand}/sops/{sop}", response_model=SopOut)
def update_sop(brand: str, sop: str, body: SopPatch, db: Db, actor: CurrentActor) -> SopOut:
    """Change a definition (its version goes up)."""
    b = access_brand(db, actor, brand, WRITE)
    actions.update_sop(db, actor, b, sop, body)
    return queries.show_sop(db, actor, b, sop)


@router.delete("/brands/{brand}/sops/{sop}", status_code=204)
def delete_sop(brand: str, sop: str, db: Db, actor: CurrentActor) -> Response:
    """Delete a draft (an SOP once enabled can only be disabled)."""
    b = access_brand(db, actor, brand, WRITE)
    actions.delete_sop(db, actor, b, sop)
    return Response(status_code=204)


@router.post("/brands/{brand}/sops/{sop}:enable", response_model=SopOut)
def enable_sop(brand: str, sop: str, db: Db, actor: CurrentActor) -> SopOut:
    b = access_brand(db, actor, brand, WRITE)
    actions.enable_sop(db, actor, b, sop)
    return queries.show_sop(db, actor, b, sop)


@router.post("/brands/{brand}/sops/{sop}:disable", response_model=SopOut)
def disable_sop(brand: str, sop: str, db: Db, actor: CurrentActor) -> SopOut:
    """Stop planning the SOP; its enrolments are kept."""
    b = access_brand(db, actor, brand, WRITE)
    actions.disable_sop(db, actor, b, sop)
    return queries.show_sop(db, actor, b, sop)


@router.get("/brands/{brand}/sop-policy", response_model=dict[str, Any])
def get_policy(brand: str, db: Db, actor: CurrentActor) -> dict[str, Any]:
    """The brand's breathing policy (defaults until set)."""
    b = access_brand(db, actor, brand, READ)
    return actions.get_policy(db, actor, b).as_dict()


@router.put("/brands/{brand}/sop-policy", response_model=dict[str, Any])
def set_policy(brand: str, body: dict[str, Any], db: Db, actor: CurrentActor) -> dict[str, Any]:
    """Replace the breathing policy: the given settings over the defaults. A bad setting is
    422 ``sop.policy_invalid`` naming it."""
    b = access_brand(db, actor, brand, WRITE)
    return actions.set_policy(db, actor, b, body).as_dict()


@router.get("/brands/{brand}/sop-decisions", response_model=list[DecisionOut])
def decisions(
    brand: str,
    db: Db,
    actor: CurrentActor,
    customer: Annotated[str | None, Query()] = None,
    sop: Annotated[str | None, Query()] = None,
    status: Annotated[Literal["planned", "sent", "deferred", "suppressed"] | None, Query()] = None,
    reason: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DecisionOut]:
    """The decision explorer: every planned touch with its status, reason code, cause, send
    time and deferral — "why didn't this customer get X?". Customers in your data scope."""
    b = access_brand(db, actor, brand, READ)
    return queries.decisions(db, actor, b, customer, sop, status, reason, limit)


@router.get("/brands/{brand}/guide-tasks", response_model=list[GuideTaskOut])
def guide_tasks(
    brand: str,
    db: Db,
    actor: CurrentActor,
    staff: Annotated[str | None, Query(description="staff id or username; default: you")] = None,
    day: Annotated[date | None, Query(description="brand-local day; default today")] = None,
    status: Annotated[Literal["open", "done", "skipped"] | None, Query()] = None,
) -> list[GuideTaskOut]:
    """A guide's tasks for the day plus open overdue ones, ranked by expected value."""
    b = access_brand(db, actor, brand, READ)
    return queries.guide_tasks(db, actor, b, staff, day, status)
