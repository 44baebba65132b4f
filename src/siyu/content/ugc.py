"""UGC / KOC notes: submission, review, rewards and attribution.

A note is a customer's (or a staff member's) post on Xiaohongshu, Douyin, WeChat Channels,
Weibo, Dianping or elsewhere, submitted with its link:

- **Submit** (:func:`submit_note`; staff with ``content.submit`` — content and community
  operators, HQ, admins —, the brand's H5 form through an API key scoped ``content.submit``
  only, or :func:`import_notes` for a file's rows): the link must be an
  ``http(s)`` URL of at most 1,000 characters whose host is on the platform's allowlist
  (:data:`PLATFORM_HOSTS`; ``other`` takes any public host name). The same post submitted
  twice is refused (``content.koc_duplicate``): links are compared in a canonical form
  (scheme, ``www.``, case, fragments, share-tracking parameters and, for Xiaohongshu, the
  URL shape ignored — the note id decides).
- **Review** (``content.write``): :func:`approve_note` or :func:`reject_note` (a reason is
  required); both audited. Approval grants the reward — cash in fen and/or points — to the
  note's customer (else its staff author) in the reward ledger *exactly once*: the ledger's
  idempotency key (``koc:{note}:fen`` / ``koc:{note}:points``) is unique per brand, so a
  second approval, or two reviewers at once, never pays twice. Approval also gives the note
  a WeCom channel-code ``state`` (given, or ``koc_`` + the note id's tail) and, when a
  target URL is given, a tracking link (``content.links``) tied to the note.
- **Attribution** (:func:`attribution`, any-touch): a customer is brought by a note when
  they added a guide on WeCom with the note's ``state`` (``wecom_contact_added``), or clicked
  its tracking link as a known customer (a counted click, not a bot), or the mall reported a
  ``content_clicked`` event naming the note (``content_id`` = note id or link code). Their
  paid orders from that first touch until ``attribution_days`` later (30 by default, per
  note) are the note's orders; GMV is the sum of their ``paid_fen``; a customer is *new*
  when they had no paid order before the touch. Only customers in the reader's data scope
  are counted.

    link = "https://www.xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"
    note = submit_note(db, actor, brand, KocNoteIn(url=link, title="…"))
    approve_note(db, reviewer, brand, note.id, KocApproval(reward_points=200))
    stats = attribution(db, reviewer, brand, [note])[note.id]
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.content.models import KOC_PLATFORMS, KOC_STATUSES, KocNote, LinkClick, RewardLedger
from siyu.core.audit import record, snapshot
from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, FieldError, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.core.validation import field_errors
from siyu.customers import queries as customer_queries
from siyu.customers.models import Customer, Identity
from siyu.org import queries as org_queries
from siyu.org.models import Staff
from siyu.org.permissions import authorize, unit_filter

if TYPE_CHECKING:
    from siyu.org.models import Brand

SUBMIT = "content.submit"
REVIEW = "content.write"
MAX_URL = 1000
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 365
MAX_IMPORT_ROWS = 5000
MAX_ROWS = 500  # attributed customers listed per note (the totals count them all)

# Hosts (and their subdomains) each platform's links may point at.
PLATFORM_HOSTS: dict[str, tuple[str, ...]] = {
    "xiaohongshu": ("xiaohongshu.com", "xhslink.com", "xhscdn.com"),
    "douyin": ("douyin.com", "iesdouyin.com"),
    "weibo": ("weibo.com", "weibo.cn"),
    "wechat_channels": ("channels.weixin.qq.com", "weixin.qq.com", "mp.weixin.qq.com"),
    "dianping": ("dianping.com",),
}
# Query parameters that only say who shared the link, from where: not part of the post.
SHARE_PARAMS = re.compile(
    r"^(utm_.*|xsec_.*|share_.*|app_.*|apptime|appuid|author_share|shareredid|source|"
    r"from|spm|timestamp|share|sharer_.*|wechatwid|wechatorigin|previous_page|"
    r"exsource|is_copy_url|is_from_webapp|sender_device|web_id|u_code|did|iid)$"
)
XHS_NOTE = re.compile(r"^/(?:explore|discovery/item|notes?)/([0-9a-f]{24})/?$")
STATE = re.compile(r"^[A-Za-z0-9_-]{1,30}$")


# ---------------------------------------------------------------- inputs


class KocNoteIn(BaseModel):
    """A note as submitted (the console form, the API, an imported row)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=MAX_URL)
    platform: str | None = Field(default=None, description="detected from the host when empty")
    title: str = Field(min_length=1, max_length=200)
    summary: str | None = Field(default=None, max_length=2000)
    images: list[str] = Field(default_factory=list, max_length=9)
    customer_id: str | None = Field(default=None, max_length=26)
    author: str | None = Field(default=None, max_length=100, description="the author's handle")


