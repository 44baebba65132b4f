"""The day planner: which proposed touches go out today, when, and why the others do not.

Pure and deterministic: arrays in, arrays out, no store, no clock. Set-based — the work is
sorting, ``bincount`` and grouped counters over numpy arrays. The only Python loop runs over
*positions* in a customer's queue (the k-th most important touch of every customer at once),
so it turns as many times as the busiest customer has candidates (about the number of SOPs),
never once per customer.

How one day is planned (``docs/sop.md`` has the long form):

1. **Static checks**, first match wins: ``holdout`` → ``expired`` (expiry before the touch
   could go) → hard stops (``opted_out``, ``complained``, ``deleted_guide``; transactional
   touches only stop for a deleted guide on WeCom-contact channels) → ``not_due`` (due after
   the day: deferred until due) → ``backoff`` (marketing while paused) → quiet hours (the
   earliest time moves to the next allowed time; past the day: deferred ``quiet_hours``;
   past expiry: suppressed ``expired``).
2. **Arbitration** per customer in the order priority desc, expected value desc, candidate
   id asc. A touch is sent when every counter it belongs to has room under its limit: the
   overall marketing caps (day/week/month), the caps of its channel, the platform quota
   (``wecom_mass``, marketing *and* transactional) and the back-off budget (marketing touches
   left before N unanswered). Transactional touches skip the marketing counters and the gap.
   A marketing touch goes at least ``min_gap`` after the customer's latest marketing touch
   (history or placed today), then out of quiet hours.
3. **Guide capacity**: a guide's sent tasks are ranked by expected value; those beyond the
   capacity (minus tasks already in history today) become automation when the candidate
   allows it (``automated``), else are deferred to tomorrow (``guide_capacity``). Customers
   who lost a task are re-arbitrated (the freed budget may go to another touch).

A touch that loses is deferred until the binding window resets (tomorrow for a daily cap,
next Monday for a weekly one, the 1st for a monthly one; then out of quiet hours) while that is
within its validity, else suppressed ``expired`` with the binding code as its ``cause``. The
reason is the cap's code when the history alone had used the budget, ``lost_arbitration``
when higher-ranked touches of today took it.

Times are int64 seconds since the Unix epoch, UTC (``epoch()``); ``NEVER`` stands for none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from siyu.sop.policy import (
    CHANNELS,
    CONTACT_CHANNELS,
    GUIDE_CHANNEL,
    KINDS,
    PLATFORM_QUOTA_CHANNEL,
    BreathingPolicy,
    MassQuota,
)

Array = npt.NDArray[Any]

NEVER = -(2**62)  # "no time": before everything
FOREVER = 2**62  # after everything
_BIG = 2**40  # "no limit"


class Reason(StrEnum):
    """Why a touch was not sent (or was sent differently). One place for every code; each
    has ``ui.sop.reason.<code>`` labels in the locale files."""

    DAILY_CAP = "daily_cap"
    WEEKLY_CAP = "weekly_cap"
    MONTHLY_CAP = "monthly_cap"
    CHANNEL_DAILY_CAP = "channel_daily_cap"
    CHANNEL_WEEKLY_CAP = "channel_weekly_cap"
    CHANNEL_MONTHLY_CAP = "channel_monthly_cap"
    PLATFORM_QUOTA = "platform_quota"
    MIN_GAP = "min_gap"
    QUIET_HOURS = "quiet_hours"
    BACKOFF = "backoff"
    HOLDOUT = "holdout"
    OPTED_OUT = "opted_out"
    COMPLAINED = "complained"
    DELETED_GUIDE = "deleted_guide"
    GUIDE_CAPACITY = "guide_capacity"
    LOST_ARBITRATION = "lost_arbitration"
    EXPIRED = "expired"
    NOT_DUE = "not_due"
    AUTOMATED = "automated"


# Reason codes as stored in Decisions.reason / .cause: 0 is "none" (a plain send).
REASONS: tuple[str, ...] = ("", *(r.value for r in Reason))
_R = {code: i for i, code in enumerate(REASONS)}
STATUSES: tuple[str, ...] = ("sent", "deferred", "suppressed")
SENT, DEFERRED, SUPPRESSED = 0, 1, 2
MARKETING, TRANSACTIONAL = 0, 1
_CH = {name: i for i, name in enumerate(CHANNELS)}
_GUIDE = _CH[GUIDE_CHANNEL]
_MASS = _CH[PLATFORM_QUOTA_CHANNEL]


def epoch(value: datetime) -> int:
    """Aware datetime → int seconds since the epoch (UTC). Naive values are refused."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: attach a time zone")
    return int(value.timestamp())


def _times(values: Any, n: int | None = None, default: int = NEVER) -> Array:
    if values is None:
        return np.full(n or 0, default, dtype=np.int64)
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        out = arr.astype("datetime64[s]").astype(np.int64)
        return np.where(np.isnat(arr), default, out)
    if arr.dtype == object:
        return np.array(
            [
                default if v is None else epoch(v) if isinstance(v, datetime) else int(v)
                for v in arr
            ],
            dtype=np.int64,
        )
    return arr.astype(np.int64)


