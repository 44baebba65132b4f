"""Customer endpoints: search, the Customer 360, reveal, merge, split, OneID reviews."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.customers import actions, queries
from siyu.customers.views import Customer360, CustomerRowOut, customer_360, search_rows
from siyu.org.queries import access_brand

router = APIRouter(tags=["customers"])


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="phone, email or name")


class RevealOut(BaseModel):
    field: str
    value: str


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: list[str] = Field(min_length=2, max_length=20)
    note: str | None = Field(default=None, max_length=400)


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity_ids: list[str] = Field(min_length=1, max_length=50)
    note: str | None = Field(default=None, max_length=400)


class SplitOut(BaseModel):
    stayed: str
    moved: str


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    note: str | None = Field(default=None, max_length=400)


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    id_types: list[str]
    customer_ids: list[str]
    status: str
    note: str | None
    decided_by: str | None


@router.get("/brands/{brand}/customers", response_model=list[CustomerRowOut])
def search(
    brand: str,
    db: Db,
    actor: CurrentActor,
    q: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CustomerRowOut]:
    b = access_brand(db, actor, brand, "customers.read")
    return search_rows(db, actor, b, q, limit)


@router.get("/brands/{brand}/customers/{customer}", response_model=Customer360)
def show(brand: str, customer: str, db: Db, actor: CurrentActor) -> Customer360:
    b = access_brand(db, actor, brand, "customers.read")
    return customer_360(db, actor, b, queries.access_customer(db, actor, b, customer))


@router.post("/brands/{brand}/customers/{customer}:reveal", response_model=RevealOut)
def reveal(brand: str, customer: str, body: RevealIn, db: Db, actor: CurrentActor) -> RevealOut:
    b = access_brand(db, actor, brand, "customers.reveal")
    return RevealOut(field=body.field, value=actions.reveal(db, actor, b, customer, body.field))


@router.post("/brands/{brand}/customers:merge", response_model=Customer360)
def merge(brand: str, body: MergeIn, db: Db, actor: CurrentActor) -> Customer360:
    b = access_brand(db, actor, brand, "customers.merge")
    merged = actions.merge_customers(db, actor, b, body.customer_ids, body.note)
    return customer_360(db, actor, b, merged)


@router.post("/brands/{brand}/customers/{customer}:split", response_model=SplitOut)
def split(brand: str, customer: str, body: SplitIn, db: Db, actor: CurrentActor) -> SplitOut:
    b = access_brand(db, actor, brand, "customers.merge")
    stayed, moved = actions.split_customer(db, actor, b, customer, body.identity_ids, body.note)
    return SplitOut(stayed=stayed.id, moved=moved.id)


@router.get("/brands/{brand}/oneid/reviews", response_model=list[ReviewOut])
def reviews(
    brand: str, db: Db, actor: CurrentActor, status: Annotated[str, Query()] = "open"
) -> list[Any]:
    b = access_brand(db, actor, brand, "customers.merge")
    return list(queries.reviews(db, actor, b, status))


@router.post("/brands/{brand}/oneid/reviews/{review}:decide", response_model=ReviewOut)
def decide(brand: str, review: str, body: DecideIn, db: Db, actor: CurrentActor) -> Any:
    b = access_brand(db, actor, brand, "customers.merge")
    return actions.decide_review(db, actor, b, review, body.approve, body.note)


@router.post("/brands/{brand}/oneid:run", response_model=dict[str, int])
def run_full(brand: str, db: Db, actor: CurrentActor) -> dict[str, int]:
    b = access_brand(db, actor, brand, "customers.merge")
    return actions.run_full(db, actor, b)


class IdTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strong: bool | None = None
    unique: bool | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    enabled: bool | None = None


@router.get("/brands/{brand}/oneid/identifier-types", response_model=dict[str, dict[str, Any]])
def identifier_types(brand: str, db: Db, actor: CurrentActor) -> dict[str, dict[str, Any]]:
    b = access_brand(db, actor, brand, "customers.read")
    return queries.id_types(db, b)


@router.put("/brands/{brand}/oneid/identifier-types/{id_type}", response_model=dict[str, Any])
def set_identifier_type(
    brand: str, id_type: str, body: IdTypeIn, db: Db, actor: CurrentActor
) -> dict[str, Any]:
    b = access_brand(db, actor, brand, "customers.merge")
    return actions.set_identifier_type(db, actor, b, id_type, **body.model_dump())
