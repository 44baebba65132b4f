"""The SOP engine on real data: enrolment, advancing through steps, the day's planning run, the
dry-run and real-time triggers.

One code path for the run and the dry-run: a :class:`World` holds the brand's enabled SOPs,
open enrolments, pending touches and the recent send history in memory; ``_enrol``,
``_advance`` and ``_plan_day`` change only the world. :func:`run_day` loads a world, moves it
through the day and writes what changed (enrolments and new touches in one transaction, then
the decisions with their outbox rows and guide tasks in committed chunks);
:func:`simulate` moves a world through several days and writes nothing.

**Enrolment** (per SOP, for audience changes in ``(watermark, horizon]``; the watermark is
``Sop.enrolled_until``, first the time the SOP was enabled): segment members (once per
customer; with a cron schedule again at every firing), customers entering or leaving a tag
(``tag_history``), customers with a lake event of the trigger type received in the window
(optionally filtered by the audience condition; a customer re-enters an event SOP only after
finishing it and more than an hour after the previous entry). Schedules: ``start``/``end``
bound entry times; ``cron`` enters at the firing times in the brand's zone (tag and event
audiences wait for the next firing); ``relative`` enters N days after the customer's first or
last event of a type; ``birthday`` enters at local midnight of (birthday − days_before),
cycle = year. Holdout: ``hash(sop key, customer) % 100 < holdout_pct`` → state ``holdout``:
never advanced, never touched, kept for lift.

**Advancing** moves due enrolments one step per round, grouped by (SOP, step), so a branch
condition is evaluated once per group over just its customers (tag language, as of the
horizon). A touch or guide-task step proposes a ``Touch`` (status ``planned``, idempotency key
``{enrolment}:{step}:{cycle}``) due when the step is reached and goes on at once; a wait
parks the enrolment until its time. A goal event that occurred after entry exits the
enrolment (``exit_reason`` ``goal``).

**Planning** gives :func:`siyu.sop.planner.plan` every planned or deferred touch due by the
end of the day (a deferred touch is due again at its ``deferred_until``), the touches sent
in the last five weeks as history and the customers' stop state (``siyu.sop.state``).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from siyu.core.clock import utcnow
from siyu.core.db import atomic, table_of
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM, Actor
from siyu.org.models import Brand
from siyu.sop import cron as cronlib
from siyu.sop import state as st
from siyu.sop.models import (
    Enrolment,
    GuideTask,
    Outbox,
    PlatformQuotaUse,
    Sop,
    SopPolicy,
    SopRun,
    Touch,
)
from siyu.sop.planner import (
    NEVER,
    REASONS,
    STATUSES,
    Candidates,
    CustomerState,
    Decisions,
    History,
    epoch,
    plan,
)
from siyu.sop.policy import CHANNELS, GUIDE_CHANNEL, PLATFORM_QUOTA_CHANNEL, BreathingPolicy

HISTORY_DAYS = 35  # a month plus the default back-off pause
GUIDE_TASK_GRACE_HOURS = 72  # a guide task stays valid this long past its due time
EVENT_REENTRY = timedelta(hours=1)
CHUNK_CUSTOMERS = 500  # decisions committed per chunk of customers
MAX_STEPS_PER_PASS = 100  # a loop of branches without a wait parks after this many steps
# SOP step channels the planner knows under another name.
OPEN_STATES = ("active", "waiting")
PENDING = ("planned", "deferred")


def _share(*parts: str) -> int:
    """A deterministic bucket 0–99 for holdouts and A/B splits."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def pick_variant(key: str, customer_id: str, step: int, weights: dict[str, int]) -> str:
    """A touch's A/B/n variant for a customer: deterministic, shares follow the weights."""
    total = sum(weights.values())
    digest = hashlib.sha256(f"{key}|{customer_id}|{step}|variant".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % total
    acc = 0
    for name, weight in weights.items():
        acc += weight
        if bucket < acc:
            return name
    return next(iter(weights))


def _step_content(sop: SopDef, e: Enr, i: int, step: dict[str, Any]) -> dict[str, Any]:
    """The content a touch step sends this customer: its variant's, if it has variants."""
    variants = step.get("variants") or []
    if not variants:
        return dict(step.get("content") or {})
    weights = {str(v["name"]): int(v["weight"]) for v in variants}
    name = pick_variant(sop.key, e.customer_id, i, weights)
    chosen = next(v for v in variants if str(v["name"]) == name)
    return {**dict(chosen.get("content") or {}), "variant": name}


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def brand_policy(db: Session, brand_id: str) -> BreathingPolicy:
    """The brand's stored settings over the defaults."""
    row = db.get(SopPolicy, brand_id)
    return BreathingPolicy.from_dict(row.settings if row and row.settings else {})


# ---------------------------------------------------------------- the world in memory


@dataclass
class SopDef:
    id: str
    key: str
    priority: int
    audience: dict[str, Any]
    schedule: dict[str, Any]
    goal_event: str | None
    holdout_pct: int
    steps: list[dict[str, Any]]
    watermark: datetime | None
    start: datetime | None
    end: datetime | None
    moved: bool = False

    @classmethod
    def of(cls, sop: Sop) -> SopDef:
        sched = sop.schedule or {}
        return cls(
            sop.id,
            sop.key,
            sop.priority,
            dict(sop.audience or {}),
            dict(sched),
            sop.goal_event,
            sop.holdout_pct,
            list(sop.steps or []),
            sop.enrolled_until or sop.enabled_at or sop.created_at,
            _when(sched.get("start")),
            _when(sched.get("end")),
        )


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


@dataclass
class Enr:
    id: str
    sop_id: str
    customer_id: str
    cycle: int
    entered_at: datetime
    step: int
    next_at: datetime | None
    state: str
    variant: str | None
    holdout: bool
    exit_reason: str | None = None
    new: bool = False
    dirty: bool = False


@dataclass
class Tch:
    id: str
    idem_key: str
    sop_id: str
    enrolment_id: str
    customer_id: str
    step: int
    channel: str
    kind: str
    content: dict[str, Any]
    sender: str | None
    guide_staff_id: str | None
    expected_value: float
    due_at: datetime
    expires_at: datetime
    status: str = "planned"
    reason: str | None = None
    cause: str | None = None
    send_at: datetime | None = None
    deferred_until: datetime | None = None
    automatable: bool = False
    new: bool = False


@dataclass
class World:
    brand_id: str
    tz: str
    policy: BreathingPolicy
    sop_policies: dict[str, BreathingPolicy]
    sops: list[SopDef]
    enrolments: dict[str, Enr]  # open (active, waiting) and holdout ones
    seen: dict[tuple[str, str], tuple[int, datetime]]  # (sop, customer) → max cycle, entry
    touches: dict[str, Tch]  # pending (and this run's new) touches by idem key
    history: list[tuple[str, str, str, datetime, str]]  # customer, channel, kind, sent_at, guide
    facts: st.Facts
    info: dict[str, st.Info] = field(default_factory=dict)
    tag_ops: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)

    @property
    def sop(self) -> dict[str, SopDef]:
        return {s.id: s for s in self.sops}


