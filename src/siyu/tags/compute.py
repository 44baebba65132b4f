"""Tag computation: full and incremental runs, the diff against what customers hold, the tag
history and each tag's health.

A run evaluates every active computed tag (rule, value, model, org) for a *universe* of
customers, as of the end of a brand-local day (windows such as "last 90 days" are whole
days, so results change only when facts arrive or the day turns):

- **full**: every active customer; value models are refitted and data-derived RFM cut points
  re-derived, then kept for the incremental runs of the same day;
- **incremental**: only customers with facts received since the last run's watermark, or
  touched by OneID since then (merges, splits, new customers). A tag whose definition changed
  since it was last computed is evaluated for everybody in the same run. ``auto`` runs full
  when the brand-local day has changed since the last full run, incremental otherwise — so
  an incremental run always equals a full run as of the same moment.

Each tag is evaluated on its own: a failing rule marks that tag failed (error kept, shown in
the console and API) and the run goes on with the others; nothing is written for a tag whose
evaluation did not finish. Members are written as a diff (entered, exited, changed), with
one history row per change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic, bulk_insert, table_of
from siyu.core.errors import SiyuError
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.tags import facts as tag_facts
from siyu.tags.models import CustomerTag, Tag, TagChange, TagGroup, TagRun

if TYPE_CHECKING:
    import pyarrow as pa

    from siyu.org.models import Brand

# Facts received shortly before the last watermark are looked at again: an ingest that
# committed late with an earlier ``received_at`` is still seen.
OVERLAP = timedelta(minutes=5)
COMPUTED = ("rule", "value", "model", "org")


@dataclass
class Members:
    """One tag's holders: customer ids with an optional value and score (same length)."""

    customer_id: list[str]
    value: list[str | None]
    score: list[float | None]

    @classmethod
    def of(cls, ids: list[str], value: Any = None, score: list[float] | None = None) -> Members:
        values = value if isinstance(value, list) else [value] * len(ids)
        return cls(ids, values, list(score) if score is not None else [None] * len(ids))


@dataclass
class Context:
    db: Session
    brand: Brand
    as_of: datetime  # end of the brand-local day, UTC
    today: date  # the brand-local day
    mode: str
    universe: list[str]  # customer ids evaluated
    engine: Any
    idmap: Any  # Ibis table (identity_key, customer_id) of the universe
    idmap_arrow: Any  # the same as a pyarrow table
    groups: dict[str, TagGroup]
    everyone: bool = False  # the universe is every active customer
    _purchases: Any = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def subset(self) -> list[str] | None:
        """The universe for store queries: None means every customer of the brand."""
        return None if self.everyone else self.universe

    def purchases(self) -> pa.Table:
        if self._purchases is None:
            self._purchases = tag_facts.purchases(self.engine, self.brand.id, self.idmap).table
        return self._purchases


def end_of_day(day: date, tz: str) -> datetime:
    local = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(tz))
    return as_utc(local) - timedelta(microseconds=1)


def local_day(at: datetime, tz: str) -> date:
    return as_utc(at).astimezone(ZoneInfo(tz)).date()


# ---------------------------------------------------------------- the run