class KocApproval(BaseModel):
    """What a reviewer decides on approval."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reward_fen: int = Field(default=0, ge=0, le=10_000_000)
    reward_points: int = Field(default=0, ge=0, le=10_000_000)
    state: str | None = Field(default=None, max_length=30, description="WeCom channel state")
    target_url: str | None = Field(default=None, max_length=2000)
    attribution_days: int = Field(default=DEFAULT_WINDOW_DAYS, ge=1, le=MAX_WINDOW_DAYS)


class KocNoteOut(BaseModel):
    id: str
    platform: str
    url: str
    title: str
    summary: str | None
    images: list[str]
    status: str
    customer_id: str | None
    staff_id: str | None
    author: str | None
    source: str | None
    reject_reason: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    reward_fen: int
    reward_points: int
    channel_state: str | None
    link_id: str | None
    attribution_days: int
    submitted_by: str | None
    created_at: datetime


class AttributedOut(BaseModel):
    customer_id: str
    via: str
    at: datetime
    new: bool
    orders: int
    gmv_fen: int
    name: str
    phone: str


class KocStatsOut(BaseModel):
    note_id: str
    window_days: int
    clicks: int
    customers: int
    new_customers: int
    orders: int
    gmv_fen: int
    rows: list[AttributedOut] = Field(default_factory=list)


def note_out(note: KocNote) -> KocNoteOut:
    meta = note.meta or {}
    return KocNoteOut(
        id=note.id,
        platform=note.platform,
        url=note.url,
        title=note.title,
        summary=note.summary,
        images=list(note.images or []),
        status=note.status,
        customer_id=note.customer_id,
        staff_id=note.staff_id,
        author=meta.get("author"),
        source=meta.get("source"),
        reject_reason=note.reject_reason,
        reviewed_by=note.reviewed_by,
        reviewed_at=note.reviewed_at,
        reward_fen=note.reward_fen,
        reward_points=note.reward_points,
        channel_state=note.channel_state,
        link_id=note.link_id,
        attribution_days=attribution_days(note),
        submitted_by=note.submitted_by,
        created_at=note.created_at,
    )


def stats_out(stats: NoteStats) -> KocStatsOut:
    return KocStatsOut(
        note_id=stats.note_id,
        window_days=stats.window_days,
        clicks=stats.clicks,
        customers=stats.customers,
        new_customers=stats.new_customers,
        orders=stats.orders,
        gmv_fen=stats.gmv_fen,
        rows=[AttributedOut(**r.__dict__) for r in stats.rows],
    )


# ---------------------------------------------------------------- links


def _host_ok(host: str, allowed: tuple[str, ...]) -> bool:
    return any(host == h or host.endswith("." + h) for h in allowed)


def _public_host(host: str) -> bool:
    if not host or "." not in host or host.endswith((".local", ".internal", ".localhost")):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False  # an IP literal is nobody's post


def detect_platform(host: str) -> str:
    for platform, hosts in PLATFORM_HOSTS.items():
        if _host_ok(host, hosts):
            return platform
    return "other"


def canonical_url(url: str, platform: str | None = None) -> tuple[str, str]:
    """(platform, canonical link) of a note's URL, or ``Invalid`` naming the field ``url``.

    The canonical link is what duplicates are found by: https, the host without ``www.``,
    lower case; no fragment, no share-tracking parameters, the rest sorted; a Xiaohongshu
    note by its id whatever page shape the link has."""
    text = url.strip()
    if len(text) > MAX_URL:
        raise _bad_url(url, f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _bad_url(url, "not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _bad_url(url, "an http(s) link to the post is needed")
    if parts.username or parts.password or port not in (None, 80, 443):
        raise _bad_url(url, "no user names, passwords or ports in a post link")
    host = parts.hostname.lower().rstrip(".")
    host = host.removeprefix("www.")
    found = detect_platform(host)
    chosen = platform or found
    if chosen not in KOC_PLATFORMS:
        raise Invalid(
            "content.koc_bad_platform",
            platform=chosen,
            known=", ".join(KOC_PLATFORMS),
            errors=[FieldError("content.koc_bad_platform", field="platform", reason=chosen)],
        )
    if chosen == "other":
        if found != "other":
            chosen = found  # a known platform's link is filed under that platform
        elif not _public_host(host):
            raise _bad_url(url, f"{host} is not a public host")
    elif not _host_ok(host, PLATFORM_HOSTS[chosen]):
        hosts = ", ".join(PLATFORM_HOSTS[chosen])
        raise _bad_url(url, f"{host} is not a {chosen} host ({hosts})")
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    note = XHS_NOTE.match(path) if chosen == "xiaohongshu" else None
    if note:
        return chosen, f"https://xiaohongshu.com/explore/{note.group(1)}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=False)
        if not SHARE_PARAMS.match(k.lower())
    )
    if len(path) > 1:
        path = path.rstrip("/")
    return chosen, urlunsplit(("https", host, path, urlencode(query), ""))


def _bad_url(url: str, reason: str) -> Invalid:
    return Invalid(
        "content.koc_bad_url",
        url=url[:200],
        reason=reason,
        errors=[FieldError("content.koc_bad_url", field="url", reason=reason)],
    )


# ---------------------------------------------------------------- reads


def _ref(brand: Brand) -> Any:
    return org_queries.brand_ref(brand)


def _visible(db: Session, actor: Actor, brand: Brand) -> Any:
    """SQL condition on ``KocNote`` for the actor's data scope: everything with a brand-wide
    scope; otherwise the notes they submitted and those of customers they may see."""
    if unit_filter(actor, _ref(brand)).all:
        return KocNote.id.is_not(None)
    scoped = select(Customer.id).where(
        Customer.brand_id == brand.id, customer_queries.scope_filter(db, actor, brand)
    )
    conds: list[Any] = [KocNote.customer_id.in_(scoped)]
    if actor.staff_id:
        conds.append(KocNote.staff_id == actor.staff_id)
    return or_(*conds)


def list_notes(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    status: str | None = None,
    platform: str | None = None,
    query: str = "",
    limit: int = 200,
) -> list[KocNote]:
    """The brand's notes the actor may see, newest first, filtered by status, platform and a
    text in the title, link or author."""
    authorize(actor, "customers.read", _ref(brand))
    if status and status not in KOC_STATUSES:
        raise Invalid("content.koc_bad_filter", name="status", value=status)
    if platform and platform not in KOC_PLATFORMS:
        raise Invalid("content.koc_bad_filter", name="platform", value=platform)
    stmt = select(KocNote).where(KocNote.brand_id == brand.id, _visible(db, actor, brand))
    if status:
        stmt = stmt.where(KocNote.status == status)
    if platform:
        stmt = stmt.where(KocNote.platform == platform)
    text = query.strip()[:100]
    if text:
        like = f"%{text}%"
        stmt = stmt.where(
            or_(KocNote.title.ilike(like), KocNote.url.ilike(like), KocNote.summary.ilike(like))
        )
    stmt = stmt.order_by(KocNote.created_at.desc(), KocNote.id.desc()).limit(max(1, limit))
    return list(db.scalars(stmt))


def get_note(db: Session, actor: Actor, brand: Brand, note_id: str) -> KocNote:
    """One note, if the actor may see it (``content.koc_not_found`` otherwise)."""
    authorize(actor, "customers.read", _ref(brand))
    note = db.scalar(
        select(KocNote).where(
            KocNote.brand_id == brand.id, KocNote.id == note_id, _visible(db, actor, brand)
        )
    )
    if note is None:
        raise NotFound("content.koc_not_found", note=note_id)
    return note


def status_counts(db: Session, actor: Actor, brand: Brand) -> dict[str, int]:
    authorize(actor, "customers.read", _ref(brand))
    rows = db.execute(
        select(KocNote.status, func.count())
        .where(KocNote.brand_id == brand.id, _visible(db, actor, brand))
        .group_by(KocNote.status)
    )
    counts = {s: 0 for s in KOC_STATUSES}
    counts.update({str(s): int(n) for s, n in rows})
    return counts


def rewards(db: Session, actor: Actor, brand: Brand, note: KocNote) -> list[RewardLedger]:
    """The ledger rows of a note the actor can see."""
    get_note(db, actor, brand, note.id)
    return list(
        db.scalars(
            select(RewardLedger)
            .where(RewardLedger.brand_id == brand.id, RewardLedger.koc_note_id == note.id)
            .order_by(RewardLedger.created_at, RewardLedger.id)
        )
    )


def attribution_days(note: KocNote) -> int:
    value = (note.meta or {}).get("attribution_days")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_WINDOW_DAYS


# ---------------------------------------------------------------- writes


def _find_duplicate(db: Session, brand: Brand, url: str) -> KocNote | None:
    return db.scalar(select(KocNote).where(KocNote.brand_id == brand.id, KocNote.url == url))


def _checked(
    db: Session, actor: Actor, brand: Brand, data: KocNoteIn
) -> tuple[str, str, str | None]:
    platform, url = canonical_url(data.url, data.platform or None)
    customer_id = None
    if data.customer_id:
        customer_id = customer_queries.access_customer(db, actor, brand, data.customer_id).id
    for i, image in enumerate(data.images):
        if urlsplit(image).scheme not in ("http", "https"):
            raise Invalid(
                "validation.failed",
                errors=[FieldError("content.koc_bad_url", field=f"images.{i}", reason=image)],
            )
    return platform, url, customer_id


def submit_note(
    db: Session, actor: Actor, brand: Brand, data: KocNoteIn, source: str = "staff"
) -> KocNote:
    """Store a submitted note (``submitted``); ``content.koc_duplicate`` for a post already
    submitted to this brand."""
    authorize(actor, SUBMIT, _ref(brand))
    with atomic(db):
        platform, url, customer_id = _checked(db, actor, brand, data)
        existing = _find_duplicate(db, brand, url)
        if existing is not None:
            raise Conflict(
                "content.koc_duplicate",
                note=existing.id,
                errors=[FieldError("content.koc_duplicate", field="url", reason=existing.id)],
            )
        meta: dict[str, Any] = {"source": source, "submitted_url": data.url.strip()}
        if data.author:
            meta["author"] = data.author
        note = KocNote(
            brand_id=brand.id,
            customer_id=customer_id,
            staff_id=actor.staff_id if actor.kind == "staff" else None,
            platform=platform,
            url=url,
            title=data.title,
            summary=data.summary or None,
            images=list(data.images),
            status="submitted",
            meta=meta,
            submitted_by=actor.label,
        )
        db.add(note)
        db.flush()
        record(
            db, actor, "content.koc_submit", "koc_note", note.id, brand=brand, after=snapshot(note)
        )
    return note


@dataclass
class ImportReport:
    total: int = 0
    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "created": self.created,
            "unchanged": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "ids": self.ids,
            "dry_run": False,
        }


# Column headers a file may use for each field (Chinese or English).
HEADERS = {
    "url": ("url", "link", "链接", "笔记链接"),
    "title": ("title", "标题"),
    "platform": ("platform", "平台"),
    "summary": ("summary", "摘要"),
    "customer_id": ("customer_id", "customer", "客户id", "客户 id"),
    "author": ("author", "作者", "作者账号"),
}


def _mapped(raw: dict[str, Any]) -> dict[str, Any]:
    """A file row with known headers renamed to the fields (unknown columns left to fail)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip()
        field_name = next((f for f, alias in HEADERS.items() if name.lower() in alias), name)
        out[field_name] = value
    return out


