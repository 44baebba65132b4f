"""One base exception with a stable code, bilingual messages and structured fields.

Domains raise subclasses; only the edges turn them into HTTP problems or CLI messages.
Tests assert ``exc.code``, never the wording.

    raise NotFound("org.unit_not_found", unit=unit_id)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from siyu.core.i18n import translate


@dataclass
class FieldError:
    """One problem with one piece of input (a form field, a CSV row and column)."""

    code: str
    field: str | None = None
    row: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.field is not None:
            out["field"] = self.field
        if self.row is not None:
            out["row"] = self.row
        return out


class SiyuError(Exception):
    """Base of every expected error. ``code`` is stable; messages come from the catalogue."""

    status: ClassVar[int] = 400

    def __init__(self, code: str, /, *, errors: list[FieldError] | None = None, **params: Any):
        self.code = code
        self.params = params
        self.errors: list[FieldError] = errors or []
        super().__init__(f"{code}: {self.message('en')}")

    def message(self, locale: str = "zh-CN") -> str:
        return translate(f"errors.{self.code}", locale, **self.params)


class Invalid(SiyuError):
    status = 422


class Unauthenticated(SiyuError):
    status = 401


class Forbidden(SiyuError):
    status = 403


class NotFound(SiyuError):
    status = 404


class Conflict(SiyuError):
    status = 409


class TooLarge(SiyuError):
    status = 413


class Locked(SiyuError):
    status = 423