def _ids(values: Any, n: int, default: Any = -1) -> Array:
    if values is None:
        return np.full(n, default, dtype=np.int64)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    return arr


def _codes(values: Any, names: Sequence[str], what: str) -> Array:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
            raise ValueError(f"{what} code out of range")
        return arr.astype(np.int8)
    uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [u for u in uniq.tolist() if u not in lookup]
    if unknown:
        raise ValueError(f"unknown {what}: {unknown[0]}")
    return np.array([lookup[u] for u in uniq.tolist()], dtype=np.int8)[inverse]


def _bools(values: Any, n: int) -> Array:
    return np.zeros(n, dtype=bool) if values is None else np.asarray(values, dtype=bool)


def _rank(values: Array) -> Array:
    """A sortable integer stand-in for any id column (ints pass through)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Candidates:
    """Proposed touches, one per row. Build with :meth:`build` (strings or codes, datetimes or
    epoch seconds) or :meth:`from_arrow`."""

    candidate_id: Array
    customer_id: Array
    sop_id: Array
    priority: Array  # int64, higher first
    expected_value: Array  # float64
    channel: Array  # int8, index into CHANNELS
    kind: Array  # int8, index into KINDS
    due_at: Array  # int64 epoch seconds
    expires_at: Array
    guide_id: Array  # the guide of a guide task (ignored for other channels)
    holdout: Array  # bool: the customer is in this SOP's holdout
    automatable: Array  # bool: a guide task may become automation when the guide is full

    @classmethod
    def build(
        cls,
        *,
        candidate_id: Any,
        customer_id: Any,
        sop_id: Any,
        priority: Any,
        expected_value: Any,
        channel: Any,
        kind: Any,
        due_at: Any,
        expires_at: Any,
        guide_id: Any = None,
        holdout: Any = None,
        automatable: Any = None,
    ) -> Candidates:
        cid = _ids(candidate_id, 0)
        n = len(cid)
        out = cls(
            candidate_id=cid,
            customer_id=_ids(customer_id, n),
            sop_id=_ids(sop_id, n),
            priority=np.asarray(priority, dtype=np.int64),
            expected_value=np.asarray(expected_value, dtype=np.float64),
            channel=_codes(channel, CHANNELS, "channel"),
            kind=_codes(kind, KINDS, "kind"),
            due_at=_times(due_at),
            expires_at=_times(expires_at),
            guide_id=_ids(guide_id, n),
            holdout=_bools(holdout, n),
            automatable=_bools(automatable, n),
        )
        out.validate()
        return out

    @classmethod
    def empty(cls) -> Candidates:
        e = np.zeros(0, dtype=np.int64)
        return cls(
            e,
            e,
            e,
            e,
            e.astype(np.float64),
            e.astype(np.int8),
            e.astype(np.int8),
            e,
            e,
            e,
            e.astype(bool),
            e.astype(bool),
        )

    @classmethod
    def from_arrow(cls, table: Any) -> Candidates:
        names = set(table.column_names)
        cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in names}
        return cls.build(**{k: cols.get(k) for k in _CANDIDATE_COLUMNS if k in cols})

    def validate(self) -> None:
        n = len(self.candidate_id)
        for name in _CANDIDATE_COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name} has a different length")
        if not np.isfinite(self.expected_value).all():
            raise ValueError("expected_value must be finite")
        if n and len(np.unique(self.candidate_id)) != n:
            raise ValueError("candidate_id must be unique")

    def __len__(self) -> int:
        return len(self.candidate_id)

    def take(self, idx: Array) -> Candidates:
        return Candidates(**{c: getattr(self, c)[idx] for c in _CANDIDATE_COLUMNS})

    def concat(self, other: Candidates) -> Candidates:
        return Candidates(
            **{c: np.concatenate([getattr(self, c), getattr(other, c)]) for c in _CANDIDATE_COLUMNS}
        )


_CANDIDATE_COLUMNS = (
    "candidate_id",
    "customer_id",
    "sop_id",
    "priority",
    "expected_value",
    "channel",
    "kind",
    "due_at",
    "expires_at",
    "guide_id",
    "holdout",
    "automatable",
)


@dataclass(frozen=True)
class History:
    """Touches already sent (any day before or earlier today). Only rows of customers among
    the candidates matter; it should reach back a month plus the back-off pause."""

    customer_id: Array
    channel: Array  # int8
    kind: Array  # int8
    sent_at: Array  # int64
    guide_id: Array  # for guide tasks (counts toward today's capacity)

    @classmethod
    def build(
        cls, *, customer_id: Any, channel: Any, kind: Any, sent_at: Any, guide_id: Any = None
    ) -> History:
        cust = _ids(customer_id, 0)
        return cls(
            customer_id=cust,
            channel=_codes(channel, CHANNELS, "channel"),
            kind=_codes(kind, KINDS, "kind"),
            sent_at=_times(sent_at),
            guide_id=_ids(guide_id, len(cust)),
        )

    @classmethod
    def empty(cls) -> History:
        e = np.zeros(0, dtype=np.int64)
        return cls(e, e.astype(np.int8), e.astype(np.int8), e, e)

    def __len__(self) -> int:
        return len(self.customer_id)

    def concat(self, other: History) -> History:
        return History(
            **{
                c: np.concatenate([getattr(self, c), getattr(other, c)])
                for c in ("customer_id", "channel", "kind", "sent_at", "guide_id")
            }
        )


@dataclass(frozen=True)
class CustomerState:
    """Per customer: hard stops and the back-off counters. Customers missing here have no
    stop, nothing unanswered and no pause. ``unanswered`` counts marketing touches since the
    last reply (the caller resets it on a reply; :func:`advance_state` does so in
    simulations)."""

    customer_id: Array
    opted_out: Array
    deleted_guide: Array
    complained: Array
    unanswered: Array  # int64
    last_reply_at: Array  # int64 or NEVER
    backoff_until: Array  # int64 or NEVER

    @classmethod
    def build(
        cls,
        *,
        customer_id: Any,
        opted_out: Any = None,
        deleted_guide: Any = None,
        complained: Any = None,
        unanswered: Any = None,
        last_reply_at: Any = None,
        backoff_until: Any = None,
    ) -> CustomerState:
        cust = _ids(customer_id, 0)
        n = len(cust)
        return cls(
            customer_id=cust,
            opted_out=_bools(opted_out, n),
            deleted_guide=_bools(deleted_guide, n),
            complained=_bools(complained, n),
            unanswered=np.zeros(n, np.int64)
            if unanswered is None
            else np.asarray(unanswered, np.int64),
            last_reply_at=_times(last_reply_at, n),
            backoff_until=_times(backoff_until, n),
        )

    @classmethod
    def empty(cls) -> CustomerState:
        return cls.build(customer_id=np.zeros(0, dtype=np.int64))


# ---------------------------------------------------------------- output


@dataclass(frozen=True)
class Decisions:
    """One decision per candidate, in the candidates' order. ``status`` indexes
    :data:`STATUSES`, ``reason``/``cause`` index :data:`REASONS` (``cause`` is the rule that
    made an ``expired`` touch miss its validity, else equal to ``reason``), ``channel`` is the
    channel actually used (automation may change a guide task's)."""

    candidate_id: Array
    customer_id: Array
    sop_id: Array
    status: Array  # int8
    reason: Array  # int8
    cause: Array  # int8
    send_at: Array  # int64, NEVER unless sent
    deferred_until: Array  # int64, NEVER unless deferred
    channel: Array  # int8
    automated: Array  # bool
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidate_id)

    def status_names(self) -> Array:
        return np.array(STATUSES, dtype=object)[self.status]

    def reason_names(self) -> Array:
        return np.array(REASONS, dtype=object)[self.reason]

    def to_arrow(self) -> Any:
        import pyarrow as pa

        def dictionary(codes: Array, names: Sequence[str]) -> Any:
            return pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int8)), pa.array(list(names), pa.string())
            )

        def ts(values: Array) -> Any:
            return pa.array(
                values.astype("datetime64[s]"), pa.timestamp("s", tz="UTC"), mask=values == NEVER
            )

        return pa.table(
            {
                "candidate_id": self.candidate_id,
                "customer_id": self.customer_id,
                "sop_id": self.sop_id,
                "status": dictionary(self.status, STATUSES),
                "reason": dictionary(self.reason, REASONS),
                "cause": dictionary(self.cause, REASONS),
                "send_at": ts(self.send_at),
                "deferred_until": ts(self.deferred_until),
                "channel": dictionary(self.channel, CHANNELS),
                "automated": self.automated,
            }
        )


