"""Signing in: passwords, lock-out, session expiry, API keys stored hashed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.core.clock import utcnow
from siyu.core.errors import Locked, Unauthenticated
from siyu.core.security import token_hash
from siyu.core.tenancy import SYSTEM
from siyu.org import actions, auth, queries
from siyu.org.models import ApiKey, Staff, WebSession
from siyu.org.schemas import ApiKeyIn
from tests.factories import PASSWORD


def test_login_opens_a_session_stored_by_hash(db: Session, world: object) -> None:
    session, token = auth.login(db, "A.Admin", PASSWORD)
    assert session.token_hash == token_hash(token)
    assert db.scalar(select(WebSession).where(WebSession.token_hash == token)) is None
    _, staff, actor = auth.resolve_session(db, token)
    assert staff.username == "a.admin"
    assert actor.grants[0].role == "admin"


def test_wrong_password_and_unknown_user_look_the_same(db: Session, world: object) -> None:
    for username in ("a.admin", "nobody"):
        with pytest.raises(Unauthenticated) as exc:
            auth.login(db, username, "wrong-password")
        assert exc.value.code == "auth.invalid_credentials"


def test_lockout_after_repeated_failures(db: Session, world: object) -> None:
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            auth.login(db, "a.guide", "nope-nope")
    with pytest.raises(Locked) as exc:
        auth.login(db, "a.guide", PASSWORD)  # even the right password
    assert exc.value.code == "auth.locked"
    # an admin resetting the password lifts the lock
    actions.set_password(db, SYSTEM, "a.guide", "a-new-password")
    auth.login(db, "a.guide", "a-new-password")


def test_lock_expires(db: Session, world: object) -> None:
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            auth.login(db, "a.guide", "nope-nope")
    db.execute(
        update(Staff)
        .where(Staff.username == "a.guide")
        .values(locked_until=utcnow() - timedelta(seconds=1))
    )
    db.commit()
    auth.login(db, "a.guide", PASSWORD)


def test_expired_session_is_refused_and_removed(db: Session, world: object) -> None:
    session, token = auth.login(db, "a.admin", PASSWORD)
    db.execute(
        update(WebSession)
        .where(WebSession.id == session.id)
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    db.commit()
    with pytest.raises(Unauthenticated) as exc:
        auth.resolve_session(db, token)
    assert exc.value.code == "auth.session_expired"
    assert db.get(WebSession, session.id) is None


def test_deactivated_staff_cannot_sign_in(db: Session, world: object) -> None:
    db.execute(update(Staff).where(Staff.username == "a.guide").values(active=False))
    db.commit()
    with pytest.raises(Unauthenticated):
        auth.login(db, "a.guide", PASSWORD)


def test_api_key_secret_is_not_stored(db: Session, world: object) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    key, secret = actions.create_api_key(db, SYSTEM, brand, ApiKeyIn(name="k", scopes=["org.read"]))
    row = db.get(ApiKey, key.id)
    assert row is not None and secret not in (row.key_hash, row.prefix)
    assert row.key_hash == token_hash(secret)
    actor, _ = auth.actor_for_api_key(db, secret)
    assert actor.api_brand_id == brand.id
    assert actor.api_scopes == {"org.read"}


def test_audit_never_holds_secrets(db: Session, world: object) -> None:
    from siyu.core.audit import AuditEntry

    for entry in db.scalars(select(AuditEntry)):
        text = str(entry.after) + str(entry.before)
        assert "password_hash" not in text and "key_hash" not in text