def import_notes(
    db: Session,
    actor: Actor,
    brand: Brand,
    rows: list[dict[str, Any]],
    first_row: int = 2,
    lines: list[int] | None = None,
) -> ImportReport:
    """Submit many notes (a file's rows: ``url``, ``title``, optional ``platform``,
    ``summary``, ``customer_id``, ``author``; Chinese headers too). Each good row is stored;
    a bad row is reported with its row number (``lines[i]``, else ``first_row + i``), field
    and reason; a post already there counts as a duplicate."""
    authorize(actor, SUBMIT, _ref(brand))
    if len(rows) > MAX_IMPORT_ROWS:
        raise Invalid("content.koc_import_too_large", limit=MAX_IMPORT_ROWS)
    report = ImportReport(total=len(rows))
    seen: set[str] = set()
    for i, raw in enumerate(rows):
        line = lines[i] if lines is not None and i < len(lines) else first_row + i
        values = {k: v for k, v in _mapped(raw).items() if v not in (None, "")}
        try:
            try:
                data = KocNoteIn.model_validate(values)
            except ValidationError as exc:
                raise Invalid("validation.failed", errors=field_errors(exc, line)) from exc
            _, url = canonical_url(data.url, data.platform or None)
            if url in seen or _find_duplicate(db, brand, url) is not None:
                report.duplicates += 1
                continue
            seen.add(url)
            note = submit_note(db, actor, brand, data, source="import")
        except (Invalid, NotFound, Conflict) as exc:
            report.rejected += 1
            errs = exc.errors or [FieldError(exc.code, reason=exc.message("en"))]
            for err in errs:
                report.errors.append({**err.as_dict(), "row": line})
            continue
        report.created += 1
        report.ids.append(note.id)
    return report