def run(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    mode: str = "auto",
    as_of: datetime | None = None,
    evaluators: dict[str, Callable[[Context, list[Tag]], dict[str, Members | Exception]]]
    | None = None,
) -> TagRun:
    """Compute the brand's tags (the caller has checked ``tags.write``); returns the run."""
    from siyu.analytics.engine import connect
    from siyu.tags import library

    if mode not in ("auto", "full", "incremental"):
        raise ValueError(f"unknown mode {mode!r}")
    started_at = utcnow()
    begun = time.perf_counter()
    now = as_utc(as_of) if as_of is not None else started_at
    today = local_day(now, brand.timezone)
    library.ensure(db, brand)
    last_full = db.scalar(
        select(TagRun)
        .where(TagRun.brand_id == brand.id, TagRun.mode == "full", TagRun.status != "failed")
        .order_by(TagRun.started_at.desc())
        .limit(1)
    )
    last = db.scalar(
        select(TagRun)
        .where(TagRun.brand_id == brand.id, TagRun.status != "failed")
        .order_by(TagRun.started_at.desc())
        .limit(1)
    )
    if mode == "auto":
        same_day = last_full is not None and local_day(last_full.as_of, brand.timezone) == today
        mode = "incremental" if same_day else "full"
    elif mode == "incremental" and last is None:
        mode = "full"
    record = TagRun(
        id=new_id(),
        brand_id=brand.id,
        mode=mode,
        as_of=end_of_day(today, brand.timezone),
        started_at=started_at,
        status="running",
        actor_label=actor.label,
    )
    with atomic(db):
        db.add(record)
    tags = list(
        db.scalars(
            select(Tag).where(
                Tag.brand_id == brand.id, Tag.status == "active", Tag.kind.in_(COMPUTED)
            )
        )
    )
    groups = {g.id: g for g in db.scalars(select(TagGroup).where(TagGroup.brand_id == brand.id))}
    everyone = customer_queries.active_customer_ids(db, brand.id)
    try:
        with connect() as engine:
            # Facts are looked at again from a little before the last watermark (an ingest
            # that committed late with an earlier ``received_at`` is still seen), skipping
            # the ingests the last run saw there.
            since = last.watermark if (mode == "incremental" and last) else None
            seen = list(last.recent_ingests or []) if since is not None and last else []
            touched, latest, recent = tag_facts.touched_since(
                engine, brand.id, since - OVERLAP if since else None, seen, OVERLAP
            )
            if mode == "full":
                affected = everyone
            else:
                changed = customer_queries.customers_changed_since(
                    db, brand.id, last.started_at if last is not None else None
                )
                by_key = customer_queries.customers_of_keys(db, brand.id, touched)
                # merged-away customers stay in: their computed tags are removed
                affected = sorted(set(by_key) | set(changed))
            stale = [t for t in tags if t.computed_version != t.version]
            fresh = [t for t in tags if t.computed_version == t.version]
            batches = [(affected, fresh), (everyone, stale)] if mode != "full" else []
            if mode == "full":
                batches = [(everyone, tags)]
            outcome: dict[str, Members | Exception] = {}
            durations: dict[str, int] = {}
            changes = 0
            for universe, subset in batches:
                if not subset:
                    continue
                idmap_arrow = customer_queries.identity_map(
                    db, brand.id, None if universe is everyone else universe
                )
                idmap = tag_facts.register_map(engine, idmap_arrow)
                ctx = Context(
                    db=db,
                    brand=brand,
                    as_of=record.as_of,
                    today=today,
                    mode=mode,
                    universe=universe,
                    engine=engine,
                    idmap=idmap,
                    idmap_arrow=idmap_arrow,
                    groups=groups,
                    everyone=universe is everyone,
                )
                got = evaluate(ctx, subset, evaluators or default_evaluators(), durations)
                outcome.update(got)
                changes += write(
                    db, ctx, subset, got, record.id, full=universe is everyone, durations=durations
                )
        record.status = (
            "ok" if not any(isinstance(v, Exception) for v in outcome.values()) else "partial"
        )
        if latest is not None:
            record.watermark = latest
            keep = since is not None and since > latest - OVERLAP
            record.recent_ingests = sorted(set(recent) | (set(seen) if keep else set()))
        else:
            record.watermark = last.watermark if last else None
            record.recent_ingests = list(last.recent_ingests or []) if last else []
        record.customers = len(affected) if mode != "full" else len(everyone)
        record.changes = changes
        record.tags = {
            t.key: {"ms": durations.get(t.id), "error": _error_of(outcome[t.id])}
            for t in tags
            if t.id in outcome
        }
    except Exception as exc:  # the run record must say it failed, then the error goes up
        db.rollback()
        record = db.get(TagRun, record.id) or record
        record.status = "failed"
        record.error = _message(exc)
        record.finished_at = utcnow()
        record.duration_ms = int((time.perf_counter() - begun) * 1000)
        with atomic(db):
            db.add(record)
            _mark_failed(db, tags, exc)
        raise
    record.finished_at = utcnow()
    record.duration_ms = int((time.perf_counter() - begun) * 1000)
    with atomic(db):
        db.add(record)
    return record


def _message(exc: BaseException) -> str:
    if isinstance(exc, SiyuError):
        return f"{exc.code}: {exc.message('en')}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


def _error_of(result: Members | Exception) -> str | None:
    return _message(result) if isinstance(result, Exception) else None


def _mark_failed(db: Session, tags: list[Tag], exc: BaseException) -> None:
    now = utcnow()
    for tag in tags:
        tag.last_run_at = now
        tag.last_error = _message(exc)
        tag.last_error_at = now


# ---------------------------------------------------------------- evaluation


Evaluator = Callable[[Context, list[Tag]], dict[str, "Members | Exception"]]


def default_evaluators() -> dict[str, Evaluator]:
    from siyu.tags import evaluate_builtin, rules

    return {
        "rule": rules.evaluate,
        "value": evaluate_builtin.evaluate_value,
        "model": evaluate_builtin.evaluate_model,
        "org": evaluate_builtin.evaluate_org,
    }


