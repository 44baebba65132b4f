"""The breathing policy: how often, when and through what a brand may touch a customer.

One :class:`BreathingPolicy` per brand; an SOP may override the *overridable* settings
(:data:`OVERRIDABLE`: marketing caps, channel caps, minimum gap, quiet hours) with
:meth:`BreathingPolicy.for_sop`. Platform quota, back-off and guide capacity are properties
of the customer, the platform or the guide, not of one SOP, so they stay brand-wide.

Windows are **calendar windows in the brand's time zone**: the local day (00:00–24:00), the
ISO week (Monday 00:00 to the next Monday) and the calendar month. See ``docs/sop.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from siyu.core.errors import Invalid

# Channels a touch can go through, in one place (codes are the index in this tuple).
CHANNELS: tuple[str, ...] = (
    "wecom_1to1",  # a guide's 1:1 WeCom message (automatic or confirmed)
    "wecom_mass",  # WeCom customer mass message (群发): subject to the platform quota
    "wecom_group",  # a message in a customer group
    "wecom_moments",  # 朋友圈
    "sms",
    "email",
    "mini_subscribe",  # mini-program subscription message
    "app_push",
    "guide_task",  # a manual task for a guide (call, visit, 1:1 chat with a checklist)
)
# Channels that need the customer to still have the guide as a WeCom contact.
CONTACT_CHANNELS: frozenset[str] = frozenset({"wecom_1to1", "wecom_mass", "guide_task"})
PLATFORM_QUOTA_CHANNEL = "wecom_mass"
GUIDE_CHANNEL = "guide_task"
KINDS: tuple[str, ...] = ("marketing", "transactional")


class MassQuota(StrEnum):
    """The WeCom mass-message quota per customer (set to what the brand's WeCom plan allows)."""

    DAILY_1 = "daily_1"  # 1 per local day
    WEEKLY_7 = "weekly_7"  # 7 per ISO week
    MONTHLY_4 = "monthly_4"  # 4 per calendar month
    MONTHLY_DAYS = "monthly_days"  # as many as the month has days, per calendar month


@dataclass(frozen=True)
class Caps:
    """Touches per customer per local day / ISO week / calendar month (``None``: no cap)."""

    day: int | None = None
    week: int | None = None
    month: int | None = None

    def __post_init__(self) -> None:
        for name in ("day", "week", "month"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _invalid(f"caps.{name}", "not an integer")
            if value is not None and value < 0:
                raise _invalid(f"caps.{name}", "negative")

    @classmethod
    def parse(cls, value: Caps | Mapping[str, Any], base: Caps | None = None) -> Caps:
        if isinstance(value, Caps):
            return value
        unknown = set(value) - {"day", "week", "month"}
        if unknown:
            raise _invalid("caps", f"unknown window {sorted(unknown)[0]}")
        return replace(base or cls(), **dict(value))


OVERRIDABLE: frozenset[str] = frozenset(
    {"caps", "channel_caps", "min_gap_minutes", "quiet_start", "quiet_end"}
)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _invalid(setting: str, reason: str) -> Invalid:
    return Invalid("sop.policy_invalid", setting=setting, reason=reason)


def _freeze(caps: Mapping[str, Caps | Mapping[str, Any]]) -> Mapping[str, Caps]:
    out: dict[str, Caps] = {}
    for channel in sorted(caps):
        if channel not in CHANNELS:
            raise _invalid("channel_caps", f"unknown channel {channel}")
        out[channel] = Caps.parse(caps[channel])
    return MappingProxyType(out)


def minutes_of(hhmm: str) -> int:
    """``"21:30"`` → 1290."""
    match = _HHMM.match(hhmm)
    if not match:
        raise _invalid("quiet_hours", f"{hhmm!r} is not HH:MM")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True)
class BreathingPolicy:
    """Defaults suit a Chinese consumer brand: one marketing touch a day, three a week, eight
    a month; the long-standing WeCom rule of one mass message per customer per day; four
    hours between marketing touches; quiet 21:30–09:00 local; three unanswered touches pause
    marketing for 14 days; a guide handles 40 manual tasks a day."""

    caps: Caps = field(default_factory=lambda: Caps(day=1, week=3, month=8))
    channel_caps: Mapping[str, Caps] = field(
        default_factory=lambda: {"sms": Caps(day=1, week=2, month=4)}
    )
    mass_quota: MassQuota = MassQuota.DAILY_1
    min_gap_minutes: int = 240
    quiet_start: str = "21:30"
    quiet_end: str = "09:00"
    backoff_after: int = 3
    backoff_days: int = 14
    guide_capacity: int = 40
    automation_channel: str = "wecom_1to1"

    def __post_init__(self) -> None:
        if isinstance(self.caps, Mapping):
            object.__setattr__(self, "caps", Caps.parse(self.caps))
        if not isinstance(self.caps, Caps):
            raise _invalid("caps", "not caps")
        object.__setattr__(self, "channel_caps", _freeze(self.channel_caps))
        try:
            object.__setattr__(self, "mass_quota", MassQuota(self.mass_quota))
        except ValueError:
            raise _invalid("mass_quota", f"unknown mode {self.mass_quota}") from None
        for name in ("min_gap_minutes", "backoff_after", "backoff_days", "guide_capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _invalid(name, "not a non-negative integer")
        if self.min_gap_minutes > 24 * 60:
            raise _invalid("min_gap_minutes", "more than a day")
        if self.backoff_after < 1:
            raise _invalid("backoff_after", "must be at least 1")
        minutes_of(self.quiet_start)
        minutes_of(self.quiet_end)
        if self.automation_channel not in CHANNELS or self.automation_channel == GUIDE_CHANNEL:
            raise _invalid(
                "automation_channel", f"not an automatic channel: {self.automation_channel}"
            )

    @property
    def quiet_minutes(self) -> tuple[int, int]:
        """(start, end) of quiet hours in local minutes; equal values mean no quiet hours."""
        return minutes_of(self.quiet_start), minutes_of(self.quiet_end)

    def for_sop(self, overrides: Mapping[str, Any] | None) -> BreathingPolicy:
        """This policy with an SOP's overrides merged over it: ``caps`` and each channel's
        caps merge window by window (``{"caps": {"day": 2}}`` keeps the week and month caps);
        other settings replace. Only :data:`OVERRIDABLE` settings may be overridden."""
        if not overrides:
            return self
        unknown = set(overrides) - OVERRIDABLE
        if unknown:
            raise _invalid(sorted(unknown)[0], "not overridable per SOP")
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key == "caps":
                changes["caps"] = Caps.parse(value, self.caps)
            elif key == "channel_caps":
                merged = dict(self.channel_caps)
                for channel, caps in dict(value).items():
                    merged[channel] = Caps.parse(caps, self.channel_caps.get(channel))
                changes["channel_caps"] = merged
            else:
                changes[key] = value
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreathingPolicy:
        """A brand's stored settings (JSON) over the defaults; unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise _invalid(sorted(unknown)[0], "unknown setting")
        return cls(**dict(data))

    def as_dict(self) -> dict[str, Any]:
        def caps(c: Caps) -> dict[str, int | None]:
            return {"day": c.day, "week": c.week, "month": c.month}

        return {
            "caps": caps(self.caps),
            "channel_caps": {k: caps(v) for k, v in self.channel_caps.items()},
            "mass_quota": str(self.mass_quota),
            "min_gap_minutes": self.min_gap_minutes,
            "quiet_start": self.quiet_start,
            "quiet_end": self.quiet_end,
            "backoff_after": self.backoff_after,
            "backoff_days": self.backoff_days,
            "guide_capacity": self.guide_capacity,
            "automation_channel": self.automation_channel,
        }