def _note_for_update(db: Session, actor: Actor, brand: Brand, note_id: str) -> KocNote:
    authorize(actor, REVIEW, _ref(brand))
    note = get_note(db, actor, brand, note_id)
    return note


def _grant(
    db: Session, actor: Actor, brand: Brand, note: KocNote, unit: str, amount: int
) -> RewardLedger | None:
    """One ledger row for this note and unit, unless it is already there (or being written
    by a concurrent approval: the unique key decides, the loser writes nothing)."""
    key = f"koc:{note.id}:{unit}"
    if amount <= 0:
        return None
    found = db.scalar(
        select(RewardLedger).where(RewardLedger.brand_id == brand.id, RewardLedger.idem_key == key)
    )
    if found is not None:
        return None
    row = RewardLedger(
        brand_id=brand.id,
        idem_key=key,
        koc_note_id=note.id,
        customer_id=note.customer_id,
        staff_id=None if note.customer_id else note.staff_id,
        unit=unit,
        amount=amount,
        reason="koc_note_approved",
        status="granted",
        created_by=actor.label,
    )
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        return None
    return row


def _state_for(db: Session, brand: Brand, note: KocNote, wanted: str | None) -> str:
    state = wanted or note.channel_state or f"koc_{note.id[-12:].lower()}"
    if not STATE.match(state):
        raise Invalid(
            "content.koc_bad_state",
            state=state,
            errors=[FieldError("content.koc_bad_state", field="state", reason=state)],
        )
    other = db.scalar(
        select(KocNote.id).where(
            KocNote.brand_id == brand.id, KocNote.channel_state == state, KocNote.id != note.id
        )
    )
    if other is not None:
        raise Conflict(
            "content.koc_state_taken",
            state=state,
            note=other,
            errors=[FieldError("content.koc_state_taken", field="state", reason=other)],
        )
    return state