def _fact_types(sops: list[SopDef]) -> set[str]:
    types = set(st.STATE_EVENTS)
    for s in sops:
        if s.goal_event:
            types.add(s.goal_event)
        if s.audience.get("kind") == "event" and s.audience.get("event"):
            types.add(str(s.audience["event"]))
        rel = s.schedule.get("relative")
        if rel:
            types.add(str(rel["event"]))
    return types


def load(
    db: Session,
    brand: Brand,
    since: datetime,
    *,
    sop_ids: list[str] | None = None,
    customer_ids: list[str] | None = None,
) -> World:
    """The brand's engine state: enabled SOPs, open enrolments, pending touches and the sends
    since ``since`` − five weeks (restricted to some customers for real-time triggers)."""
    stmt = select(Sop).where(Sop.brand_id == brand.id, Sop.status == "enabled")
    if sop_ids is not None:
        stmt = stmt.where(Sop.id.in_(sop_ids))
    rows = list(db.scalars(stmt.order_by(Sop.key)))
    sops = [SopDef.of(s) for s in rows]
    policy = brand_policy(db, brand.id)
    sop_policies = {s.id: policy.for_sop(s.policy) for s in rows if s.policy}
    ids = [s.id for s in sops]

    def cust(col: Any) -> list[Any]:
        return [] if customer_ids is None else [col.in_(customer_ids)]

    enrolments: dict[str, Enr] = {}
    seen: dict[tuple[str, str], tuple[int, datetime]] = {}
    if ids:
        for e in db.scalars(
            select(Enrolment).where(
                Enrolment.brand_id == brand.id,
                Enrolment.sop_id.in_(ids),
                Enrolment.state.in_(OPEN_STATES),
                *cust(Enrolment.customer_id),
            )
        ):
            enrolments[e.id] = Enr(
                e.id,
                e.sop_id,
                e.customer_id,
                e.cycle,
                e.entered_at,
                e.step,
                e.next_at,
                e.state,
                e.variant,
                e.holdout,
                e.exit_reason,
            )
        for sop_id, cid, cycle, entered in db.execute(
            select(
                Enrolment.sop_id,
                Enrolment.customer_id,
                func.max(Enrolment.cycle),
                func.max(Enrolment.entered_at),
            )
            .where(
                Enrolment.brand_id == brand.id,
                Enrolment.sop_id.in_(ids),
                *cust(Enrolment.customer_id),
            )
            .group_by(Enrolment.sop_id, Enrolment.customer_id)
        ):
            seen[(sop_id, cid)] = (int(cycle), entered)
    touches: dict[str, Tch] = {}
    for t in db.scalars(
        select(Touch).where(
            Touch.brand_id == brand.id, Touch.status.in_(PENDING), *cust(Touch.customer_id)
        )
    ):
        touches[t.idem_key] = _tch(t)
    history: list[tuple[str, str, str, datetime, str]] = [
        (c, ch, k, at, g or "")
        for c, ch, k, at, g in db.execute(
            select(
                Touch.customer_id, Touch.channel, Touch.kind, Touch.send_at, Touch.guide_staff_id
            ).where(
                Touch.brand_id == brand.id,
                Touch.status == "sent",
                Touch.send_at >= since - timedelta(days=HISTORY_DAYS),
                *cust(Touch.customer_id),
            )
        )
        if at is not None
    ]
    # mass messages the customer received from elsewhere (WeCom result status 3) use the
    # platform quota like ours do
    history.extend(
        (c, PLATFORM_QUOTA_CHANNEL, "transactional", at, "")
        for c, at in db.execute(
            select(PlatformQuotaUse.customer_id, PlatformQuotaUse.used_at).where(
                PlatformQuotaUse.brand_id == brand.id,
                PlatformQuotaUse.used_at >= since - timedelta(days=HISTORY_DAYS),
                *cust(PlatformQuotaUse.customer_id),
            )
        )
    )
    facts = st.Facts.read(db, brand.id, _fact_types(sops), customer_ids)
    return World(
        brand.id,
        brand.timezone,
        policy,
        sop_policies,
        sops,
        enrolments,
        seen,
        touches,
        history,
        facts,
    )