# ---------------------------------------------------------------- calendar


def _at(day: date, minutes: int, zone: ZoneInfo) -> int:
    return epoch(datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone))


@dataclass(frozen=True)
class Windows:
    """The planning day and its week and month, as UTC epoch bounds."""

    day: date
    tz: str
    day_start: int
    day_end: int
    week_start: int
    week_end: int
    month_start: int
    month_end: int
    days_in_month: int

    @classmethod
    def of(cls, day: date, tz: str) -> Windows:
        zone = ZoneInfo(tz)
        monday = day - timedelta(days=day.weekday())
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return cls(
            day,
            tz,
            _at(day, 0, zone),
            _at(day + timedelta(days=1), 0, zone),
            _at(monday, 0, zone),
            _at(monday + timedelta(days=7), 0, zone),
            _at(first, 0, zone),
            _at(nxt, 0, zone),
            (nxt - first).days,
        )


class QuietClock:
    """Allowed (non-quiet) intervals in UTC for one quiet-hours setting, around a day."""

    def __init__(
        self, day: date, tz: str, quiet: tuple[int, int], before: int = 3, after: int = 70
    ):
        zone = ZoneInfo(tz)
        start, end = quiet
        spans: list[tuple[int, int]] = []
        if start == end:
            spans.append((NEVER, FOREVER))
        else:
            for k in range(-before, after + 1):
                d = day + timedelta(days=k)
                midnight, next_midnight = _at(d, 0, zone), _at(d + timedelta(days=1), 0, zone)
                if start > end:  # wraps midnight: allowed [end, start)
                    spans.append((_at(d, end, zone), _at(d, start, zone)))
                else:  # allowed [00:00, start) and [end, 24:00)
                    spans.append((midnight, _at(d, start, zone)))
                    spans.append((_at(d, end, zone), next_midnight))
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and merged[-1][1] >= s:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            elif e > s:
                merged.append((s, e))
        self.starts = np.array([s for s, _ in merged], dtype=np.int64)
        self.ends = np.array([e for _, e in merged], dtype=np.int64)

    def next_allowed(self, t: Array) -> Array:
        """The first allowed instant at or after each ``t`` (beyond the horizon: ``t``)."""
        i = np.searchsorted(self.ends, t, side="right")
        inside = i < len(self.ends)
        j = np.minimum(i, len(self.ends) - 1)
        start = self.starts[j]
        return np.where(inside & (start > t), start, t)

    def allowed(self, t: Array) -> Array:
        out: Array = self.next_allowed(t) == t
        return out


