"""Channel codes (渠道活码) and their cost per acquired customer: the input of cost per
diverted customer and of the channel value table.

    set_channel_code(db, actor, brand, ChannelCodeIn(code="poster", cost_per_customer_fen=150))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record, snapshot
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.tenancy import Actor
from siyu.metrics.models import ChannelCode
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.org.models import Brand


class ChannelCodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(min_length=1, max_length=64, description="the WeCom add's state")
    name: str | None = Field(default=None, max_length=100)
    cost_per_customer_fen: int = Field(ge=0, le=10**10, description="cost of one customer, fen")


class ChannelCodeOut(BaseModel):
    code: str
    name: str | None
    cost_per_customer_fen: int


def set_channel_code(db: Session, actor: Actor, brand: Brand, data: ChannelCodeIn) -> ChannelCode:
    """Create or update a channel code's cost (``metrics.write``), audited."""
    authorize(actor, "metrics.write", org_queries.brand_ref(brand))
    with atomic(db):
        row = db.scalar(
            select(ChannelCode).where(
                ChannelCode.brand_id == brand.id, ChannelCode.code == data.code
            )
        )
        before = snapshot(row) if row else None
        if row is None:
            row = ChannelCode(brand_id=brand.id, code=data.code)
            db.add(row)
        row.name = data.name
        row.cost_per_customer_fen = data.cost_per_customer_fen
        row.updated_at = utcnow()
        db.flush()
        record(
            db,
            actor,
            "metrics.channel_code",
            "channel_code",
            row.id,
            brand=brand,
            before=before,
            after=snapshot(row),
        )
    return row


def list_channel_codes(db: Session, actor: Actor, brand: Brand) -> list[ChannelCodeOut]:
    authorize(actor, "metrics.read", org_queries.brand_ref(brand))
    rows = db.scalars(
        select(ChannelCode).where(ChannelCode.brand_id == brand.id).order_by(ChannelCode.code)
    )
    return [
        ChannelCodeOut(code=r.code, name=r.name, cost_per_customer_fen=r.cost_per_customer_fen)
        for r in rows
    ]