def _tch(t: Touch) -> Tch:
    content = dict(t.content or {})
    return Tch(
        t.id,
        t.idem_key,
        t.sop_id,
        t.enrolment_id,
        t.customer_id,
        t.step,
        t.channel,
        t.kind,
        content,
        t.sender,
        t.guide_staff_id,
        t.expected_value,
        t.due_at,
        t.expires_at,
        t.status,
        t.reason,
        t.cause,
        t.send_at,
        t.deferred_until,
        bool(content.get("automatable", False)),
    )


# ---------------------------------------------------------------- enrolment


def _members(db: Session, brand: Brand, definition: str, as_of: datetime) -> set[str]:
    from siyu.tags import segments

    return set(segments.evaluate(db, SYSTEM, brand, definition, as_of).customer_ids)


def _segment(db: Session, brand: Brand, key: str, as_of: datetime) -> set[str]:
    from siyu.tags import segments

    return _members(db, brand, segments.segment_by_key(db, brand, key).definition, as_of)


def _condition(
    db: Session, brand: Brand, condition: str, ids: list[str], as_of: datetime
) -> set[str]:
    """Customers among ``ids`` meeting a tag-language condition (compiled over just them)."""
    from siyu.analytics.engine import connect
    from siyu.customers.queries import identity_map
    from siyu.tags import lang, segments

    if not ids:
        return set()
    cat = segments._catalogue(db, brand)
    checked = lang.check_rule(condition, cat)
    keys = set(segments._tag_keys(db, brand))
    prefix = segments.TAG_PREFIX
    tags = sorted(
        n[len(prefix) :]
        for n in segments._fields(checked.tree)
        if n.startswith(prefix) and n[len(prefix) :] in keys
    )
    customers = segments._customers(db, brand, sorted(ids), tags)
    idmap = identity_map(db, brand.id, sorted(ids))
    with connect() as engine:
        facts = lang.facts_from_lake(engine, brand.id, idmap, customers)
        expr = lang.compile_rules({"m": checked.text}, cat, facts, as_of, brand.timezone)
        got = engine.execute(expr)
    return set(lang.members(got).get("m", []))


def _qualified(
    db: Session, brand: Brand, w: World, sop: SopDef, lo: datetime, hi: datetime
) -> dict[str, datetime]:
    """Customers qualifying for the audience in ``(lo, hi]`` and when (tag and event kinds)."""
    from siyu.tags.models import Tag, TagChange

    aud = sop.audience
    kind = aud.get("kind")
    out: dict[str, datetime] = {}
    if kind in ("tag_entered", "tag_exited"):
        change = "entered" if kind == "tag_entered" else "exited"
        stmt = (
            select(TagChange.customer_id, func.min(TagChange.at))
            .join(Tag, Tag.id == TagChange.tag_id)
            .where(
                TagChange.brand_id == brand.id,
                Tag.key == aud.get("tag"),
                TagChange.change == change,
                TagChange.at > lo,
                TagChange.at <= hi,
            )
            .group_by(TagChange.customer_id)
        )
        out = {cid: at for cid, at in db.execute(stmt)}
    elif kind == "event":
        out = w.facts.received(str(aud["event"]), lo, hi)
        if aud.get("condition") and out:
            keep = _condition(db, brand, str(aud["condition"]), sorted(out), hi)
            out = {c: t for c, t in out.items() if c in keep}
    return out


def _entries(
    db: Session, brand: Brand, w: World, sop: SopDef, lo: datetime, hi: datetime
) -> tuple[dict[str, tuple[datetime, int | None]], datetime]:
    """Entries (customer → time, fixed cycle or None) in ``(lo, hi]`` and the new
    watermark."""
    sched = sop.schedule
    aud = sop.audience
    is_segment = aud.get("kind") == "segment"
    out: dict[str, tuple[datetime, int | None]] = {}
    if sched.get("cron"):
        times = cronlib.fires(str(sched["cron"]), w.tz, lo, hi)
        if is_segment:
            if times:
                for cid in _segment(db, brand, str(aud["segment"]), times[0]):
                    out[cid] = (times[0], None)
            return out, hi
        if not times:
            return out, lo
        for cid, at in _qualified(db, brand, w, sop, lo, times[-1]).items():
            fire = next(t for t in times if t >= at)
            out[cid] = (fire, None)
        return out, times[-1]
    members: set[str] | None = None
    if is_segment and (sched.get("relative") or sched.get("birthday")):
        members = _segment(db, brand, str(aud["segment"]), hi)
    if sched.get("relative"):
        rel = sched["relative"]
        which = 0 if rel.get("which", "first") == "first" else 1
        for cid, pair in w.facts.first_last(str(rel["event"]), hi).items():
            at = pair[which] + timedelta(days=int(rel["days"]))
            if lo < at <= hi and (members is None or cid in members):
                out[cid] = (at, None)
        return out, hi
    if sched.get("birthday"):
        before = int(sched["birthday"].get("days_before", 0))
        zone = ZoneInfo(w.tz)
        for cid, bday in st.birthdays(db, brand.id).items():
            if members is not None and cid not in members:
                continue
            for year in range(lo.astimezone(zone).year, hi.astimezone(zone).year + 2):
                try:
                    day = bday.replace(year=year)
                except ValueError:  # 29 February in a common year
                    day = date(year, 2, 28)
                local = datetime.combine(day - timedelta(days=before), time(0), tzinfo=zone)
                at = local.astimezone(UTC)
                if lo < at <= hi:
                    out[cid] = (at, year)
                    break
        return out, hi
    if is_segment:
        for cid in _segment(db, brand, str(aud["segment"]), hi):
            if (sop.id, cid) not in w.seen:
                out[cid] = (lo, None)
        return out, hi
    return {c: (t, None) for c, t in _qualified(db, brand, w, sop, lo, hi).items()}, hi