# ---------------------------------------------------------------- the planner


@dataclass
class _Counter:
    reason: str
    start: int
    end: int  # when the window resets (FOREVER: never)
    channel: int  # -1: any channel
    marketing_only: bool
    limits: list[int]  # per policy index


def _counters(
    policies: Sequence[BreathingPolicy], brand: BreathingPolicy, w: Windows
) -> list[_Counter]:
    windows = {
        "day": (w.day_start, w.day_end),
        "week": (w.week_start, w.week_end),
        "month": (w.month_start, w.month_end),
    }

    def lim(v: int | None) -> int:
        return _BIG if v is None else v

    quota_window, quota_limit = {
        MassQuota.DAILY_1: ("day", 1),
        MassQuota.WEEKLY_7: ("week", 7),
        MassQuota.MONTHLY_4: ("month", 4),
        MassQuota.MONTHLY_DAYS: ("month", w.days_in_month),
    }[brand.mass_quota]
    out = [
        _Counter(Reason.BACKOFF, NEVER, FOREVER, -1, True, [brand.backoff_after] * len(policies)),
        _Counter(
            Reason.PLATFORM_QUOTA,
            *windows[quota_window],
            _MASS,
            False,
            [quota_limit] * len(policies),
        ),
    ]
    for name, code in (
        ("month", Reason.MONTHLY_CAP),
        ("week", Reason.WEEKLY_CAP),
        ("day", Reason.DAILY_CAP),
    ):
        limits = [lim(getattr(p.caps, name)) for p in policies]
        if min(limits) < _BIG:
            out.append(_Counter(code, *windows[name], -1, True, limits))
    capped = sorted({c for p in policies for c in p.channel_caps}, key=CHANNELS.index)
    for channel in capped:
        for name, code in (
            ("month", Reason.CHANNEL_MONTHLY_CAP),
            ("week", Reason.CHANNEL_WEEKLY_CAP),
            ("day", Reason.CHANNEL_DAILY_CAP),
        ):
            limits = [
                lim(getattr(p.channel_caps[channel], name)) if channel in p.channel_caps else _BIG
                for p in policies
            ]
            if min(limits) < _BIG:
                out.append(_Counter(code, *windows[name], _CH[channel], True, limits))
    return out


def _lookup(keys: Array, values: Array) -> tuple[Array, Array]:
    """Positions of ``values`` in the sorted unique ``keys`` and whether they are there."""
    if len(keys) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.searchsorted(keys, values)
    pos = np.minimum(pos, len(keys) - 1)
    return pos, keys[pos] == values


