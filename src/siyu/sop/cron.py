"""A small cron matcher for SOP schedules: "minute hour day-of-month month day-of-week" in the
brand's time zone, each field ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``,
or a comma list of those. Day of week 0–7 (0 and 7 are Sunday). As in Vixie cron, when both
day-of-month and day-of-week are restricted a day matching either fires. A bad expression raises
``ValueError`` (definitions are validated by ``siyu.sop.schemas`` before they get here).

``fires(expr, tz, after, until)`` lists the firing times in ``(after, until]`` (aware UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            a, b = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            a, b = int(first), int(last)
        else:
            a = b = int(base)
            if step_text:
                b = high
        if step < 1 or a < low or b > high or a > b:
            raise ValueError(f"bad cron field {text!r}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"cron needs five fields: {expr!r}")
        fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _BOUNDS, strict=True)]
        weekdays = frozenset(d % 7 for d in fields[4])
        return cls(
            fields[0], fields[1], fields[2], fields[3], weekdays, parts[2] == "*", parts[4] == "*"
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def matches(self, local: datetime) -> bool:
        return (
            local.minute in self.minutes
            and local.hour in self.hours
            and self.matches_day(local.date())
        )


def fires(expr: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Firing times of ``expr`` in ``(after, until]`` as aware UTC datetimes, in order."""
    cron = Cron.parse(expr)
    zone = ZoneInfo(tz)
    out: list[datetime] = []
    day = after.astimezone(zone).date()
    last = until.astimezone(zone).date()
    while day <= last:
        if cron.matches_day(day):
            for h in sorted(cron.hours):
                for m in sorted(cron.minutes):
                    at = datetime.combine(day, time(h, m), tzinfo=zone).astimezone(UTC)
                    if after < at <= until:
                        out.append(at)
        day += timedelta(days=1)
    return out