def _enrol(db: Session, brand: Brand, w: World, sop: SopDef, horizon: datetime) -> int:
    """Enrol the SOP's audience up to ``horizon`` in the world; the number enrolled."""
    since = sop.watermark or horizon
    if horizon <= since:
        return 0
    lo = max(since, sop.start) if sop.start else since
    hi = min(horizon, sop.end) if sop.end else horizon
    if hi <= lo:
        sop.watermark, sop.moved = horizon, True
        return 0
    entries, mark = _entries(db, brand, w, sop, lo, hi)
    open_ = {(e.sop_id, e.customer_id) for e in w.enrolments.values() if e.state in OPEN_STATES}
    event_kind = sop.audience.get("kind") == "event"
    n = 0
    for cid in sorted(entries):
        at, fixed = entries[cid]
        if (sop.id, cid) in open_:
            continue
        prev = w.seen.get((sop.id, cid))
        if event_kind and prev is not None and at <= prev[1] + EVENT_REENTRY:
            continue
        if fixed is not None:
            if prev is not None and prev[0] >= fixed:
                continue
            cycle = fixed
        else:
            cycle = (prev[0] if prev else 0) + 1
        _open(w, sop, cid, cycle, at)
        n += 1
    w.stats["enrolled"] += n
    w.stats["holdout"] += sum(
        1 for e in w.enrolments.values() if e.new and e.holdout and e.sop_id == sop.id
    )
    sop.watermark, sop.moved = max(since, mark if mark < horizon else horizon), True
    return n


# ---------------------------------------------------------------- advancing


def _wait_until(at: datetime, step: dict[str, Any], tz: str) -> datetime:
    target = at + timedelta(
        days=int(step.get("days", 0)),
        hours=int(step.get("hours", 0)),
        minutes=int(step.get("minutes", 0)),
    )
    until = step.get("until")
    if until:
        zone = ZoneInfo(tz)
        hh, mm = (int(x) for x in str(until).split(":"))
        local = target.astimezone(zone)
        candidate = datetime.combine(local.date(), time(hh, mm), tzinfo=zone)
        if candidate < local:
            candidate = datetime.combine(
                local.date() + timedelta(days=1), time(hh, mm), tzinfo=zone
            )
        target = candidate.astimezone(UTC)
    return target


def _finish(e: Enr, state: str, reason: str) -> None:
    e.state, e.exit_reason, e.dirty, e.next_at = state, reason, True, None


def _goals(w: World, horizon: datetime) -> int:
    n = 0
    for sop in w.sops:
        if not sop.goal_event:
            continue
        for e in w.enrolments.values():
            if e.sop_id != sop.id or e.state not in OPEN_STATES:
                continue
            hits = w.facts.customer(sop.goal_event, e.customer_id)
            if any(e.entered_at < h.occurred_at <= horizon for h in hits):
                _finish(e, "exited", "goal")
                n += 1
    w.stats["goal"] += n
    return n


def _new_touch(w: World, sop: SopDef, e: Enr, i: int, step: dict[str, Any]) -> None:
    key = f"{e.id}:{i}:{e.cycle}"
    if key in w.touches:
        return
    at = e.next_at or e.entered_at
    info = w.info.get(e.customer_id) or st.Info(None, None, 0.0)
    automatable = False
    status, reason = "planned", None
    if step["type"] == "touch" and step.get("mode") == "confirm":
        # guide-confirmed: the message reaches the owner guide's workbench as a 1:1 chat
        # task with the text as its script; the guide checks it, sends it and marks it done
        channel, kind, sender, guide = (
            GUIDE_CHANNEL,
            str(step.get("kind", "marketing")),
            "owner_guide",
            info.owner,
        )
        expires = at + timedelta(hours=int(step.get("valid_hours", 48)))
        body = _step_content(sop, e, i, step)
        text = str(body.get("text") or body.get("title") or "")
        content: dict[str, Any] = {
            "task": "chat",
            "title": f"确认发送 · {text[:40]}" if text else "确认发送",
            "script": text or None,
            "checklist": [],
            "due_hours": int(step.get("valid_hours", 48)),
            "automatable": False,
            "confirm": {"channel": str(step["channel"]), "content": body},
        }
        if guide is None:
            status, reason = "suppressed", "guide_capacity"
    elif step["type"] == "touch":
        channel = str(step["channel"])
        kind = str(step.get("kind", "marketing"))
        expires = at + timedelta(hours=int(step.get("valid_hours", 48)))
        sender = str(step.get("sender", "owner_guide"))
        # store_guide: the owner guide for now (no store-guide rota yet)
        guide = info.owner if sender != "brand" else None
        content = _step_content(sop, e, i, step)
    else:
        channel, kind, sender, guide = GUIDE_CHANNEL, "marketing", "owner_guide", info.owner
        due_hours = int(step.get("due_hours", 24))
        expires = at + timedelta(hours=due_hours + GUIDE_TASK_GRACE_HOURS)
        automatable = bool(step.get("automatable", False))
        content = {
            "task": step.get("task", "chat"),
            "title": step.get("title", ""),
            "script": step.get("script"),
            "checklist": list(step.get("checklist") or []),
            "due_hours": due_hours,
            "automatable": automatable,
        }
        if guide is None:
            if automatable:  # no guide to give it to: automation from the brand account
                channel, sender = w.policy.automation_channel, "brand"
                content["automated"] = True
            else:
                status, reason = "suppressed", "guide_capacity"
    t = Tch(
        new_id(),
        key,
        sop.id,
        e.id,
        e.customer_id,
        i,
        channel,
        kind,
        content,
        sender,
        guide,
        info.value,
        at,
        expires,
        status,
        reason,
        reason,
        automatable=automatable,
        new=True,
    )
    w.touches[key] = t
    w.stats["proposed"] += 1


