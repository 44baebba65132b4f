"""Request dependencies: a database session and the acting principal.

An API caller is either an API key (``Authorization: Bearer sk_…``) or a signed-in console
user (session cookie); a cookie-authenticated unsafe request must carry the session's CSRF
token in ``X-CSRF-Token``, since browsers attach cookies to cross-site requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from siyu.core.clock import utcnow
from siyu.core.db import request_session
from siyu.core.errors import Forbidden
from siyu.core.security import constant_equal
from siyu.core.tenancy import Actor
from siyu.org import auth
from siyu.org.actions import touch_api_key

SESSION_COOKIE = "siyu_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_db(request: Request) -> Iterator[Session]:
    yield from request_session(request.app.state)


Db = Annotated[Session, Depends(get_db)]


def get_actor(request: Request, db: Db) -> Actor:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        actor, key = auth.actor_for_api_key(db, header[7:])
        now = utcnow()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            touch_api_key(db, key.id, now)
        return actor
    token = request.cookies.get(SESSION_COOKIE)
    if not token and not header:
        auth.actor_for_api_key(db, None)  # raises auth.api_key_missing
    session, _staff, actor = auth.resolve_session(db, token)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not constant_equal(sent, session.csrf_token):
            raise Forbidden("auth.csrf_failed")
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]
