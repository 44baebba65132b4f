"""The brand's tag library: built-in groups and tags are created on first use (idempotent),
and kept in the order of :data:`builtin.GROUPS`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.db import atomic
from siyu.tags.builtin import GROUPS
from siyu.tags.models import Tag, TagGroup

if TYPE_CHECKING:
    from siyu.org.models import Brand


def ensure(db: Session, brand: Brand) -> None:
    """Create the built-in groups and tags the brand does not have yet."""
    groups = {g.key: g for g in db.scalars(select(TagGroup).where(TagGroup.brand_id == brand.id))}
    tags = set(db.scalars(select(Tag.key).where(Tag.brand_id == brand.id)))
    missing_groups = [g for g in GROUPS if g.key not in groups]
    missing_tags = [(g, t) for g in GROUPS for t in g.tags if t.key not in tags]
    if not missing_groups and not missing_tags:
        return
    with atomic(db):
        for position, spec in enumerate(GROUPS):
            if spec.key in groups:
                continue
            group = TagGroup(
                brand_id=brand.id,
                key=spec.key,
                name=spec.name,
                kind=spec.kind,
                exclusive=spec.exclusive,
                builtin=True,
                description=spec.description,
                position=position,
                settings={},
            )
            db.add(group)
            groups[spec.key] = group
        db.flush()
        for spec, tag in missing_tags:
            db.add(
                Tag(
                    brand_id=brand.id,
                    group_id=groups[spec.key].id,
                    key=tag.key,
                    name=tag.name,
                    kind=spec.kind,
                    description=tag.description,
                    spec=dict(tag.spec),
                    builtin=True,
                    created_by="siyu",
                )
            )
