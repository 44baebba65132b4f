"""Background work behind ``siyu worker``: a registry of job kinds and the loop that runs them.

A job kind is a name and a handler ``(session, limit) -> items handled``. The handler claims
its own work (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), does it idempotently and commits;
the worker only calls handlers until they report nothing left. Domains provide handlers;
this module composes them (like ``server`` composes routers), so a domain never imports
the worker. New kinds (the outbox, schedules) register here::

    register(JobKind("channels.outbox", dispatch_outbox, batch=500))

Kinds run in two **lanes**, each on its own thread of ``siyu worker``: ``realtime`` (WeCom
callbacks → inbox → real-time SOP triggers → outbox: a new friend's welcome code is valid for
20 s) and ``background`` (tag schedules, WeCom results and transfers, reports: work that may
take seconds and must never hold a welcome back). Within a lane, kinds run in registration
order; a lane never runs another lane's kinds, so the one-worker rule on SQLite still holds
per queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from siyu.core.db import session_factory

log = logging.getLogger("siyu.jobs")


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Callable[[Session, int], int]
    batch: int = 5000
    lane: str = "realtime"  # realtime | background


_registry: dict[str, JobKind] = {}


def register(kind: JobKind) -> None:
    _registry[kind.name] = kind


def kinds() -> list[JobKind]:
    """Every registered kind, the built-in ones included."""
    _builtin()
    return list(_registry.values())


def _builtin() -> None:
    from siyu.channels.dispatcher import dispatch_outbox
    from siyu.ingest.actions import flush_inbox
    from siyu.metrics.reports import run_due as run_due_reports
    from siyu.sop.realtime import realtime_pass
    from siyu.tags.actions import run_scheduled
    from siyu.wecom.callback import process_callbacks
    from siyu.wecom.inherit import poll_transfers
    from siyu.wecom.results import read_results
    from siyu.wecom.sync import periodic_sync

    # WeCom callbacks first: a new friend's event reaches the inbox, the lake and the welcome
    # SOP in this same round (the welcome code is valid for 20 s)
    _registry.setdefault(
        "wecom.callbacks", JobKind("wecom.callbacks", process_callbacks, batch=200)
    )
    _registry.setdefault("ingest.inbox", JobKind("ingest.inbox", flush_inbox, batch=5000))
    # right after the inbox: a WeCom add flushed this round is greeted this round
    _registry.setdefault("sop.realtime", JobKind("sop.realtime", realtime_pass, batch=10_000))
    # after the inbox, so a round's tags see the events it has just flushed
    _registry.setdefault(
        "tags.schedule", JobKind("tags.schedule", run_scheduled, batch=10, lane="background")
    )
    # scheduled client reports queue e-mails (the realtime lane's outbox delivers them)
    _registry.setdefault(
        "metrics.reports",
        JobKind("metrics.reports", run_due_reports, batch=5, lane="background"),
    )
    # after the SOP passes, so a touch decided this round is delivered this round
    _registry.setdefault("channels.outbox", JobKind("channels.outbox", dispatch_outbox, batch=500))
    _registry.setdefault(
        "wecom.results", JobKind("wecom.results", read_results, batch=200, lane="background")
    )
    _registry.setdefault(
        "wecom.sync", JobKind("wecom.sync", periodic_sync, batch=1, lane="background")
    )
    _registry.setdefault(
        "wecom.transfers", JobKind("wecom.transfers", poll_transfers, batch=100, lane="background")
    )


def run_once(
    factory: sessionmaker[Session] | None = None,
    stop: threading.Event | None = None,
    only: frozenset[str] | None = None,
    lane: str | None = None,
) -> dict[str, int]:
    """Run every kind (or the ``only`` ones, or those of ``lane``) until it has nothing
    left; returns items handled per kind. A set ``stop`` ends the round after the current
    batch."""
    factory = factory or session_factory()
    done: dict[str, int] = {}
    for kind in kinds():
        if only is not None and kind.name not in only:
            continue
        if lane is not None and kind.lane != lane:
            continue
        total = 0
        while stop is None or not stop.is_set():
            started = time.perf_counter()
            with factory() as db:
                handled = kind.handler(db, kind.batch)
            total += handled
            took = time.perf_counter() - started
            if took > 0.5:
                log.info("job %s took %.2f s (%d handled)", kind.name, took, handled)
            if handled < kind.batch:
                break
        done[kind.name] = total
    return done


def _lane_loop(
    lane: str,
    interval: float,
    stop: threading.Event,
    factory: sessionmaker[Session] | None,
    only: frozenset[str] | None,
) -> None:
    while not stop.is_set():
        try:
            handled = run_once(factory, stop, only, lane)
        except Exception:  # keep the worker alive; the failed work is still queued
            log.exception("worker round failed (%s lane)", lane)
            handled = {}
        if not any(handled.values()):
            stop.wait(interval)  # idle: poll again later; busy: go straight on


def run_forever(
    interval: float = 1.0,
    stop: threading.Event | None = None,
    factory: sessionmaker[Session] | None = None,
    only: frozenset[str] | None = None,
) -> None:
    """Run every lane on its own thread, polling every ``interval`` seconds, until ``stop``
    is set (``siyu worker`` sets it on SIGTERM and SIGINT): the batch in hand is finished and
    recorded, then the lanes end. A failing kind is logged and retried on the next round;
    its work stays queued."""
    stop = stop or threading.Event()
    lanes = sorted({k.lane for k in kinds() if only is None or k.name in only})
    threads = [
        threading.Thread(
            target=_lane_loop, args=(lane, interval, stop, factory, only), name=f"siyu-{lane}"
        )
        for lane in lanes
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
