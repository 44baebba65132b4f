"""Turn pydantic validation failures into our error model (code + field + reason)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from siyu.core.errors import FieldError, Invalid

M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError, row: int | None = None) -> list[FieldError]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or None
        reason = err["msg"].removeprefix("Value error, ")
        out.append(FieldError(code=f"invalid.{err['type']}", field=loc, row=row, reason=reason))
    return out


def parse(model: type[M], data: Any, row: int | None = None) -> M:
    """Validate ``data`` into ``model`` or raise ``Invalid('validation.failed')`` with fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("validation.failed", errors=field_errors(exc, row)) from exc
