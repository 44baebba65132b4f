"""Per-brand channel settings: one row per brand and channel (``webhook``, ``sms``,
``email``).

``config`` holds the non-secret settings (URL, provider endpoint and key id, signature name,
SMS template registry, sender address, SMTP override); ``secret_enc`` the one secret of the
channel (webhook signing secret, SMS provider secret, SMTP password), encrypted with the
installation's AES-256-GCM key (``siyu.customers.vault.encrypt``). Secrets are write-only:
reads show only whether one is set and a masked tail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, id_column

CONFIGURABLE = ("webhook", "sms", "email")


class ChannelSetting(Base):
    __tablename__ = "channel_settings"
    __table_args__ = (UniqueConstraint("brand_id", "channel"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    channel: Mapped[str] = mapped_column(String(24))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret_enc: Mapped[str | None] = mapped_column(String(600))
    secret_hint: Mapped[str | None] = mapped_column(String(16))  # masked tail, for display
    updated_at: Mapped[datetime] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(String(200))