def _link_for(db: Session, actor: Actor, brand: Brand, note: KocNote, target: str) -> str:
    """A tracking link to ``target`` tied to the note (``content.actions.create_link`` checks
    the target against the brand's allowed domains)."""
    from siyu.content import actions as content_actions
    from siyu.content.schemas import LinkIn

    body = LinkIn(target_url=target, koc_note_id=note.id, channel=note.platform, campaign="koc")
    return str(content_actions.create_link(db, actor, brand, body).id)


def approve_note(
    db: Session, actor: Actor, brand: Brand, note_id: str, decision: KocApproval | None = None
) -> KocNote:
    """Approve a note: the reward once, a channel ``state``, a tracking link when a target is
    given. Approving an approved note changes nothing and pays nothing."""
    decision = decision or KocApproval()
    with atomic(db):
        note = _note_for_update(db, actor, brand, note_id)
        if note.status == "approved":
            return note
        if (decision.reward_fen or decision.reward_points) and not (
            note.customer_id or note.staff_id
        ):
            raise Invalid(
                "content.koc_no_recipient",
                note=note.id,
                errors=[FieldError("content.koc_no_recipient", field="reward_fen")],
            )
        before = snapshot(note)
        note.channel_state = _state_for(db, brand, note, decision.state)
        note.channel_code = note.channel_state
        if decision.target_url and not note.link_id:
            note.link_id = _link_for(db, actor, brand, note, decision.target_url)
        now = utcnow()
        note.status = "approved"
        note.reject_reason = None
        note.reviewed_by = actor.label
        note.reviewed_at = now
        note.updated_at = now
        note.reward_fen = decision.reward_fen
        note.reward_points = decision.reward_points
        note.meta = {**(note.meta or {}), "attribution_days": decision.attribution_days}
        granted = [
            g
            for g in (
                _grant(db, actor, brand, note, "fen", decision.reward_fen),
                _grant(db, actor, brand, note, "points", decision.reward_points),
            )
            if g is not None
        ]
        db.flush()
        after = snapshot(note)
        after["rewards"] = [{"unit": g.unit, "amount": g.amount, "id": g.id} for g in granted]
        record(
            db,
            actor,
            "content.koc_approve",
            "koc_note",
            note.id,
            brand=brand,
            before=before,
            after=after,
        )
    return note


