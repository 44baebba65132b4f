"""Time: everything is stored in UTC (tz-aware); brands see their own time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Normalise to aware UTC. A naive value is refused: its meaning is unknown."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: attach a time zone before storing")
    return value.astimezone(UTC)


def ensure_aware(value: datetime) -> datetime:
    """Databases without tz support (SQLite) hand back naive UTC; make it aware again."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def local_today(tz: str, now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(ZoneInfo(tz)).date()


def local_midnight_utc(day: date, tz: str) -> datetime:
    """The UTC instant at which ``day`` starts in time zone ``tz``."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)
