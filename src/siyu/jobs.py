"""Background work behind ``siyu worker``: a registry of job kinds and the loop that runs them.

A job kind is a name and a handler ``(session, limit) -> items handled``. The handler claims
its own work (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), does it idempotently and commits;
the worker only calls handlers until they report nothing left. Domains provide handlers;
this module composes them (like ``server`` composes routers), so a domain never imports
the worker. New kinds (the outbox, schedules) register here::

    register(JobKind("channels.outbox", dispatch_outbox, batch=500))
"""

from __future__ import annotations

import logging
import threading
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

    _registry.setdefault("ingest.inbox", JobKind("ingest.inbox", flush_inbox, batch=5000))
    # right after the inbox: a WeCom add flushed this round is greeted this round
    _registry.setdefault("sop.realtime", JobKind("sop.realtime", realtime_pass, batch=10_000))
    # after the inbox, so a round's tags see the events it has just flushed
    _registry.setdefault("tags.schedule", JobKind("tags.schedule", run_scheduled, batch=10))
    # scheduled client reports queue e-mails: before the outbox, so they go out this round
    _registry.setdefault("metrics.reports", JobKind("metrics.reports", run_due_reports, batch=5))
    # after the SOP passes, so a touch decided this round is delivered this round
    _registry.setdefault("channels.outbox", JobKind("channels.outbox", dispatch_outbox, batch=500))


def run_once(factory: sessionmaker[Session] | None = None) -> dict[str, int]:
    """Run every kind until it has nothing left; returns items handled per kind."""
    factory = factory or session_factory()
    done: dict[str, int] = {}
    for kind in kinds():
        total = 0
        while True:
            with factory() as db:
                handled = kind.handler(db, kind.batch)
            total += handled
            if handled < kind.batch:
                break
        done[kind.name] = total
    return done


def run_forever(
    interval: float = 1.0,
    stop: threading.Event | None = None,
    factory: sessionmaker[Session] | None = None,
) -> None:
    """Poll every ``interval`` seconds until ``stop`` is set. A failing kind is logged and
    retried on the next round; its work stays queued."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            handled = run_once(factory)
        except Exception:  # keep the worker alive; the failed work is still queued
            log.exception("worker round failed")
            handled = {}
        if not any(handled.values()):
            stop.wait(interval)  # idle: poll again later; busy: go straight on