def _advance(db: Session, brand: Brand, w: World, horizon: datetime) -> None:
    """Move every due enrolment through its steps up to ``horizon``."""
    _goals(w, horizon)
    sops = w.sop
    moves: Counter[str] = Counter()
    for _round in range(MAX_STEPS_PER_PASS):
        due = [
            e
            for e in w.enrolments.values()
            if e.state in OPEN_STATES
            and e.sop_id in sops
            and e.next_at is not None
            and e.next_at <= horizon
            and moves[e.id] < MAX_STEPS_PER_PASS
        ]
        if not due:
            break
        groups = st.group_by(due, lambda e: (e.sop_id, e.step))
        touching = sorted(
            {
                e.customer_id
                for (sid, i), es in groups.items()
                if i < len(sops[sid].steps)
                and sops[sid].steps[i]["type"] in ("touch", "guide_task")
                for e in es
                if e.customer_id not in w.info
            }
        )
        if touching:
            w.info.update(st.customer_info(db, brand.id, touching))
        for (sid, i), es in sorted(groups.items()):
            sop = sops[sid]
            es.sort(key=lambda e: e.id)
            if i >= len(sop.steps):
                for e in es:
                    _finish(e, "done", "completed")
                continue
            step = sop.steps[i]
            kind = step["type"]
            yes: set[str] = set()
            if kind == "branch":
                at = max(e.next_at or horizon for e in es)
                yes = _condition(db, brand, str(step["condition"]), [e.customer_id for e in es], at)
            for e in es:
                moves[e.id] += 1
                e.dirty = True
                if kind == "wait":
                    if e.state == "waiting":
                        e.state, e.step = "active", i + 1
                    else:
                        e.state = "waiting"
                        e.next_at = _wait_until(e.next_at or horizon, step, w.tz)
                elif kind == "branch":
                    then, other = step.get("then"), step.get("else")
                    target = then if e.customer_id in yes else other
                    e.step = i + 1 if target is None else int(target)
                elif kind in ("touch", "guide_task"):
                    _new_touch(w, sop, e, i, step)
                    e.step = i + 1
                elif kind == "tag":
                    add = step.get("add")
                    w.tag_ops.append((str(add or step.get("remove")), bool(add), [e.customer_id]))
                    e.step = i + 1
                elif kind == "split":
                    bucket = _share(sop.key, e.customer_id, str(i))
                    acc = 0
                    for name, share in sorted(step["variants"].items()):
                        acc += int(share)
                        if bucket < acc:
                            e.variant = name
                            break
                    e.step = int(step["goto"][e.variant or ""])
                elif kind == "exit":
                    _finish(e, "done", "exit")
                else:  # a step type the engine does not run (yet): skip it
                    e.step = i + 1
                if e.state == "active" and e.step >= len(sop.steps):
                    _finish(e, "done", "completed")
    w.stats["steps"] += sum(moves.values())


# ---------------------------------------------------------------- planning


def _stop_states(
    db: Session, w: World, customers: list[str], floor: datetime, until: datetime
) -> CustomerState:
    opted = st.opted_out(db, w.brand_id, customers) if customers else set()
    last_mk: dict[str, list[datetime]] = defaultdict(list)
    for c, _ch, kind, at, _g in w.history:
        if kind == "marketing" and floor <= at < until:
            last_mk[c].append(at)
    deleted, complained, unanswered, reply = [], [], [], []
    for c in customers:
        s = st.stop_state(w.facts, c, until)
        deleted.append(s.deleted_guide)
        complained.append(s.complained)
        reply.append(NEVER if s.last_reply_at is None else epoch(s.last_reply_at))
        last = s.last_reply_at
        unanswered.append(sum(1 for at in last_mk.get(c, []) if last is None or at > last))
    return CustomerState.build(
        customer_id=np.array(customers, dtype=object),
        opted_out=[c in opted for c in customers],
        deleted_guide=deleted,
        complained=complained,
        unanswered=unanswered,
        last_reply_at=np.array(reply, dtype=np.int64),
    )


def _plan_day(
    db: Session, w: World, day: date, customers: set[str] | None = None
) -> tuple[list[Tch], Decisions]:
    """Decide every pending touch due by the end of ``day`` (in the world only)."""
    start, end = day_bounds(day, w.tz)
    sops = w.sop
    todo = sorted(
        (
            t
            for t in w.touches.values()
            if t.status in PENDING
            and t.sop_id in sops
            and max(t.due_at, t.deferred_until or t.due_at) < end
            and (customers is None or t.customer_id in customers)
        ),
        key=lambda t: t.idem_key,
    )
    cand = Candidates.build(
        candidate_id=np.array([t.idem_key for t in todo], dtype=object),
        customer_id=np.array([t.customer_id for t in todo], dtype=object),
        sop_id=np.array([t.sop_id for t in todo], dtype=object),
        priority=np.array([sops[t.sop_id].priority for t in todo], dtype=np.int64),
        expected_value=np.array([t.expected_value for t in todo], dtype=np.float64),
        channel=np.array([t.channel for t in todo], dtype=object),
        kind=np.array([t.kind for t in todo], dtype=object),
        due_at=np.array(
            [epoch(max(t.due_at, t.deferred_until or t.due_at)) for t in todo], dtype=np.int64
        ),
        expires_at=np.array([epoch(t.expires_at) for t in todo], dtype=np.int64),
        guide_id=np.array([t.guide_staff_id or "" for t in todo], dtype=object),
        automatable=np.array([t.automatable for t in todo], dtype=bool),
    )
    custs = sorted({t.customer_id for t in todo})
    keep = set(custs)
    floor = start - timedelta(days=HISTORY_DAYS)
    past = [h for h in w.history if h[0] in keep and floor <= h[3] < end]
    history = History.build(
        customer_id=np.array([h[0] for h in past], dtype=object),
        channel=np.array([h[1] for h in past], dtype=object),
        kind=np.array([h[2] for h in past], dtype=object),
        sent_at=np.array([epoch(h[3]) for h in past], dtype=np.int64),
        guide_id=np.array([h[4] for h in past], dtype=object),
    )
    state = _stop_states(db, w, custs, floor, end)
    decisions = plan(cand, history, state, w.policy, day, w.tz, sop_policies=w.sop_policies)
    _apply(w, todo, decisions)
    return todo, decisions