def plan(
    candidates: Candidates,
    history: History,
    state: CustomerState,
    policy: BreathingPolicy,
    day: date,
    tz: str,
    *,
    sop_policies: Mapping[Any, BreathingPolicy] | None = None,
) -> Decisions:
    """Decide every candidate for the brand-local ``day`` (see the module docstring)."""
    n = len(candidates)
    w = Windows.of(day, tz)
    c = candidates

    # policies: 0 is the brand's; SOP overrides get their own index
    policies: list[BreathingPolicy] = [policy]
    pol = np.zeros(n, dtype=np.int64)
    if sop_policies and n:
        sops, inverse = np.unique(c.sop_id, return_inverse=True)
        index = np.zeros(len(sops), dtype=np.int64)
        for i, sop in enumerate(sops.tolist()):
            if sop in sop_policies:
                policies.append(sop_policies[sop])
                index[i] = len(policies) - 1
        pol = index[inverse]
    quiet_keys = sorted({p.quiet_minutes for p in policies})
    clocks = [QuietClock(day, tz, q) for q in quiet_keys]
    pol_clock = np.array([quiet_keys.index(p.quiet_minutes) for p in policies], dtype=np.int64)
    gap_p = np.array([p.min_gap_minutes * 60 for p in policies], dtype=np.int64)

    def next_allowed(t: Array, p: Array) -> Array:
        if len(clocks) == 1:
            return clocks[0].next_allowed(t)
        out = t.copy()
        q = pol_clock[p]
        for k, clock in enumerate(clocks):
            m = q == k
            if m.any():
                out[m] = clock.next_allowed(t[m])
        return out

    counters = _counters(policies, policy, w)
    K = len(counters)
    n_types = len(CHANNELS) * 2
    applies = np.zeros((n_types, K), dtype=bool)  # type = channel * 2 + kind
    for ch in range(len(CHANNELS)):
        for kd in (MARKETING, TRANSACTIONAL):
            for k, ctr in enumerate(counters):
                applies[ch * 2 + kd, k] = (ctr.channel in (-1, ch)) and (
                    kd == MARKETING or not ctr.marketing_only
                )
    limits = np.array([ctr.limits for ctr in counters], dtype=np.int64).T  # (policies, K)
    resets = np.array([ctr.end for ctr in counters], dtype=np.int64)
    counter_reason = np.array([_R[ctr.reason] for ctr in counters], dtype=np.int8)

    # customers (dense codes over the candidates' customers)
    cust_keys, cust = np.unique(c.customer_id, return_inverse=True)
    nc = len(cust_keys)
    channel = c.channel.astype(np.int64)
    kind = c.kind.astype(np.int64)
    typ = channel * 2 + kind
    marketing = kind == MARKETING
    prio, ev = c.priority, c.expected_value
    rank_id = _rank(c.candidate_id)

    # history → per customer initial counts H, last marketing touch, today's guide load
    hpos, hin = _lookup(cust_keys, history.customer_id)
    rows = np.flatnonzero(hin & (history.sent_at < w.day_end))
    h_c, h_at = hpos[rows], history.sent_at[rows]
    h_typ = history.channel[rows].astype(np.int64) * 2 + history.kind[rows]
    H = np.zeros((nc, K), dtype=np.int64)
    for k, ctr in enumerate(counters):
        if ctr.reason == Reason.BACKOFF:
            continue
        m = applies[h_typ, k] & (h_at >= ctr.start) & (h_at < ctr.end)
        H[:, k] = np.bincount(h_c[m], minlength=nc)
    h_mkt = history.kind[rows] == MARKETING
    last_mkt0 = np.full(nc, NEVER, dtype=np.int64)
    np.maximum.at(last_mkt0, h_c[h_mkt], h_at[h_mkt])

    # state → stops and back-off
    spos, sin = _lookup(cust_keys, state.customer_id)
    srows = np.flatnonzero(sin)
    sc = spos[srows]
    opted, deleted, complained = (np.zeros(nc, bool) for _ in range(3))
    unanswered = np.zeros(nc, np.int64)
    last_reply = np.full(nc, NEVER, np.int64)
    backoff_until = np.full(nc, NEVER, np.int64)
    opted[sc] = state.opted_out[srows]
    deleted[sc] = state.deleted_guide[srows]
    complained[sc] = state.complained[srows]
    unanswered[sc] = state.unanswered[srows]
    last_reply[sc] = state.last_reply_at[srows]
    backoff_until[sc] = state.backoff_until[srows]
    paused_until = backoff_pause(
        unanswered, last_reply, backoff_until, last_mkt0, policy.backoff_after, policy.backoff_days
    )
    k_backoff = 0
    H[:, k_backoff] = np.where(unanswered >= policy.backoff_after, 0, np.maximum(unanswered, 0))

    # decisions
    status = np.full(n, -1, dtype=np.int8)
    reason = np.zeros(n, dtype=np.int8)
    cause = np.zeros(n, dtype=np.int8)
    send_at = np.full(n, NEVER, dtype=np.int64)
    until = np.full(n, NEVER, dtype=np.int64)
    automated = np.zeros(n, dtype=bool)
    open_ = np.ones(n, dtype=bool)

    def decide(mask: Array, st: int, code: str, when: Array | None = None) -> None:
        idx = np.flatnonzero(mask & open_)
        status[idx] = st
        reason[idx] = cause[idx] = _R[code]
        if when is not None:
            until[idx] = when[idx]
        open_[idx] = False

    def defer_or_expire(idx: Array, when: Array, code_idx: Array) -> None:
        """Deferred until ``when`` if within validity, else suppressed expired."""
        ok = when <= c.expires_at[idx]
        d, s = idx[ok], idx[~ok]
        status[d], reason[d], cause[d], until[d] = DEFERRED, code_idx[ok], code_idx[ok], when[ok]
        status[s], reason[s], cause[s] = SUPPRESSED, _R[Reason.EXPIRED], code_idx[~ok]
        until[s] = NEVER
        open_[idx] = False

    # 1. static checks
    start = np.maximum(c.due_at, w.day_start)
    contact = np.isin(channel, [_CH[x] for x in CONTACT_CHANNELS])
    cc = cust
    decide(c.holdout, SUPPRESSED, Reason.HOLDOUT)
    decide(c.expires_at < start, SUPPRESSED, Reason.EXPIRED)
    decide(marketing & opted[cc], SUPPRESSED, Reason.OPTED_OUT)
    decide(marketing & complained[cc], SUPPRESSED, Reason.COMPLAINED)
    decide(deleted[cc] & (marketing | contact), SUPPRESSED, Reason.DELETED_GUIDE)
    decide(c.due_at >= w.day_end, DEFERRED, Reason.NOT_DUE, when=c.due_at)
    start = np.where(marketing, np.maximum(start, paused_until[cc]), start)
    decide(
        marketing
        & (paused_until[cc] > w.day_start)
        & ((start >= w.day_end) | (start > c.expires_at)),
        SUPPRESSED,
        Reason.BACKOFF,
    )
    earliest = next_allowed(start, pol)
    late = open_ & ((earliest >= w.day_end) | (earliest > c.expires_at))
    idx = np.flatnonzero(late)
    defer_or_expire(idx, earliest[idx], np.full(len(idx), _R[Reason.QUIET_HOURS], np.int8))
    eligible = open_.copy()

    # 2. arbitration, position by position in each customer's queue
    C = H.copy()
    last_mkt = last_mkt0.copy()

    def arbitrate(idx: Array) -> None:
        if len(idx) == 0:
            return
        cs = cust[idx]
        order = np.lexsort((rank_id[idx], -ev[idx], -prio[idx], cs))
        s, cs = idx[order], cs[order]
        first = np.r_[True, cs[1:] != cs[:-1]]
        group_start = np.flatnonzero(first)
        pos = np.arange(len(s)) - group_start[np.cumsum(first) - 1]
        by = np.argsort(pos, kind="stable")
        s = s[by]
        bounds = np.r_[0, np.cumsum(np.bincount(pos))]
        for j in range(len(bounds) - 1):
            ix = s[bounds[j] : bounds[j + 1]]
            cu, p = cust[ix], pol[ix]
            A = applies[typ[ix]]
            L = limits[p]
            fail = A & (C[cu] >= L)
            room = ~fail.any(axis=1)
            mk = marketing[ix]
            t = np.where(mk, np.maximum(earliest[ix], last_mkt[cu] + gap_p[p]), earliest[ix])
            t = next_allowed(t, p)
            late = (t >= w.day_end) | (t > c.expires_at[ix])
            ok = room & ~late
            acc, acu = ix[ok], cu[ok]
            C[acu] += A[ok]
            mok = mk[ok]
            last_mkt[acu[mok]] = t[ok][mok]
            status[acc] = SENT
            reason[acc] = np.where(automated[acc], _R[Reason.AUTOMATED], 0)
            cause[acc] = reason[acc]
            send_at[acc] = t[ok]
            until[acc] = NEVER
            # the gap pushed it out of the day or its validity
            g = room & late
            defer_or_expire(ix[g], t[g], np.full(int(g.sum()), _R[Reason.MIN_GAP], np.int8))
            send_at[ix[g]] = NEVER
            # a counter is full: the cap's code if history had filled it, else arbitration
            f = ~room
            if f.any():
                ff, fi, fcu = fail[f], ix[f], cu[f]
                before = ff & (H[fcu] >= L[f])
                code = np.where(
                    before.any(axis=1),
                    counter_reason[np.argmax(before, axis=1)],
                    _R[Reason.LOST_ARBITRATION],
                ).astype(np.int8)
                code = np.where(ff[:, k_backoff], _R[Reason.BACKOFF], code).astype(np.int8)
                reset = np.where(ff, resets, 0).max(axis=1)
                when = next_allowed(np.minimum(reset, FOREVER), p[f])
                stop = ff[:, k_backoff]
                sb = fi[stop]
                status[sb], reason[sb], cause[sb] = (
                    SUPPRESSED,
                    _R[Reason.BACKOFF],
                    _R[Reason.BACKOFF],
                )
                until[sb] = NEVER
                open_[sb] = False
                defer_or_expire(fi[~stop], when[~stop], code[~stop])
                send_at[fi] = NEVER

    arbitrate(np.flatnonzero(eligible))

    # 3. guide capacity: rank each guide's sent tasks by expected value
    g_all = np.flatnonzero(channel == _GUIDE)
    guide_keys = np.unique(c.guide_id[g_all]) if len(g_all) else np.zeros(0, np.int64)
    load = np.zeros(len(guide_keys), dtype=np.int64)
    if len(guide_keys) and len(history):
        today = np.flatnonzero(
            (history.channel == _GUIDE)
            & (history.sent_at >= w.day_start)
            & (history.sent_at < w.day_end)
        )
        gpos, gin = _lookup(guide_keys, history.guide_id[today])
        load = np.bincount(gpos[gin], minlength=len(guide_keys))
    guide = np.zeros(n, dtype=np.int64)
    if len(g_all):
        guide[g_all] = np.searchsorted(guide_keys, c.guide_id[g_all])
    capacity = policy.guide_capacity
    auto_ch = _CH[policy.automation_channel]
    next_day = next_allowed(np.full(n, w.day_end, np.int64), pol)
    while len(guide_keys):
        g = np.flatnonzero((status == SENT) & (channel == _GUIDE))
        if not len(g):
            break
        order = np.lexsort((rank_id[g], -prio[g], -ev[g], guide[g]))
        g, gg = g[order], guide[g[order]]
        first = np.r_[True, gg[1:] != gg[:-1]]
        pos = np.arange(len(g)) - np.flatnonzero(first)[np.cumsum(first) - 1]
        over = g[pos + load[gg] >= capacity]
        if not len(over):
            break
        auto = c.automatable[over]
        conv = over[auto]
        channel[conv] = auto_ch
        typ[conv] = auto_ch * 2 + kind[conv]
        automated[conv] = True
        stay = over[~auto]
        eligible[stay] = False
        send_at[stay] = NEVER
        defer_or_expire(
            stay, next_day[stay], np.full(len(stay), _R[Reason.GUIDE_CAPACITY], np.int8)
        )
        affected = np.zeros(nc, dtype=bool)
        affected[cust[over]] = True
        C[affected] = H[affected]
        last_mkt[affected] = last_mkt0[affected]
        arbitrate(np.flatnonzero(eligible & affected[cust]))

    if (status < 0).any():  # pragma: no cover - every path above decides
        raise AssertionError("undecided candidates")
    decisions = Decisions(
        candidate_id=c.candidate_id,
        customer_id=c.customer_id,
        sop_id=c.sop_id,
        status=status,
        reason=reason,
        cause=cause,
        send_at=send_at,
        deferred_until=until,
        channel=channel.astype(np.int8),
        automated=automated,
    )
    return replace(decisions, summary=summarise(decisions, c, capacity))


