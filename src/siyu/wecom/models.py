"""WeCom connector tables: each brand's app, the callback log (de-duplication and the work
queue of ``siyu worker``), the mirror of contacts (a customer following a staff member), groups,
channel codes, mass-message results and transfers (inheritance).

Secrets (the app secret, the callback token and EncodingAESKey) are encrypted at rest with the
vault's key; external_userid and chat ids are WeCom's opaque ids, stored in clear because every
API call needs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column


class WecomApp(Base):
    """A brand's self-built WeCom app (one per brand): the corp, the customer-contact secret
    and the callback keys, and where its API lives (the official host, or the local server)."""

    __tablename__ = "wecom_apps"

    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)
    corp_id: Mapped[str] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(32))
    secret_enc: Mapped[str] = mapped_column(String(500))
    token_enc: Mapped[str] = mapped_column(String(500))
    aes_key_enc: Mapped[str] = mapped_column(String(500))
    base_url: Mapped[str] = mapped_column(String(300))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # per-brand limits and behaviour (see siyu.wecom.apps.AppSettings)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_sync_at: Mapped[datetime | None] = mapped_column()
    last_sync: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = created_column()


class WecomCallback(Base):
    """One received callback, decrypted. Unique per ``dedup_key`` (the event's own fields), so
    WeCom's retries of the same event are answered but not handled twice."""

    __tablename__ = "wecom_callbacks"
    __table_args__ = (
        UniqueConstraint("brand_id", "dedup_key"),
        Index("ix_wecom_callbacks_status", "status", "received_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    dedup_key: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    change_type: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    received_at: Mapped[datetime] = created_column()
    processed_at: Mapped[datetime | None] = mapped_column()


class WecomContact(Base):
    """A customer (external contact) following one staff member — WeCom's follow_user."""

    __tablename__ = "wecom_contacts"
    __table_args__ = (
        UniqueConstraint("brand_id", "external_userid", "staff_userid"),
        Index("ix_wecom_contacts_customer", "brand_id", "customer_id"),
        Index("ix_wecom_contacts_staff", "brand_id", "staff_userid", "status"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    external_userid: Mapped[str] = mapped_column(String(64))
    staff_userid: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    state: Mapped[str | None] = mapped_column(String(64))
    add_way: Mapped[int | None] = mapped_column(Integer)
    remark: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(24), default="active")
    # active | deleted_by_staff | deleted_by_customer | transferred
    added_at: Mapped[datetime | None] = mapped_column()
    welcome_code: Mapped[str | None] = mapped_column(String(200))
    welcome_expires_at: Mapped[datetime | None] = mapped_column()
    welcome_used_at: Mapped[datetime | None] = mapped_column()
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    last_transfer_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = created_column()


class WecomGroup(Base):
    """A customer group chat (客户群) as ``groupchat/get`` returns it."""

    __tablename__ = "wecom_groups"
    __table_args__ = (UniqueConstraint("brand_id", "chat_id"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    chat_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    owner_userid: Mapped[str | None] = mapped_column(String(64))
    notice: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | dismissed
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    members: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at_wecom: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = created_column()


class WecomContactWay(Base):
    """A channel QR code (渠道活码) or acquisition link: the ``state`` that comes back in the
    add event attributes the new friend to its source, and its cost."""

    __tablename__ = "wecom_contact_ways"
    __table_args__ = (UniqueConstraint("brand_id", "state"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    state: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(64))  # ad, xiaohongshu, store, package …
    kind: Mapped[str] = mapped_column(String(16), default="qr")  # qr | link
    staff_userids: Mapped[list[str]] = mapped_column(JSON, default=list)
    config_id: Mapped[str | None] = mapped_column(String(64))
    qr_code: Mapped[str | None] = mapped_column(String(500))
    cost_fen: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_column()


class WecomMassSend(Base):
    """One mass-message template sent for an outbox row, and what its results said."""

    __tablename__ = "wecom_mass_sends"
    __table_args__ = (
        UniqueConstraint("brand_id", "idem_key"),
        Index("ix_wecom_mass_sends_open", "brand_id", "result_status"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    idem_key: Mapped[str] = mapped_column(String(120))  # the outbox row's
    customer_id: Mapped[str | None] = mapped_column(String(26))
    msgid: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str | None] = mapped_column(String(64))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    # None until results are read: 0 unsent, 1 sent, 2 not a friend, 3 quota reached
    result_status: Mapped[int | None] = mapped_column(Integer)
    checked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_column()


class WecomTransfer(Base):
    """One customer's inheritance (在职 / 离职继承) from one staff member to another."""

    __tablename__ = "wecom_transfers"
    __table_args__ = (Index("ix_wecom_transfers_open", "brand_id", "status"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    batch_id: Mapped[str] = mapped_column(String(26), index=True)
    mode: Mapped[str] = mapped_column(String(12))  # on_job | resigned
    handover_userid: Mapped[str] = mapped_column(String(64))
    takeover_userid: Mapped[str] = mapped_column(String(64))
    external_userid: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    # requested | waiting | done | refused | limit | failed
    status: Mapped[str] = mapped_column(String(12), default="requested")
    errcode: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(300))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    finished_at: Mapped[datetime | None] = mapped_column()