def _dt(value: int) -> datetime | None:
    return None if value == NEVER else datetime.fromtimestamp(int(value), UTC)


def _apply(w: World, todo: list[Tch], d: Decisions) -> None:
    for k, t in enumerate(todo):
        t.status = STATUSES[int(d.status[k])]
        t.reason = REASONS[int(d.reason[k])] or None
        t.cause = REASONS[int(d.cause[k])] or None
        t.send_at = _dt(int(d.send_at[k]))
        t.deferred_until = _dt(int(d.deferred_until[k]))
        t.channel = CHANNELS[int(d.channel[k])]
        if bool(d.automated[k]):
            t.content = {**t.content, "automated": True}
        if t.status == "sent" and t.send_at is not None:
            w.history.append((t.customer_id, t.channel, t.kind, t.send_at, t.guide_staff_id or ""))


# ---------------------------------------------------------------- writing


def _persist(db: Session, brand: Brand, w: World) -> None:
    """Enrolments, new touches, watermarks and tag steps, in one transaction."""
    from siyu.core.errors import SiyuError
    from siyu.tags import actions as tag_actions
    from siyu.tags.schemas import ManualTagIn

    now = utcnow()
    with atomic(db):
        for s in w.sops:
            if s.moved:
                db.execute(update(Sop).where(Sop.id == s.id).values(enrolled_until=s.watermark))
                s.moved = False
        for e in w.enrolments.values():
            if e.new:
                db.add(
                    Enrolment(
                        id=e.id,
                        brand_id=w.brand_id,
                        sop_id=e.sop_id,
                        customer_id=e.customer_id,
                        cycle=e.cycle,
                        entered_at=e.entered_at,
                        step=e.step,
                        next_at=e.next_at,
                        state=e.state,
                        variant=e.variant,
                        holdout=e.holdout,
                        exit_reason=e.exit_reason,
                        updated_at=now,
                    )
                )
            elif e.dirty:
                db.execute(
                    update(Enrolment)
                    .where(Enrolment.id == e.id)
                    .values(
                        step=e.step,
                        next_at=e.next_at,
                        state=e.state,
                        variant=e.variant,
                        exit_reason=e.exit_reason,
                        updated_at=now,
                    )
                )
        db.flush()
        fresh = [t for t in w.touches.values() if t.new]
        existing: set[str] = set()
        keys = [t.idem_key for t in fresh]
        for i in range(0, len(keys), 500):
            existing |= set(
                db.scalars(
                    select(Touch.idem_key).where(
                        Touch.brand_id == w.brand_id, Touch.idem_key.in_(keys[i : i + 500])
                    )
                )
            )
        for t in fresh:
            if t.idem_key in existing:  # written by an earlier, interrupted pass: a no-op
                continue
            db.add(
                Touch(
                    id=t.id,
                    brand_id=w.brand_id,
                    sop_id=t.sop_id,
                    enrolment_id=t.enrolment_id,
                    customer_id=t.customer_id,
                    step=t.step,
                    idem_key=t.idem_key,
                    channel=t.channel,
                    kind=t.kind,
                    content=t.content,
                    sender=t.sender,
                    guide_staff_id=t.guide_staff_id,
                    expected_value=t.expected_value,
                    due_at=t.due_at,
                    expires_at=t.expires_at,
                    status=t.status,
                    reason=t.reason,
                    cause=t.cause,
                    decided_at=now if t.status != "planned" else None,
                )
            )
        db.flush()
        for key, add, ids in _merge_tag_ops(w.tag_ops):
            try:
                tag_actions.set_manual(
                    db, SYSTEM, brand, key, ManualTagIn(customer_ids=ids, present=add)
                )
            except SiyuError:  # the tag is gone or not manual: the step is skipped
                w.stats["tag_errors"] += 1
    for e in w.enrolments.values():
        e.new = e.dirty = False
    for t in fresh:
        t.new = False
    w.tag_ops.clear()


def _merge_tag_ops(ops: list[tuple[str, bool, list[str]]]) -> list[tuple[str, bool, list[str]]]:
    merged: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for key, add, ids in ops:
        merged[(key, add)].extend(ids)
    return [(k, a, sorted(set(ids))) for (k, a), ids in sorted(merged.items())]


