"""Mass-message results (job ``wecom.results``): what happened to each mass message we sent.

WeCom sends nothing until the sender confirms in the client, then reports per recipient
(``get_groupmsg_send_result``): 0 unsent (not confirmed yet), 1 sent, 2 not a friend any more,
3 the customer had already received another mass message in the period — the platform quota
was used by someone else (another tool, the admin console, another guide). Status 3 becomes a
:class:`~siyu.sop.models.PlatformQuotaUse`, which the SOP engine counts on ``wecom_mass`` like
one of its own sends, so the planner stops planning mass messages the platform would refuse.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic
from siyu.sop.models import PlatformQuotaUse
from siyu.wecom.apps import client_of
from siyu.wecom.models import WecomApp, WecomContact, WecomMassSend

log = logging.getLogger("siyu.wecom.results")

RECHECK = timedelta(minutes=10)  # unconfirmed messages are asked about again after this
GIVE_UP = timedelta(days=3)  # … until WeCom's mass-message task expires


def _quota_use(db: Session, brand_id: str, customer_id: str, at: datetime, key: str) -> bool:
    try:
        with db.begin_nested():
            db.add(
                PlatformQuotaUse(
                    brand_id=brand_id, customer_id=customer_id, used_at=at, source_key=key[:120]
                )
            )
        return True
    except IntegrityError:
        return False


def read_results(db: Session, limit: int = 200, now: datetime | None = None) -> int:
    """Read the results of due mass messages; returns how many messages were settled."""
    now = now or utcnow()
    settled = 0
    with atomic(db):
        stmt = (
            select(WecomMassSend)
            .where(
                WecomMassSend.result_status.is_(None) | (WecomMassSend.result_status == 0),
                (WecomMassSend.checked_at.is_(None)) | (WecomMassSend.checked_at < now - RECHECK),
            )
            .order_by(WecomMassSend.created_at)
            .limit(limit)
        )
        if db.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(db.scalars(stmt))
        by_msg: dict[tuple[str, str, str], list[WecomMassSend]] = defaultdict(list)
        for r in rows:
            by_msg[(r.brand_id, r.msgid, r.sender)].append(r)
        for (brand_id, msgid, sender), sends in by_msg.items():
            app = db.get(WecomApp, brand_id)
            if app is None:
                continue
            try:
                results = list(client_of(app).iter_groupmsg_send_result(msgid, sender))
            except Exception as exc:  # asked again after RECHECK
                log.warning("mass results %s: %s", msgid, exc)
                for s in sends:
                    s.checked_at = now
                continue
            status = {
                (str(x.get("external_userid") or ""), str(x.get("chat_id") or "")): x
                for x in results
            }
            for s in sends:
                s.checked_at = now
                got = status.get((s.external_userid or "", s.chat_id or ""))
                code = int(got.get("status", 0)) if got else 0
                if code == 0 and as_utc(s.created_at) < now - GIVE_UP:
                    code = -1  # never confirmed: WeCom's task has expired
                s.result_status = code
                if code != 0:
                    settled += 1
                if code == 3 and s.customer_id:
                    at = now
                    if got and isinstance(got.get("send_time"), int) and got["send_time"] > 0:
                        at = datetime.fromtimestamp(got["send_time"], UTC)
                    _quota_use(
                        db, brand_id, s.customer_id, at, f"wecom:{msgid}:{s.external_userid}"
                    )
                if code == 2 and s.external_userid:
                    for c in db.scalars(
                        select(WecomContact).where(
                            WecomContact.brand_id == brand_id,
                            WecomContact.external_userid == s.external_userid,
                            WecomContact.staff_userid == sender,
                        )
                    ):
                        c.status = "deleted_by_customer"
    return settled
