"""WeCom channel adapters: 1:1 (a welcome message when a fresh welcome code is at hand, else a
guide-confirmed single mass message), customer mass messages (群发, confirmed by the sender in
the WeCom client) and group messages.

Each needs the store (the brand's app, the customer's follow relations, the guide's WeCom
userid), so an adapter holds a session factory. WeCom errors are classified by the client's
typed errors: transient ones (system busy, rate limits, token trouble after the retry) are
retried by the dispatcher with back-off; the rest are final with their errcode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.channels.base import Capabilities, Message, Outcome
from siyu.core.clock import as_utc, utcnow
from siyu.core.errors import SiyuError
from siyu.org.models import Membership
from siyu.wecom import contacts
from siyu.wecom.apps import client_of
from siyu.wecom.errors import WeComError
from siyu.wecom.models import WecomApp, WecomContact, WecomMassSend

log = logging.getLogger("siyu.channels.wecom")

MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9


def _content(message: Message) -> tuple[str, list[dict[str, Any]]]:
    c = message.content
    text = str(c.get("text") or "")
    attachments = [a for a in c.get("attachments") or [] if isinstance(a, dict)]
    return text, attachments


def _check(text: str, attachments: list[dict[str, Any]]) -> Outcome | None:
    if not text and not attachments:
        return Outcome.permanent(
            "wecom.empty_message: no text and no attachment", code="bad_payload"
        )
    if len(text.encode()) > MAX_TEXT_BYTES:
        return Outcome.permanent(
            f"wecom.text_too_long: {len(text.encode())} bytes > {MAX_TEXT_BYTES}",
            code="message_too_large",
        )
    if len(attachments) > MAX_ATTACHMENTS:
        return Outcome.permanent(
            f"wecom.too_many_attachments: {len(attachments)} > {MAX_ATTACHMENTS}",
            code="message_too_large",
        )
    return None


def _classify(exc: Exception) -> Outcome:
    if isinstance(exc, WeComError):
        reason = f"wecom {exc.errcode}: {exc.errmsg}"
        if exc.transient:
            code = "throttled" if exc.errcode in (45009, 45033) else "provider_unavailable"
            return Outcome.transient(reason, getattr(exc, "retry_after", None), code=code)
        return Outcome.permanent(reason, code="rejected")
    if isinstance(exc, SiyuError):
        return Outcome.permanent(f"{exc.code}: {exc.message('en')}", code="rejected")
    return Outcome.transient(f"{type(exc).__name__}: {exc}", code="adapter_error")


def _guide_userid(db: Session, brand_id: str, staff_id: str | None) -> str | None:
    if not staff_id:
        return None
    return db.scalar(
        select(Membership.wecom_userid).where(
            Membership.brand_id == brand_id,
            Membership.staff_id == staff_id,
            Membership.active.is_(True),
        )
    )


@dataclass
class _Target:
    app: WecomApp
    sender: str
    contact: WecomContact | None


def _target(db: Session, message: Message) -> _Target | Outcome:
    app = db.get(WecomApp, message.brand_id)
    if app is None or not app.enabled:
        return Outcome.permanent(
            "wecom.not_configured: the brand has no WeCom app", code="not_configured"
        )
    guide = _guide_userid(db, message.brand_id, message.payload.get("guide_staff_id"))
    if message.channel == "wecom_group":
        sender = guide or str(message.payload.get("sender_userid") or "")
        if not sender:
            return Outcome.permanent(
                "wecom.no_sender: no WeCom userid for the sender", code="no_recipient"
            )
        return _Target(app, sender, None)
    ext, staff = message.payload.get("external_userid"), message.payload.get("staff_userid")
    if ext and staff:  # a row written for one follow relation (the plain welcome)
        row = db.scalar(
            select(WecomContact).where(
                WecomContact.brand_id == message.brand_id,
                WecomContact.external_userid == str(ext),
                WecomContact.staff_userid == str(staff),
            )
        )
        if row is None or row.status != "active":
            return Outcome.permanent(
                f"wecom.not_a_friend: {ext} does not follow {staff}", code="recipient_invalid"
            )
        return _Target(app, row.staff_userid, row)
    if not message.customer_id:
        return Outcome.permanent(
            "wecom.no_recipient: the row names no customer", code="no_recipient"
        )
    rows = [
        r
        for r in contacts.contacts_of(db, message.brand_id, message.customer_id)
        if r.status == "active"
    ]
    if not rows:
        return Outcome.permanent(
            "wecom.not_a_friend: the customer follows no staff member", code="recipient_invalid"
        )
    chosen = next((r for r in rows if r.staff_userid == guide), None) if guide else None
    if chosen is None:
        if guide:
            return Outcome.permanent(
                f"wecom.not_a_friend: the customer does not follow {guide}",
                code="recipient_invalid",
            )
        chosen = max(rows, key=lambda r: as_utc(r.added_at or r.updated_at))
    return _Target(app, chosen.staff_userid, chosen)


@dataclass
class WeComChannel:
    """One WeCom channel (``wecom_1to1``, ``wecom_mass`` or ``wecom_group``)."""

    name: str
    factory: Callable[[], Session]
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(
            rich_media=True, delivery_receipts=True, needs_confirmation=True
        )
    )

    def send(self, message: Message) -> Outcome:
        text, attachments = _content(message)
        bad = _check(text, attachments)
        if bad is not None:
            return bad
        with self.factory() as db:
            target = _target(db, message)
            if isinstance(target, Outcome):
                return target
            try:
                if self.name == "wecom_1to1" and target.contact is not None:
                    sent = self._welcome(db, target, text, attachments)
                    if sent is not None:
                        return sent
                return self._mass(db, message, target, text, attachments)
            except Exception as exc:
                log.warning("%s %s: %s", self.name, message.idem_key, exc)
                return _classify(exc)

    def _welcome(
        self, db: Session, t: _Target, text: str, attachments: list[dict[str, Any]]
    ) -> Outcome | None:
        """The welcome message, when the add event's code is fresh and unused (WeCom accepts
        it once, within 20 s); None to fall back to a confirmed message."""
        c = t.contact
        assert c is not None
        now = utcnow()
        if not c.welcome_code or c.welcome_used_at is not None:
            return None
        if c.welcome_expires_at is None or as_utc(c.welcome_expires_at) < now:
            return None
        code = c.welcome_code
        c.welcome_used_at = now  # claimed before the call: never two welcomes for one code
        db.commit()
        try:
            client_of(t.app).send_welcome_msg(code, text=text, attachments=attachments)
        except WeComError as exc:
            if exc.errcode in (41050, 41051):  # expired, or another app used it
                log.info("welcome code for %s unusable (%s)", c.external_userid, exc.errcode)
                return None
            raise
        return Outcome.ok(f"welcome:{c.external_userid}")

    def _mass(
        self,
        db: Session,
        message: Message,
        t: _Target,
        text: str,
        attachments: list[dict[str, Any]],
    ) -> Outcome:
        if self.name == "wecom_group":
            chat_id = str(message.payload.get("chat_id") or message.content.get("chat_id") or "")
            if not chat_id:
                return Outcome.permanent(
                    "wecom.no_group: the row names no chat_id", code="bad_payload"
                )
            msgid, fail = client_of(t.app).add_msg_template(
                "group", t.sender, chat_ids=[chat_id], text=text, attachments=attachments
            )
            ext = None
        else:
            assert t.contact is not None
            ext = t.contact.external_userid
            chat_id = ""
            msgid, fail = client_of(t.app).add_msg_template(
                "single", t.sender, external_userids=[ext], text=text, attachments=attachments
            )
        if fail:
            return Outcome.permanent(f"wecom.fail_list: {fail}", code="recipient_invalid")
        try:
            with db.begin_nested():
                db.add(
                    WecomMassSend(
                        brand_id=message.brand_id,
                        idem_key=message.idem_key,
                        customer_id=message.customer_id,
                        msgid=str(msgid),
                        sender=t.sender,
                        external_userid=ext,
                        chat_id=chat_id or None,
                    )
                )
            db.commit()
        except IntegrityError:
            db.rollback()  # a re-send of the same row after a lost outcome: keep the first
        return Outcome.ok(str(msgid))


def wecom_adapters(factory: Callable[[], Session]) -> dict[str, WeComChannel]:
    return {n: WeComChannel(n, factory) for n in ("wecom_1to1", "wecom_mass", "wecom_group")}