def _write_chunk(db: Session, brand_id: str, touches: list[Tch], run_id: str | None) -> int:
    """Decisions of some customers' touches, their outbox rows and guide tasks: one commit.
    Idempotent: an outbox row or guide task that exists already is not written again."""
    now = utcnow()
    written = 0
    with atomic(db):
        ids = [t.id for t in touches]
        have_out = set(
            db.scalars(
                select(Outbox.idem_key).where(
                    Outbox.brand_id == brand_id,
                    Outbox.idem_key.in_([t.idem_key for t in touches]),
                )
            )
        )
        have_task = set(db.scalars(select(GuideTask.touch_id).where(GuideTask.touch_id.in_(ids))))
        if touches:
            # every decision of the chunk in one executemany, not one statement per touch
            tt = table_of(Touch)
            db.execute(
                update(tt)
                .where(tt.c.id == bindparam("p_id"))
                .values(
                    status=bindparam("p_status"),
                    reason=bindparam("p_reason"),
                    cause=bindparam("p_cause"),
                    send_at=bindparam("p_send_at"),
                    deferred_until=bindparam("p_deferred_until"),
                    channel=bindparam("p_channel"),
                    content=bindparam("p_content"),
                    decided_at=now,
                    run_id=run_id,
                ),
                [
                    {
                        "p_id": t.id,
                        "p_status": t.status,
                        "p_reason": t.reason,
                        "p_cause": t.cause,
                        "p_send_at": t.send_at,
                        "p_deferred_until": t.deferred_until,
                        "p_channel": t.channel,
                        "p_content": t.content,
                    }
                    for t in touches
                ],
            )
        for t in touches:
            if t.status != "sent" or t.send_at is None:
                continue
            if t.channel == GUIDE_CHANNEL:
                if t.id in have_task or t.guide_staff_id is None:
                    continue
                c = t.content
                db.add(
                    GuideTask(
                        id=new_id(),
                        brand_id=brand_id,
                        staff_id=t.guide_staff_id,
                        customer_id=t.customer_id,
                        sop_id=t.sop_id,
                        touch_id=t.id,
                        kind=str(c.get("task", "chat")),
                        title=str(c.get("title", "")),
                        script=c.get("script"),
                        checklist=[{"item": x, "done": False} for x in c.get("checklist", [])],
                        expected_value=t.expected_value,
                        due_at=t.send_at + timedelta(hours=int(c.get("due_hours", 24))),
                        status="open",
                    )
                )
            elif t.idem_key not in have_out:
                db.add(
                    Outbox(
                        id=new_id(),
                        brand_id=brand_id,
                        idem_key=t.idem_key,
                        channel=t.channel,
                        customer_id=t.customer_id,
                        touch_id=t.id,
                        payload={
                            "content": t.content,
                            "sender": t.sender,
                            "guide_staff_id": t.guide_staff_id,
                            "sop_id": t.sop_id,
                            "kind": t.kind,
                            "content_id": t.content.get("content_id"),
                            "version": t.content.get("version"),
                            "variant": t.content.get("variant"),
                        },
                        status="pending",
                        attempts=0,
                        available_at=t.send_at,
                    )
                )
                written += 1
    return written


def _write_decisions(db: Session, brand_id: str, todo: list[Tch], run_id: str | None) -> int:
    by_customer = st.group_by(todo, lambda t: t.customer_id)
    custs = sorted(by_customer)
    written = 0
    for i in range(0, len(custs), CHUNK_CUSTOMERS):
        chunk = [t for c in custs[i : i + CHUNK_CUSTOMERS] for t in by_customer[c]]
        written += _write_chunk(db, brand_id, chunk, run_id)
    return written


# ---------------------------------------------------------------- public API


def enrol(db: Session, brand: Brand, sop: Sop, now: datetime) -> int:
    """Enrol the SOP's audience qualifying up to ``now``; the number of new enrolments."""
    w = load(db, brand, now, sop_ids=[sop.id])
    if not w.sops:
        return 0
    n = _enrol(db, brand, w, w.sops[0], now)
    _persist(db, brand, w)
    return n


def advance(db: Session, brand: Brand, now: datetime) -> dict[str, int]:
    """Move due enrolments through their steps up to ``now``; planned touches are written."""
    w = load(db, brand, now)
    _advance(db, brand, w, now)
    _persist(db, brand, w)
    return dict(w.stats)


def _summary(todo: list[Tch], w: World, sops: dict[str, SopDef]) -> dict[str, Any]:
    sent_by_sop: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    status: Counter[str] = Counter()
    guides: dict[str, Counter[str]] = defaultdict(Counter)
    for t in todo:
        status[t.status] += 1
        if t.status == "sent":
            sent_by_sop[sops[t.sop_id].key] += 1
            if t.reason == "automated":
                guides[t.guide_staff_id or ""]["automated"] += 1
        else:
            reasons[f"{t.status}:{t.reason}"] += 1
        if t.channel == GUIDE_CHANNEL and t.status == "sent":
            guides[t.guide_staff_id or ""]["tasks"] += 1
        if t.cause == "guide_capacity":
            guides[t.guide_staff_id or ""]["overflow"] += 1
    return {
        "candidates": len(todo),
        "status": dict(sorted(status.items())),
        "sent_by_sop": dict(sorted(sent_by_sop.items())),
        "reasons": dict(sorted(reasons.items())),
        "guides": {g: dict(c) for g, c in sorted(guides.items())},
        **{k: int(v) for k, v in sorted(w.stats.items())},
    }


def _horizon(day: date, tz: str) -> datetime:
    """The last instant of the brand-local day (enrolment and steps up to here)."""
    return day_bounds(day, tz)[1] - timedelta(microseconds=1)


def _step_day(db: Session, brand: Brand, w: World, day: date) -> tuple[list[Tch], Decisions]:
    end = _horizon(day, w.tz)
    for sop in w.sops:
        _enrol(db, brand, w, sop, end)
    _advance(db, brand, w, end)
    return _plan_day(db, w, day)


