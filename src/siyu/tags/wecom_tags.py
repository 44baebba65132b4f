"""WeCom corporate tags (企业标签) mirrored into the tag library, in their own groups.

The WeCom connector hands over what the documented APIs return and this module keeps the
library and the customers' tags equal to it:

- :func:`mirror_corp_tags` takes the body of ``externalcontact/get_corp_tag_list``
  (``tag_group[]`` of ``group_id``, ``group_name``, ``order``, ``deleted``, ``tag[]`` of ``id``,
  ``name``, ``order``, ``deleted``) — a full list: groups and tags that are gone or marked
  ``deleted`` are deleted here too (their history stays);
- :func:`set_customer_corp_tags` takes a customer's corporate tag ids (``follow_user[].tags``
  of type 1 from ``externalcontact/get``, or the result of ``mark_tag``) and sets exactly those,
  with history rows.

Keys are derived from WeCom's ids (``wecom_<12 hex>``), so a renamed tag keeps its key, its
members and the SOPs that use it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic, bulk_insert, table_of
from siyu.core.errors import Invalid
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.tags.models import CustomerTag, Tag, TagChange, TagGroup

if TYPE_CHECKING:
    from siyu.org.models import Brand


class CorpTag(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    order: int = 0
    deleted: bool = False


class CorpTagGroup(BaseModel):
    model_config = ConfigDict(extra="ignore")
    group_id: str = Field(min_length=1, max_length=64)
    group_name: str = Field(min_length=1, max_length=100)
    order: int = 0
    deleted: bool = False
    tag: list[CorpTag] = Field(default_factory=list, max_length=3000)


class CorpTagList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    errcode: int = 0
    tag_group: list[CorpTagGroup] = Field(default_factory=list)


def key_of(wecom_id: str) -> str:
    return "wecom_" + hashlib.sha1(wecom_id.encode(), usedforsecurity=False).hexdigest()[:12]


def mirror_corp_tags(
    db: Session, actor: Actor, brand: Brand, payload: dict[str, Any]
) -> dict[str, int]:
    """Make the brand's ``wecom`` groups and tags equal to a ``get_corp_tag_list`` body."""
    authorize(actor, "tags.write", org_queries.brand_ref(brand))
    body = CorpTagList.model_validate(payload)
    if body.errcode != 0:
        raise Invalid("tags.wecom_error", errcode=body.errcode)
    counts = {"groups": 0, "tags": 0, "deleted": 0}
    with atomic(db):
        groups = {
            g.external_id: g
            for g in db.scalars(
                select(TagGroup).where(TagGroup.brand_id == brand.id, TagGroup.kind == "wecom")
            )
        }
        tags = {
            t.external_id: t
            for t in db.scalars(select(Tag).where(Tag.brand_id == brand.id, Tag.kind == "wecom"))
            if t.status != "deleted"
        }
        live: set[str] = set()
        for g in body.tag_group:
            if g.deleted:
                continue
            group = groups.get(g.group_id)
            if group is None:
                group = TagGroup(
                    brand_id=brand.id,
                    key=key_of(g.group_id),
                    kind="wecom",
                    exclusive=False,
                    builtin=False,
                    external_id=g.group_id,
                    settings={},
                )
                db.add(group)
                groups[g.group_id] = group
            group.name, group.position = g.group_name, 100 + g.order
            db.flush()
            counts["groups"] += 1
            for t in g.tag:
                if t.deleted:
                    continue
                live.add(t.id)
                tag = tags.get(t.id)
                if tag is None:
                    tag = Tag(
                        brand_id=brand.id,
                        key=key_of(t.id),
                        kind="wecom",
                        spec={},
                        builtin=False,
                        external_id=t.id,
                        created_by="wecom",
                    )
                    db.add(tag)
                    tags[t.id] = tag
                tag.group_id, tag.name, tag.status = group.id, t.name, "active"
                tag.spec = {"order": t.order}
                counts["tags"] += 1
        gone = [t for ext, t in tags.items() if ext not in live]
        ct = table_of(CustomerTag)
        for tag in gone:
            db.execute(delete(ct).where(ct.c.tag_id == tag.id))
            tag.status = "deleted"
            tag.key = f"{tag.key}~{new_id()[-8:].lower()}"[:64]
            counts["deleted"] += 1
        record(db, actor, "tags.wecom_mirror", "tag_group", None, brand=brand, after=counts)
    return counts


def set_customer_corp_tags(
    db: Session, actor: Actor, brand: Brand, customer_id: str, corp_tag_ids: list[str]
) -> dict[str, int]:
    """Give a customer exactly these corporate tags (ids unknown to the library are
    ignored: the next :func:`mirror_corp_tags` brings them)."""
    from siyu.customers.queries import access_customer

    customer = access_customer(db, actor, brand, customer_id, "customers.write")
    wanted = {
        t.id: t
        for t in db.scalars(
            select(Tag).where(
                Tag.brand_id == brand.id,
                Tag.kind == "wecom",
                Tag.status == "active",
                Tag.external_id.in_(sorted(set(corp_tag_ids))),
            )
        )
    }
    ct = table_of(CustomerTag)
    now = utcnow()
    with atomic(db):
        held = set(
            db.scalars(
                select(ct.c.tag_id)
                .join(Tag, Tag.id == ct.c.tag_id)
                .where(ct.c.customer_id == customer.id, Tag.kind == "wecom")
            )
        )
        add = sorted(set(wanted) - held)
        remove = sorted(held - set(wanted))
        bulk_insert(
            db,
            ct,
            [
                {
                    "tag_id": tid,
                    "customer_id": customer.id,
                    "brand_id": brand.id,
                    "value": None,
                    "score": None,
                    "since": now,
                    "source": "wecom",
                    "set_by": actor.label,
                }
                for tid in add
            ],
        )
        if remove:
            db.execute(
                delete(ct).where(ct.c.customer_id == customer.id, ct.c.tag_id == bindparam("p_t")),
                [{"p_t": tid} for tid in remove],
            )
        for tid in add:
            wanted[tid].last_count = int(wanted[tid].last_count or 0) + 1
        for tag in db.scalars(select(Tag).where(Tag.id.in_(remove))):
            tag.last_count = max(0, int(tag.last_count or 0) - 1)
        bulk_insert(
            db,
            table_of(TagChange),
            [
                {
                    "id": new_id(),
                    "brand_id": brand.id,
                    "tag_id": tid,
                    "customer_id": customer.id,
                    "change": change,
                    "value": None,
                    "at": now,
                    "run_id": None,
                    "actor_label": actor.label,
                }
                for tid, change in [(t, "entered") for t in add] + [(t, "exited") for t in remove]
            ],
        )
    return {"added": len(add), "removed": len(remove)}
