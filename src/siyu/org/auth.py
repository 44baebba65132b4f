"""Signing in: console sessions, lock-out, API keys, and building the :class:`Actor`.

Sessions live in the store (``web_sessions``); the cookie holds a random token whose SHA-256
is the lookup key, so a stolen database does not yield live sessions. Each session carries
its own CSRF token.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Forbidden, Locked, NotFound, Unauthenticated
from siyu.core.ids import new_id
from siyu.core.security import new_token, token_hash, verify_password
from siyu.core.settings import get_settings
from siyu.core.tenancy import Actor, Grant, Scope
from siyu.org import queries
from siyu.org.models import ApiKey, Brand, Membership, OrgUnit, Staff, WebSession
from siyu.org.permissions import can_see_brand


def actor_for_staff(db: Session, staff: Staff) -> Actor:
    rows = db.execute(
        select(Membership, OrgUnit)
        .outerjoin(OrgUnit, OrgUnit.id == Membership.unit_id)
        .where(Membership.staff_id == staff.id, Membership.active.is_(True))
    ).all()
    grants = []
    for member, unit in rows:
        scope: Scope = member.scope  # type: ignore[assignment]
        grants.append(
            Grant(
                role=member.role,
                scope=scope,
                brand_id=member.brand_id,
                agency_id=member.agency_id,
                unit_id=member.unit_id,
                unit_path=unit.path if unit else None,
            )
        )
    return Actor(
        kind="staff",
        id=staff.id,
        label=f"{staff.name} ({staff.username})",
        grants=tuple(grants),
        superadmin=staff.superadmin,
        staff_id=staff.id,
    )


def login(
    db: Session, username: str, password: str, ip: str | None = None
) -> tuple[WebSession, str]:
    """Check the password and open a session; returns it with the cookie token.

    After ``login_max_failures`` wrong passwords in a row the account is locked for
    ``login_lockout_minutes``; while locked even the right password is refused.
    """
    settings = get_settings()
    now = utcnow()
    staff = db.scalar(select(Staff).where(Staff.username == username.strip().lower()))
    if staff is not None and staff.locked_until is not None and staff.locked_until > now:
        raise Locked("auth.locked", minutes=max(1, int((staff.locked_until - now).seconds / 60)))
    ok = verify_password(staff.password_hash if staff else None, password)
    if staff is None or not ok or not staff.active:
        if staff is not None:
            with atomic(db):
                staff.failed_logins += 1
                if staff.failed_logins >= settings.login_max_failures:
                    staff.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
                    staff.failed_logins = 0
                    record(
                        db,
                        actor_for_staff(db, staff),
                        "auth.lockout",
                        "staff",
                        staff.id,
                        agency_id=staff.agency_id,
                        brand_id=staff.home_brand_id,
                    )
        raise Unauthenticated("auth.invalid_credentials")
    token = new_token()
    with atomic(db):
        staff.failed_logins = 0
        staff.locked_until = None
        staff.last_login_at = now
        actor = actor_for_staff(db, staff)
        brands = queries.accessible_brands(db, actor)
        session = WebSession(
            id=new_id(),
            token_hash=token_hash(token),
            staff_id=staff.id,
            brand_id=brands[0].id if brands else None,
            csrf_token=new_token(24),
            expires_at=now + timedelta(hours=settings.session_hours),
            last_seen_at=now,
            ip=ip,
        )
        db.add(session)
        # Sign-ins are writes worth auditing, but without the password or token.
        record(
            db,
            actor,
            "auth.login",
            "staff",
            staff.id,
            agency_id=staff.agency_id,
            brand_id=session.brand_id,
            after={"ip": ip},
        )
    return session, token


def resolve_session(db: Session, token: str | None) -> tuple[WebSession, Staff, Actor]:
    if not token:
        raise Unauthenticated("auth.not_signed_in")
    session = db.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))
    now = utcnow()
    if session is None:
        raise Unauthenticated("auth.session_expired")
    if session.expires_at <= now:
        with atomic(db):
            db.delete(session)
        raise Unauthenticated("auth.session_expired")
    staff = db.get(Staff, session.staff_id)
    if staff is None or not staff.active:
        raise Unauthenticated("auth.session_expired")
    return session, staff, actor_for_staff(db, staff)


def logout(db: Session, token: str) -> None:
    with atomic(db):
        db.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def switch_brand(db: Session, session: WebSession, actor: Actor, ref: str) -> Brand:
    brand = queries.find_brand(db, ref)
    if brand is None or not can_see_brand(actor, queries.brand_ref(brand)):
        raise NotFound("org.brand_not_found")
    with atomic(db):
        session.brand_id = brand.id
    return brand


def actor_for_api_key(db: Session, secret: str | None) -> tuple[Actor, ApiKey]:
    if not secret:
        raise Unauthenticated("auth.api_key_missing")
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == token_hash(secret.strip())))
    now = utcnow()
    if key is None:
        raise Unauthenticated("auth.api_key_invalid")
    if key.revoked_at is not None:
        raise Unauthenticated("auth.api_key_revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("auth.api_key_expired")
    actor = Actor(
        kind="api_key",
        id=key.id,
        label=f"api-key:{key.name} ({key.prefix}…)",
        api_brand_id=key.brand_id,
        api_scopes=frozenset(key.scopes),
    )
    return actor, key


def require_staff(actor: Actor) -> None:
    if actor.kind != "staff":
        raise Forbidden("auth.staff_only")
