"""A brand's view of the catalogue: the standard schemas plus the brand's custom event types,
and flat field descriptors that the vectorised file path checks columns against.

Custom event types are stored as field lists (``CustomEventType.fields``) and turned into
pydantic models here, so the HTTP path validates them exactly like standard events.

    reg = brand_registry(db, brand.id)
    spec = reg.get("page_viewed", 1)
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import annotated_types
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.ingest.catalogue import CATALOGUE, EventSpec
from siyu.ingest.models import CustomEventType


@dataclass(frozen=True)
class FieldDesc:
    """One property as the column checks see it.

    kind: str | int | float | bool | date | datetime | fen | str_list | complex.
    ``fen`` fields are integers in fen over HTTP and yuan text in files.
    """

    name: str
    kind: str
    required: bool
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def describe(model: type[BaseModel]) -> list[FieldDesc]:
    out = []
    for name, info in model.model_fields.items():
        ann = _unwrap(info.annotation)
        choices = None
        if typing.get_origin(ann) is Literal:
            kind, choices = "str", tuple(str(a) for a in typing.get_args(ann))
        elif ann is bool:
            kind = "bool"
        elif ann is int:
            kind = "fen" if name.endswith("_fen") else "int"
        elif ann is float:
            kind = "float"
        elif ann is str:
            kind = "str"
        elif ann is date:
            kind = "date"
        elif ann in (datetime, AwareDatetime):
            kind = "datetime"
        elif typing.get_origin(ann) is list and typing.get_args(ann) == (str,):
            kind = "str_list"
        else:
            kind = "complex"
        desc: dict[str, Any] = {}
        for meta in info.metadata:
            if isinstance(meta, annotated_types.MaxLen):
                desc["max_length"] = meta.max_length
            elif isinstance(meta, annotated_types.Ge):
                desc["ge"] = float(meta.ge)  # type: ignore[arg-type]
            elif isinstance(meta, annotated_types.Le):
                desc["le"] = float(meta.le)  # type: ignore[arg-type]
        out.append(FieldDesc(name, kind, info.is_required(), choices=choices, **desc))
    return out


_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "datetime": AwareDatetime,
    "fen": int,
}


def custom_model(event_type: str, version: int, fields: list[dict[str, Any]]) -> type[BaseModel]:
    """A pydantic model for a brand's field list (see ``schemas.CustomFieldIn``)."""
    defs: dict[str, Any] = {}
    for f in fields:
        py: Any = _PY_TYPES[f.get("type", "string")]
        if f.get("enum"):
            py = Literal[tuple(f["enum"])]
        kwargs: dict[str, Any] = {}
        if f.get("max_length") and py is str:
            kwargs["max_length"] = f["max_length"]
        if f.get("min") is not None and py in (int, float):
            kwargs["ge"] = f["min"]
        if f.get("max") is not None and py in (int, float):
            kwargs["le"] = f["max"]
        if f.get("type") == "fen":
            kwargs.setdefault("ge", 0)
        if f.get("required"):
            defs[f["name"]] = (py, Field(**kwargs))
        else:
            defs[f["name"]] = (py | None, Field(default=None, **kwargs))
    name = "Custom_" + event_type + f"_v{version}"
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", str_strip_whitespace=True), **defs
    )
    return model


@dataclass
class Registry:
    """Standard and custom specs of one brand, with cached field descriptors."""

    specs: dict[tuple[str, int], EventSpec]

    def get(self, event_type: str, version: int) -> EventSpec | None:
        return self.specs.get((event_type, version))

    def latest(self, event_type: str) -> int | None:
        versions = [v for t, v in self.specs if t == event_type]
        return max(versions) if versions else None

    def types(self) -> set[str]:
        return {t for t, _ in self.specs}

    def fields(self, event_type: str, version: int) -> list[FieldDesc]:
        spec = self.specs[(event_type, version)]
        return _describe_cached(spec.model)


_desc_cache: dict[type[BaseModel], list[FieldDesc]] = {}


def _describe_cached(model: type[BaseModel]) -> list[FieldDesc]:
    if model not in _desc_cache:
        _desc_cache[model] = describe(model)
    return _desc_cache[model]


_custom_cache: dict[tuple[str, str, int, str], EventSpec] = {}


def brand_registry(db: Session, brand_id: str) -> Registry:
    specs = dict(CATALOGUE)
    for row in db.scalars(select(CustomEventType).where(CustomEventType.brand_id == brand_id)):
        if (row.event_type, row.version) in specs:
            continue  # standard types win; declaring one is refused anyway
        stamp = repr(row.fields)
        key = (brand_id, row.event_type, row.version, stamp)
        spec = _custom_cache.get(key)
        if spec is None:
            model = custom_model(row.event_type, row.version, row.fields)
            spec = EventSpec(
                row.event_type, row.version, model, row.description or "custom", custom=True
            )
            _custom_cache[key] = spec
        specs[(row.event_type, row.version)] = spec
    return Registry(specs)