def run_day(db: Session, actor: Actor, brand: Brand, day: date) -> SopRun:
    """Enrol, advance and plan the brand-local ``day``; decisions, outbox rows and guide tasks
    are written in committed chunks. Safe to rerun after a crash: nothing is sent twice."""
    from siyu.org.permissions import authorize
    from siyu.org.queries import brand_ref

    authorize(actor, "sop.write", brand_ref(brand))
    started = utcnow()
    run = SopRun(
        id=new_id(),
        brand_id=brand.id,
        day=day,
        mode="run",
        status="running",
        started_at=started,
        counts={},
    )
    with atomic(db):
        db.add(run)
    start, _end = day_bounds(day, brand.timezone)
    w = load(db, brand, start)
    end = _horizon(day, w.tz)
    for sop in w.sops:
        _enrol(db, brand, w, sop, end)
    _advance(db, brand, w, end)
    _persist(db, brand, w)
    todo, _decisions = _plan_day(db, w, day)
    outbox = _write_decisions(db, brand.id, todo, run.id)
    with atomic(db):
        run.status = "ok"
        run.finished_at = utcnow()
        run.counts = {**_summary(todo, w, w.sop), "outbox": outbox}
    return run


def simulate(db: Session, actor: Actor, brand: Brand, start_day: date, days: int) -> dict[str, Any]:
    """The dry-run: the same enrolment, steps and planning as :func:`run_day`, day after day,
    in memory only. Per day and SOP the touches that would be sent, suppressions and
    deferrals by reason, each guide's daily workload, and the pressure per customer (how many
    customers would get 0, 1, 2… touches over the period)."""
    from siyu.org.permissions import authorize
    from siyu.org.queries import brand_ref

    authorize(actor, "customers.read", brand_ref(brand))
    start, _end = day_bounds(start_day, brand.timezone)
    w = load(db, brand, start)
    sops = w.sop
    per_customer: Counter[str] = Counter()
    out_days: list[dict[str, Any]] = []
    for k in range(days):
        day = start_day + timedelta(days=k)
        w.stats.clear()
        todo, _d = _step_day(db, brand, w, day)
        for t in todo:
            if t.status == "sent":
                per_customer[t.customer_id] += 1
        out_days.append({"day": day.isoformat(), **_summary(todo, w, sops)})
    enrolled = {e.customer_id for e in w.enrolments.values()} | {c for _s, c in w.seen}
    histogram: Counter[int] = Counter(per_customer.values())
    histogram[0] = len(enrolled - set(per_customer))
    return {
        "brand": brand.slug,
        "start": start_day.isoformat(),
        "days": out_days,
        "pressure": {str(k): v for k, v in sorted(histogram.items())},
        "sops": {s.key: {"priority": s.priority} for s in w.sops},
    }


def on_event(
    db: Session, brand: Brand, customer_id: str, event_type: str, at: datetime
) -> list[str]:
    """A real-time trigger: enrol the customer in every enabled SOP triggered by
    ``event_type`` (within its start/end, no cron/relative/birthday schedule), advance those
    enrolments to ``at`` and plan their touches for the local day at once (the planner on
    this one customer's candidates). Outbox rows are written in the same transaction as the
    enrolment; returns their idempotency keys. Audience conditions and goals are checked
    against the facts already in the lake."""
    sops = [
        s
        for s in db.scalars(
            select(Sop).where(Sop.brand_id == brand.id, Sop.status == "enabled").order_by(Sop.key)
        )
        if (s.audience or {}).get("kind") == "event"
        and s.audience.get("event") == event_type
        and not any((s.schedule or {}).get(k) for k in ("cron", "relative", "birthday"))
    ]
    if not sops:
        return []
    w = load(db, brand, at, sop_ids=[s.id for s in sops], customer_ids=[customer_id])
    for sop in w.sops:
        if (sop.start and at < sop.start) or (sop.end and at >= sop.end):
            continue
        aud = sop.audience
        if aud.get("condition") and customer_id not in _condition(
            db, brand, str(aud["condition"]), [customer_id], at
        ):
            continue
        _enrol_one(w, sop, customer_id, at)
    _advance(db, brand, w, at)
    day = at.astimezone(ZoneInfo(brand.timezone)).date()
    todo, _d = _plan_day(db, w, day, {customer_id})
    keys: list[str] = []
    with atomic(db):
        _persist(db, brand, w)
        _write_chunk(db, brand.id, todo, None)
        keys = [t.idem_key for t in todo if t.status == "sent" and t.channel != GUIDE_CHANNEL]
    return keys


def _open(w: World, sop: SopDef, cid: str, cycle: int, at: datetime) -> Enr:
    """A new enrolment at step 0 (a holdout one when the customer's bucket says so)."""
    holdout = _share(sop.key, cid) < sop.holdout_pct
    e = Enr(
        new_id(),
        sop.id,
        cid,
        cycle,
        at,
        0,
        at,
        "holdout" if holdout else "active",
        None,
        holdout,
        new=True,
    )
    w.enrolments[e.id] = e
    w.seen[(sop.id, cid)] = (cycle, at)
    return e


def _enrol_one(w: World, sop: SopDef, cid: str, at: datetime) -> None:
    if any(
        e.sop_id == sop.id and e.customer_id == cid and e.state in OPEN_STATES
        for e in w.enrolments.values()
    ):
        return
    prev = w.seen.get((sop.id, cid))
    if prev is not None and at <= prev[1] + EVENT_REENTRY:
        return
    _open(w, sop, cid, (prev[0] if prev else 0) + 1, at)