def backoff_pause(
    unanswered: Array,
    last_reply: Array,
    backoff_until: Array,
    last_marketing: Array,
    after: int,
    days: int,
) -> Array:
    """When each customer's marketing pause ends (NEVER: not paused). ``after`` unanswered
    touches pause for ``days`` from the last marketing touch; an explicit ``backoff_until``
    holds unless a reply came after the pause began. Any reply resets."""
    pause = days * 86400
    explicit = np.where(last_reply < backoff_until - pause, backoff_until, NEVER)
    counted = np.where(
        (unanswered >= after) & (last_marketing > NEVER) & (last_reply < last_marketing),
        last_marketing + pause,
        NEVER,
    )
    out: Array = np.maximum(explicit, counted)
    return out


def summarise(d: Decisions, c: Candidates, capacity: int) -> dict[str, Any]:
    """Counts by status and reason, sends per SOP and channel, each guide's workload."""
    key = d.status.astype(np.int64) * len(REASONS) + d.reason
    counts = np.bincount(key, minlength=len(STATUSES) * len(REASONS))
    by_reason: dict[str, dict[str, int]] = {}
    for i in np.flatnonzero(counts).tolist():
        st, rs = STATUSES[i // len(REASONS)], REASONS[i % len(REASONS)] or "ok"
        by_reason.setdefault(st, {})[rs] = int(counts[i])
    sent = d.status == SENT
    sops, sop_counts = np.unique(c.sop_id[sent], return_counts=True)
    channels = np.bincount(d.channel[sent].astype(np.int64), minlength=len(CHANNELS))
    guides: dict[str, dict[str, int]] = {}
    is_task = c.channel == _GUIDE
    if is_task.any():
        keys, inverse = np.unique(c.guide_id[is_task], return_inverse=True)
        tasks = np.bincount(
            inverse, weights=sent[is_task] & (d.channel[is_task] == _GUIDE), minlength=len(keys)
        )
        auto = np.bincount(inverse, weights=d.automated[is_task], minlength=len(keys))
        over = np.bincount(
            inverse, weights=d.cause[is_task] == _R[Reason.GUIDE_CAPACITY], minlength=len(keys)
        )
        for k, t, a, o in zip(
            keys.tolist(), tasks.tolist(), auto.tolist(), over.tolist(), strict=True
        ):
            guides[str(k)] = {"tasks": int(t), "automated": int(a), "overflow": int(o)}
    return {
        "candidates": len(d),
        "status": {STATUSES[i]: int((d.status == i).sum()) for i in range(len(STATUSES))},
        "reasons": by_reason,
        "sent_by_sop": {
            str(k): int(v) for k, v in zip(sops.tolist(), sop_counts.tolist(), strict=True)
        },
        "sent_by_channel": {CHANNELS[i]: int(v) for i, v in enumerate(channels.tolist()) if v},
        "guides": guides,
        "guide_capacity": capacity,
    }


# ---------------------------------------------------------------- several days


def sent_history(d: Decisions, c: Candidates) -> History:
    """The sent touches of a day as history rows (with the channel actually used)."""
    sent = np.flatnonzero(d.status == SENT)
    return History(
        customer_id=c.customer_id[sent],
        channel=d.channel[sent],
        kind=c.kind[sent],
        sent_at=d.send_at[sent],
        guide_id=c.guide_id[sent],
    )


def advance_state(
    state: CustomerState,
    day_sent: History,
    policy: BreathingPolicy,
    replies: tuple[Array, Array] | None = None,
) -> CustomerState:
    """Carry the back-off counters over one day: marketing touches sent add to
    ``unanswered`` (restarting from zero once a pause is over); a reply (customer id, time)
    resets it to the touches sent after the reply and clears ``backoff_until``."""
    reply_c = np.zeros(0, state.customer_id.dtype) if replies is None else np.asarray(replies[0])
    reply_at = np.zeros(0, np.int64) if replies is None else _times(replies[1])
    mk = day_sent.kind == MARKETING
    keys = np.unique(np.concatenate([state.customer_id, day_sent.customer_id[mk], reply_c]))
    nk = len(keys)
    pos, _ = _lookup(keys, state.customer_id)

    def spread(values: Array, default: Any, dtype: Any) -> Array:
        out = np.full(nk, default, dtype=dtype)
        out[pos] = values
        return out

    opted = spread(state.opted_out, False, bool)
    deleted = spread(state.deleted_guide, False, bool)
    complained = spread(state.complained, False, bool)
    unanswered = spread(state.unanswered, 0, np.int64)
    last_reply = spread(state.last_reply_at, NEVER, np.int64)
    backoff = spread(state.backoff_until, NEVER, np.int64)
    if len(reply_c):
        rp, _ = _lookup(keys, reply_c)
        np.maximum.at(last_reply, rp, reply_at)
        backoff[rp] = NEVER
    sp, _ = _lookup(keys, day_sent.customer_id[mk])
    after_reply = day_sent.sent_at[mk] > last_reply[sp]
    sent_n = np.bincount(sp[after_reply], minlength=nk)
    replied = np.zeros(nk, bool)
    if len(reply_c):
        replied[_lookup(keys, reply_c)[0]] = True
    base = np.where(replied, 0, np.where(unanswered >= policy.backoff_after, 0, unanswered))
    unanswered = np.where(replied | (sent_n > 0), base + sent_n, unanswered)
    return CustomerState(keys, opted, deleted, complained, unanswered, last_reply, backoff)


@dataclass(frozen=True)
class DayPlan:
    day: date
    candidates: Candidates
    decisions: Decisions


@dataclass(frozen=True)
class Simulation:
    days: list[DayPlan]
    history: History
    state: CustomerState


def simulate(
    candidates_by_day: Sequence[Candidates],
    history: History,
    state: CustomerState,
    policy: BreathingPolicy,
    first_day: date,
    tz: str,
    *,
    sop_policies: Mapping[Any, BreathingPolicy] | None = None,
    replies_by_day: Sequence[tuple[Array, Array] | None] | None = None,
) -> Simulation:
    """Plan consecutive days: each day's candidates are the new ones plus every touch still
    deferred (due again at its ``deferred_until``); each day's sends join the history and the
    back-off state before the next day is planned. The dry run."""
    carried: Candidates | None = None
    days: list[DayPlan] = []
    for i, fresh in enumerate(candidates_by_day):
        day = first_day + timedelta(days=i)
        todays = fresh if carried is None else carried.concat(fresh)
        decisions = plan(todays, history, state, policy, day, tz, sop_policies=sop_policies)
        days.append(DayPlan(day, todays, decisions))
        sent = sent_history(decisions, todays)
        history = history.concat(sent)
        replies = (
            replies_by_day[i] if replies_by_day is not None and i < len(replies_by_day) else None
        )
        state = advance_state(state, sent, policy, replies)
        deferred = np.flatnonzero(decisions.status == DEFERRED)
        carried = todays.take(deferred)
        carried = replace(
            carried, due_at=np.maximum(carried.due_at, decisions.deferred_until[deferred])
        )
    return Simulation(days, history, state)