def evaluate(
    ctx: Context, tags: list[Tag], evaluators: dict[str, Evaluator], durations: dict[str, int]
) -> dict[str, Members | Exception]:
    """Members per tag id, or the exception that stopped that tag (or its kind)."""
    out: dict[str, Members | Exception] = {}
    for kind in COMPUTED:
        subset = [t for t in tags if t.kind == kind]
        if not subset:
            continue
        begun = time.perf_counter()
        try:
            got = evaluators[kind](ctx, subset)
        except Exception as exc:  # one kind failing must not stop the others
            got = {t.id: exc for t in subset}
        ms = int((time.perf_counter() - begun) * 1000)
        for t in subset:
            out[t.id] = got.get(t.id, Members.of([]))
            durations[t.id] = ms
    return out


# ---------------------------------------------------------------- writing the diff


def write(
    db: Session,
    ctx: Context,
    tags: list[Tag],
    outcome: dict[str, Members | Exception],
    run_id: str,
    *,
    full: bool,
    durations: dict[str, int] | None = None,
) -> int:
    """Apply each finished tag's members as a diff over the universe; returns changes."""
    now = utcnow()
    changes = 0
    durations = durations or {}
    ct = table_of(CustomerTag)
    with atomic(db):
        for tag in tags:
            result = outcome.get(tag.id)
            tag.last_run_at = now
            if isinstance(result, Exception) or result is None:
                tag.last_error = _message(result) if result is not None else "not evaluated"
                tag.last_error_at = now
                continue
            current = _held(db, tag.id, None if full else ctx.universe)
            new = {
                cid: (v, s)
                for cid, v, s in zip(result.customer_id, result.value, result.score, strict=True)
            }
            entered = [c for c in new if c not in current]
            exited = [c for c in current if c not in new]
            moved = [c for c in new if c in current and current[c] != new[c]]
            bulk_insert(
                db,
                ct,
                [
                    {
                        "tag_id": tag.id,
                        "customer_id": c,
                        "brand_id": ctx.brand.id,
                        "value": new[c][0],
                        "score": new[c][1],
                        "since": now,
                        "source": tag.kind,
                        "set_by": None,
                    }
                    for c in entered
                ],
            )
            if exited:
                db.execute(
                    delete(ct).where(
                        ct.c.tag_id == tag.id, ct.c.customer_id == bindparam("p_customer")
                    ),
                    [{"p_customer": c} for c in exited],
                )
            if moved:
                db.execute(
                    update(ct)
                    .where(ct.c.tag_id == tag.id, ct.c.customer_id == bindparam("p_customer"))
                    .values(value=bindparam("p_value"), score=bindparam("p_score")),
                    [{"p_customer": c, "p_value": new[c][0], "p_score": new[c][1]} for c in moved],
                )
            # Scores move every day; history keeps entries, exits and changed values only.
            relabelled = [c for c in moved if current[c][0] != new[c][0]]
            history = (
                [(c, "entered", new[c][0]) for c in entered]
                + [(c, "exited", current[c][0]) for c in exited]
                + [(c, "changed", new[c][0]) for c in relabelled]
            )
            bulk_insert(
                db,
                table_of(TagChange),
                [
                    {
                        "id": new_id(),
                        "brand_id": ctx.brand.id,
                        "tag_id": tag.id,
                        "customer_id": c,
                        "change": change,
                        "value": value,
                        "at": now,
                        "run_id": run_id,
                        "actor_label": None,
                    }
                    for c, change, value in history
                ],
            )
            changes += len(history)
            tag.last_ok_at = now
            tag.last_error = None
            tag.last_duration_ms = durations.get(tag.id)
            tag.computed_version = tag.version
            tag.last_count = _count(db, tag.id)
    return changes


def _held(
    db: Session, tag_id: str, customers: list[str] | None
) -> dict[str, tuple[str | None, float | None]]:
    """Who holds the tag now (value, score), among ``customers`` (None: everybody). A small
    incremental universe is looked up by id (the primary key), a large one read whole."""
    ct = table_of(CustomerTag)
    stmt = select(ct.c.customer_id, ct.c.value, ct.c.score).where(ct.c.tag_id == tag_id)
    if customers is None or len(customers) > 20_000:
        wanted = None if customers is None else set(customers)
        return {
            cid: (value, score)
            for cid, value, score in db.execute(stmt)
            if wanted is None or cid in wanted
        }
    out: dict[str, tuple[str | None, float | None]] = {}
    for start in range(0, len(customers), 1000):
        part = customers[start : start + 1000]
        for cid, value, score in db.execute(stmt.where(ct.c.customer_id.in_(part))):
            out[cid] = (value, score)
    return out


def _count(db: Session, tag_id: str) -> int:
    from sqlalchemy import func

    ct = table_of(CustomerTag)
    return int(db.scalar(select(func.count()).select_from(ct).where(ct.c.tag_id == tag_id)) or 0)