def reject_note(db: Session, actor: Actor, brand: Brand, note_id: str, reason: str) -> KocNote:
    """Reject a submitted note with a reason (required, at most 400 characters). An approved
    note cannot be rejected (its reward is paid)."""
    text = (reason or "").strip()
    if not text:
        raise Invalid(
            "content.koc_reason_required",
            errors=[FieldError("content.koc_reason_required", field="reason")],
        )
    if len(text) > 400:
        raise Invalid(
            "validation.failed",
            errors=[FieldError("invalid.string_too_long", field="reason", reason="≤ 400")],
        )
    with atomic(db):
        note = _note_for_update(db, actor, brand, note_id)
        if note.status == "approved":
            raise Conflict("content.koc_already_approved", note=note.id)
        before = snapshot(note)
        now = utcnow()
        note.status = "rejected"
        note.reject_reason = text
        note.reviewed_by = actor.label
        note.reviewed_at = now
        note.updated_at = now
        db.flush()
        record(
            db,
            actor,
            "content.koc_reject",
            "koc_note",
            note.id,
            brand=brand,
            before=before,
            after=snapshot(note),
        )
    return note


# ---------------------------------------------------------------- attribution


@dataclass
class Attributed:
    """One customer a note brought: how (``state`` / ``link`` / ``click``), when, and their
    orders and GMV inside the window."""

    customer_id: str
    via: str
    at: datetime
    new: bool = True
    orders: int = 0
    gmv_fen: int = 0
    name: str = ""
    phone: str = ""


@dataclass
class NoteStats:
    note_id: str
    window_days: int
    clicks: int = 0
    customers: int = 0
    new_customers: int = 0
    orders: int = 0
    gmv_fen: int = 0
    rows: list[Attributed] = field(default_factory=list)


def _first(touches: dict[str, tuple[datetime, str]], cid: str, at: datetime, via: str) -> None:
    at = as_utc(at)
    have = touches.get(cid)
    if have is None or at < have[0]:
        touches[cid] = (at, via)


def _lake_touches(brand: Brand, notes: list[KocNote], codes: dict[str, str]) -> list[Any]:
    """(identity_key, note id, first time, via) from the lake: WeCom adds with a note's state
    and mall-reported clicks naming a note (by id or link code)."""
    from siyu.analytics.engine import connect

    by_state = {n.channel_state: n.id for n in notes if n.channel_state}
    by_content = {n.id: n.id for n in notes}
    by_content.update({code: nid for nid, code in codes.items()})
    out: list[Any] = []
    with connect() as engine:  # one pass over the events for both kinds of touch
        ev = engine.table("events", brand.id)
        props = ev.properties.cast("json")
        state = props["state"].unwrap_as("string")
        content = props["content_id"].unwrap_as("string")
        is_add = ev.event_type == "wecom_contact_added"
        picked = ev.filter(
            ev.identity_key.notnull(),
            (is_add & state.isin(list(by_state) or [""]))
            | ((ev.event_type == "content_clicked") & content.isin(list(by_content))),
        ).mutate(add=is_add, ref=is_add.ifelse(state, content))
        expr = picked.group_by([picked.identity_key, picked.add, picked.ref]).aggregate(
            at=picked.occurred_at.min()
        )
        for row in engine.execute(expr).to_pylist():
            kind, wanted = ("state", by_state) if row["add"] else ("click", by_content)
            out.append((row["identity_key"], wanted[row["ref"]], row["at"], kind))
    return out


