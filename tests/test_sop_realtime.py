"""Real-time triggers in the worker: a fresh WeCom add reaches the outbox in the same worker
round; an old, back-filled one does not; a second round does nothing more."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import jobs
from siyu.core.clock import utcnow
from siyu.core.db import session_factory
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.org.queries import access_brand
from siyu.sop import actions
from siyu.sop.models import Outbox


def added(eid: str, phone: str, at: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "wecom_contact_added",
        "occurred_at": at.isoformat(),
        "source": "wecom",
        "identifiers": [{"type": "phone", "value": phone}],
        "properties": {"staff_userid": "aguide", "external_userid": f"wm{eid}", "state": "qr1"},
    }


def test_a_fresh_add_is_greeted_in_the_same_worker_round(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    # no quiet hours, so the test does not depend on the time of day it runs
    actions.set_policy(db, SYSTEM, brand, {"quiet_start": "00:00", "quiet_end": "00:00"})
    actions.create_from_template(db, SYSTEM, brand, "welcome_journey")
    sop = next(s for s in actions_list(db, brand))
    actions.enable_sop(db, SYSTEM, brand, sop)
    now = utcnow()
    ingest.ingest_batch(
        db,
        SYSTEM,
        brand,
        [added("rt1", "13911110001", now), added("old1", "13911110002", now - timedelta(days=40))],
    )
    db.commit()
    # when the worker runs a round
    done = jobs.run_once(session_factory(db.get_bind()))
    # then the fresh add has its welcome in the outbox, the back-filled one does not
    assert done["sop.realtime"] == 1  # the fresh trigger only
    db.rollback()
    rows = db.scalars(select(Outbox).where(Outbox.brand_id == brand.id)).all()
    assert len(rows) == 1 and rows[0].payload
    # and a second round adds nothing
    again = jobs.run_once(session_factory(db.get_bind()))
    assert again["sop.realtime"] == 0
    db.rollback()
    assert len(db.scalars(select(Outbox).where(Outbox.brand_id == brand.id)).all()) == 1


def actions_list(db: Session, brand: Any) -> list[str]:
    from siyu.sop.models import Sop

    return list(db.scalars(select(Sop.key).where(Sop.brand_id == brand.id)))
