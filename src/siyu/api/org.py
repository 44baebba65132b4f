"""Organisation endpoints: brands, org units, staff, memberships, imports, API keys, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, UploadFile
from pydantic import BaseModel

from siyu.api.deps import CurrentActor, Db
from siyu.core.errors import TooLarge
from siyu.org import actions, importer, queries
from siyu.org.auth import require_staff
from siyu.org.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AuditOut,
    BrandIn,
    BrandOut,
    MembershipIn,
    StaffIn,
    StaffOut,
    StaffPatch,
    UnitIn,
    UnitNode,
    UnitOut,
    UnitPatch,
)

router = APIRouter(tags=["org"])
MAX_UPLOAD = 10 * 1024 * 1024


class MeOut(BaseModel):
    kind: str
    id: str
    label: str
    superadmin: bool
    brands: list[BrandOut]
    scopes: list[str] = []


class ImportOut(BaseModel):
    total: int
    created: int
    unchanged: int
    rejected: int
    dry_run: bool
    errors: list[dict[str, Any]]


@router.get("/me", response_model=MeOut)
def me(db: Db, actor: CurrentActor) -> MeOut:
    brands = [BrandOut.model_validate(b) for b in queries.accessible_brands(db, actor)]
    return MeOut(
        kind=actor.kind,
        id=actor.id,
        label=actor.label,
        superadmin=actor.superadmin,
        brands=brands,
        scopes=sorted(actor.api_scopes),
    )


@router.get("/brands", response_model=list[BrandOut])
def list_brands(db: Db, actor: CurrentActor) -> list[Any]:
    return list(queries.accessible_brands(db, actor))


@router.post("/brands", response_model=BrandOut, status_code=201)
def create_brand(body: BrandIn, db: Db, actor: CurrentActor) -> Any:
    require_staff(actor)
    return actions.create_brand(db, actor, body)


@router.get("/brands/{brand}", response_model=BrandOut)
def get_brand(brand: str, db: Db, actor: CurrentActor) -> Any:
    return queries.access_brand(db, actor, brand)


@router.get("/brands/{brand}/units", response_model=list[UnitOut])
def list_units(brand: str, db: Db, actor: CurrentActor) -> list[Any]:
    b = queries.access_brand(db, actor, brand)
    return list(queries.list_units(db, actor, b))


@router.get("/brands/{brand}/units:tree", response_model=list[UnitNode])
def unit_tree(brand: str, db: Db, actor: CurrentActor) -> list[UnitNode]:
    b = queries.access_brand(db, actor, brand)
    return queries.unit_tree(db, actor, b)


@router.post("/brands/{brand}/units", response_model=UnitOut, status_code=201)
def create_unit(brand: str, body: UnitIn, db: Db, actor: CurrentActor) -> Any:
    b = queries.access_brand(db, actor, brand, "org.write")
    return actions.create_unit(db, actor, b, body)


@router.get("/brands/{brand}/units/{unit}", response_model=UnitOut)
def get_unit(brand: str, unit: str, db: Db, actor: CurrentActor) -> Any:
    b = queries.access_brand(db, actor, brand)
    return queries.get_unit(db, actor, b, unit)


@router.patch("/brands/{brand}/units/{unit}", response_model=UnitOut)
def update_unit(brand: str, unit: str, body: UnitPatch, db: Db, actor: CurrentActor) -> Any:
    b = queries.access_brand(db, actor, brand, "org.write")
    return actions.update_unit(db, actor, b, unit, body)


@router.get("/brands/{brand}/staff", response_model=list[StaffOut])
def list_staff(brand: str, db: Db, actor: CurrentActor) -> list[StaffOut]:
    b = queries.access_brand(db, actor, brand)
    return queries.list_staff(db, actor, b)


@router.post("/brands/{brand}/staff", response_model=StaffOut, status_code=201)
def create_staff(brand: str, body: StaffIn, db: Db, actor: CurrentActor) -> StaffOut:
    b = queries.access_brand(db, actor, brand, "staff.write")
    staff = actions.create_staff(db, actor, b, body)
    return queries.get_staff(db, actor, b, staff.id)


@router.get("/brands/{brand}/staff/{staff}", response_model=StaffOut)
def get_staff(brand: str, staff: str, db: Db, actor: CurrentActor) -> StaffOut:
    b = queries.access_brand(db, actor, brand)
    return queries.get_staff(db, actor, b, staff)


@router.patch("/brands/{brand}/staff/{staff}", response_model=StaffOut)
def update_staff(brand: str, staff: str, body: StaffPatch, db: Db, actor: CurrentActor) -> StaffOut:
    b = queries.access_brand(db, actor, brand, "staff.write")
    person = actions.update_staff(db, actor, b, staff, body)
    return queries.get_staff(db, actor, b, person.id)


@router.post("/brands/{brand}/memberships", response_model=StaffOut, status_code=201)
def add_membership(brand: str, body: MembershipIn, db: Db, actor: CurrentActor) -> StaffOut:
    b = queries.access_brand(db, actor, brand, "staff.write")
    member = actions.add_membership(db, actor, b, body)
    return queries.get_staff(db, actor, b, member.staff_id)


async def _upload(file: UploadFile) -> tuple[Path, bytes]:
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise TooLarge("http.too_large", limit="10 MB")
    return Path(file.filename or "upload.csv"), data


@router.post("/brands/{brand}/units:import", response_model=ImportOut)
async def import_units(
    brand: str,
    file: UploadFile,
    db: Db,
    actor: CurrentActor,
    dry_run: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    b = queries.access_brand(db, actor, brand, "org.write")
    path, data = await _upload(file)
    return importer.import_units(db, actor, b, path, data=data, dry_run=dry_run).as_dict()


@router.post("/brands/{brand}/staff:import", response_model=ImportOut)
async def import_staff(
    brand: str,
    file: UploadFile,
    db: Db,
    actor: CurrentActor,
    dry_run: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    b = queries.access_brand(db, actor, brand, "staff.write")
    path, data = await _upload(file)
    return importer.import_staff(db, actor, b, path, data=data, dry_run=dry_run).as_dict()


@router.get("/brands/{brand}/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(brand: str, db: Db, actor: CurrentActor) -> list[Any]:
    b = queries.access_brand(db, actor, brand, "apikeys.manage")
    return list(queries.list_api_keys(db, actor, b))


@router.post("/brands/{brand}/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(brand: str, body: ApiKeyIn, db: Db, actor: CurrentActor) -> ApiKeyCreated:
    b = queries.access_brand(db, actor, brand, "apikeys.manage")
    key, secret = actions.create_api_key(db, actor, b, body)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.post("/brands/{brand}/api-keys/{key}:revoke", response_model=ApiKeyOut)
def revoke_api_key(brand: str, key: str, db: Db, actor: CurrentActor) -> Any:
    b = queries.access_brand(db, actor, brand, "apikeys.manage")
    return actions.revoke_api_key(db, actor, b, key)


@router.get("/brands/{brand}/audit", response_model=list[AuditOut])
def list_audit(
    brand: str,
    db: Db,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: str | None = None,
) -> list[Any]:
    b = queries.access_brand(db, actor, brand, "audit.read")
    return list(queries.list_audit(db, actor, b, limit=limit, before=before))