def _customers_of(db: Session, brand: Brand, keys: set[str]) -> dict[str, str]:
    from siyu.customers.oneid import identities_by_key

    pairs = [(t, h) for t, _, h in (k.partition(":") for k in keys)]
    rows = identities_by_key(
        db, brand.id, pairs, (Identity.customer_id, Identity.id_type, Identity.value_hash)
    )
    return {f"{t}:{h}": str(cid) for cid, t, h in rows if cid}


def survivors(db: Session, brand: Brand, ids: set[str]) -> dict[str, str]:
    """Customer id → the id it lives on as (a merged customer's survivor)."""
    out = {i: i for i in ids}
    merged = db.execute(
        select(Customer.id, Customer.merged_into).where(
            Customer.brand_id == brand.id,
            Customer.id.in_(sorted(ids)),
            Customer.status == "merged",
        )
    )
    for cid, into in merged:
        if into:
            out[str(cid)] = str(into)
    return out


def _in_scope(db: Session, actor: Actor, brand: Brand, ids: set[str]) -> set[str]:
    if unit_filter(actor, _ref(brand)).all or not ids:
        return set(ids)
    seen: set[str] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        part = ordered[start : start + 500]
        seen.update(
            db.scalars(
                select(Customer.id).where(
                    Customer.brand_id == brand.id,
                    Customer.id.in_(part),
                    customer_queries.scope_filter(db, actor, brand),
                )
            )
        )
    return seen


def _orders(db: Session, brand: Brand, ids: list[str], until: datetime) -> list[dict[str, Any]]:
    """Paid orders (``customer_id``, ``order_id``, ``at``, ``paid_fen``) of these customers up
    to ``until``, read from the lake through today's identity map."""
    if not ids:
        return []
    import ibis

    from siyu.analytics.engine import connect

    idmap = customer_queries.identity_map(db, brand.id, ids)
    with connect() as engine:
        orders = engine.table("orders", brand.id)
        mapped = ibis.memtable(idmap)
        paid = orders.filter(orders.kind == "paid", orders.occurred_at <= until)
        joined = paid.join(mapped, paid.identity_key == mapped.identity_key)
        expr = joined.select(
            customer_id=joined.customer_id,
            order_id=joined.order_id,
            at=joined.occurred_at,
            paid_fen=joined.paid_fen,
        ).distinct()
        rows: list[dict[str, Any]] = engine.execute(expr).to_pylist()
    return rows


