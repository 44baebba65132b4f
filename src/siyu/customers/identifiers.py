"""Identifier types per brand: strength, uniqueness and priority.

- *Strong* identifiers link observations into one customer; *weak* ones (device ids) are
  recorded but never link on their own, so two people sharing a phone handset stay two.
- A *unique* type (phone, member number, unionid) may hold one value per customer: a merge
  that would give a customer two values is not made but queued for review.
- *Priority* orders identifiers when one must name a fact (lower first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers.models import IdentifierTypeSetting


@dataclass(frozen=True)
class IdType:
    name: str
    strong: bool
    unique: bool
    priority: int


DEFAULTS: dict[str, IdType] = {
    t.name: t
    for t in (
        IdType("member_no", True, True, 10),
        IdType("phone", True, True, 20),
        IdType("unionid", True, True, 30),
        IdType("external_userid", True, False, 40),
        IdType("mini_openid", True, False, 50),
        IdType("oa_openid", True, False, 55),
        IdType("pos_card", True, False, 60),
        IdType("tmall_buyer", True, False, 70),
        IdType("jd_buyer", True, False, 71),
        IdType("douyin_buyer", True, False, 72),
        IdType("email", True, False, 80),
        IdType("device_id", False, False, 90),
    )
}


@dataclass(frozen=True)
class TypeConfig:
    types: dict[str, IdType]
    unique: frozenset[str] = field(init=False)
    weak: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: the resolver asks for these for every identifier it sees.
        object.__setattr__(self, "unique", frozenset(n for n, t in self.types.items() if t.unique))
        object.__setattr__(
            self, "weak", frozenset(n for n, t in self.types.items() if not t.strong)
        )

    def get(self, name: str) -> IdType | None:
        return self.types.get(name)

    def priority(self, name: str) -> int:
        t = self.types.get(name)
        return t.priority if t else 1000


def type_config(db: Session, brand_id: str) -> TypeConfig:
    types = dict(DEFAULTS)
    for row in db.scalars(
        select(IdentifierTypeSetting).where(IdentifierTypeSetting.brand_id == brand_id)
    ):
        if not row.enabled:
            types.pop(row.id_type, None)
            continue
        types[row.id_type] = IdType(row.id_type, row.strong, row.unique, row.priority)
    return TypeConfig(types)