def note_touches(
    db: Session, brand: Brand, notes: list[KocNote], clicks: dict[str, int] | None = None
) -> dict[str, dict[str, tuple[datetime, str]]]:
    """Note id → {customer id: (first touch, via)} for every customer each note brought (the
    attribution rules above; merged customers counted as their survivor; no data scope
    applied). ``clicks``, when given, is filled with each note's counted clicks."""
    note_ids = [n.id for n in notes]
    per_note: dict[str, dict[str, tuple[datetime, str]]] = {nid: {} for nid in note_ids}
    if not notes:
        return per_note
    codes: dict[str, str] = {}
    link_ids = [n.link_id for n in notes if n.link_id]
    if link_ids:
        from siyu.content.models import TrackingLink

        codes = {
            str(nid): str(code)
            for nid, code in db.execute(
                select(TrackingLink.koc_note_id, TrackingLink.code).where(
                    TrackingLink.brand_id == brand.id, TrackingLink.id.in_(link_ids)
                )
            )
            if nid
        }
    counted = (
        LinkClick.brand_id == brand.id,
        LinkClick.koc_note_id.in_(note_ids),
        LinkClick.bot.is_(False),
    )
    for nid, n in db.execute(
        select(LinkClick.koc_note_id, func.count()).where(*counted).group_by(LinkClick.koc_note_id)
    ):
        if clicks is not None:
            clicks[str(nid)] = int(n)
    for nid, cid, at in db.execute(
        select(LinkClick.koc_note_id, LinkClick.customer_id, func.min(LinkClick.at))
        .where(*counted, LinkClick.customer_id.is_not(None))
        .group_by(LinkClick.koc_note_id, LinkClick.customer_id)
    ):
        _first(per_note[str(nid)], str(cid), at, "link")
    lake = _lake_touches(brand, notes, codes)
    owners = _customers_of(db, brand, {k for k, _, _, _ in lake})
    for key, nid, at, via in lake:
        cid = owners.get(key)
        if cid:
            _first(per_note[nid], cid, at, via)
    everyone = {cid for touches in per_note.values() for cid in touches}
    alive = survivors(db, brand, everyone)
    for nid in note_ids:
        merged: dict[str, tuple[datetime, str]] = {}
        for cid, (at, via) in per_note[nid].items():
            _first(merged, alive.get(cid, cid), at, via)
        per_note[nid] = merged
    return per_note


def attribution(
    db: Session, actor: Actor, brand: Brand, notes: list[KocNote], *, rows: bool = True
) -> dict[str, NoteStats]:
    """What each note brought (customers, new customers, orders, GMV in fen, counted clicks)
    among the customers the actor may see. One lake pass for all the notes."""
    authorize(actor, "customers.read", _ref(brand))
    stats = {n.id: NoteStats(note_id=n.id, window_days=attribution_days(n)) for n in notes}
    if not notes:
        return stats
    note_ids = [n.id for n in notes]
    clicks: dict[str, int] = {}
    per_note = note_touches(db, brand, notes, clicks)
    for nid, n in clicks.items():
        stats[nid].clicks = n
    visible = _in_scope(db, actor, brand, {cid for touches in per_note.values() for cid in touches})
    per_note = {
        nid: {cid: v for cid, v in touches.items() if cid in visible}
        for nid, touches in per_note.items()
    }
    targets = sorted({cid for touches in per_note.values() for cid in touches})
    latest = max(
        (
            at + timedelta(days=stats[nid].window_days)
            for nid in note_ids
            for at, _ in per_note[nid].values()
        ),
        default=utcnow(),
    )
    orders_by_customer: dict[str, list[tuple[datetime, int, str]]] = {}
    for o in _orders(db, brand, targets, latest):
        orders_by_customer.setdefault(o["customer_id"], []).append(
            (as_utc(o["at"]), int(o["paid_fen"] or 0), str(o["order_id"]))
        )
    for nid in note_ids:
        st = stats[nid]
        window = timedelta(days=st.window_days)
        for cid, (at, via) in sorted(per_note[nid].items(), key=lambda kv: (kv[1][0], kv[0])):
            row = Attributed(customer_id=cid, via=via, at=at)
            mine = orders_by_customer.get(cid, [])
            row.new = not any(t < at for t, _, _ in mine)
            inside = {oid: fen for t, fen, oid in mine if at <= t <= at + window}
            row.orders = len(inside)
            row.gmv_fen = sum(inside.values())
            st.customers += 1
            st.new_customers += int(row.new)
            st.orders += row.orders
            st.gmv_fen += row.gmv_fen
            if rows:
                st.rows.append(row)
    if rows:
        for st in stats.values():
            st.rows.sort(key=lambda r: (-r.gmv_fen, -r.orders, r.at, r.customer_id))
            del st.rows[MAX_ROWS:]
        shown = {r.customer_id for st in stats.values() for r in st.rows}
        people = customer_queries.rows_by_id(db, actor, brand, sorted(shown))
        for st in stats.values():
            for r in st.rows:
                person = people.get(r.customer_id)
                if person is not None:
                    r.name, r.phone = person.name, person.phone
    return stats


def staff_names(db: Session, notes: list[KocNote]) -> dict[str, str]:
    ids = {n.staff_id for n in notes if n.staff_id}
    if not ids:
        return {}
    return {
        str(i): str(n) for i, n in db.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids)))
    }
