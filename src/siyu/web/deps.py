"""Request plumbing of the console: database session, language, signed-in user, CSRF check.

Console routes declare ``con: Con`` (a :class:`Console`) and get the resolved session, staff
member and :class:`~siyu.core.tenancy.Actor`; an unsafe request (POST) is refused with
``auth.csrf_failed`` unless it carries the session's CSRF token in the form field
``csrf_token`` or the header ``X-CSRF-Token`` (HTMX sends it from ``<body hx-headers>``).

    @router.get("/b/{brand}/org")
    def org_page(brand: str, con: Con) -> Response:
        b = con.brand(brand, "org.read")      # the tenant funnel: 404 / 403
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from siyu.core.db import request_session
from siyu.core.errors import Forbidden, TooLarge
from siyu.core.i18n import normalise_locale
from siyu.core.security import constant_equal
from siyu.core.settings import get_settings
from siyu.core.tenancy import Actor
from siyu.org import auth, queries
from siyu.org.models import Brand, Staff, WebSession

SESSION_COOKIE = "siyu_session"
CSRF_COOKIE = "siyu_csrf"
LANG_COOKIE = "siyu_lang"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_UPLOAD = 10 * 1024 * 1024


def get_db(request: Request) -> Iterator[Session]:
    yield from request_session(request.app.state)


Db = Annotated[Session, Depends(get_db)]


def locale_of(request: Request) -> str:
    """The console language: the ``siyu_lang`` cookie, else zh-CN."""
    return normalise_locale(request.cookies.get(LANG_COOKIE))


def cookie_secure(request: Request) -> bool:
    configured = get_settings().cookie_secure
    return request.url.scheme == "https" if configured is None else configured


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def form_of(request: Request) -> FormData:
    """The posted form, parsed on the event loop so that route handlers can stay plain
    ``def`` functions (run in the thread pool: database calls and password hashing must not
    block the loop). Empty for safe methods and non-form bodies."""
    if request.method in SAFE_METHODS:
        return FormData()
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return FormData()
    return await request.form(max_files=4, max_fields=200)


Form = Annotated[FormData, Depends(form_of)]


def text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def upload_of(form: FormData, name: str = "file") -> tuple[str, bytes] | None:
    """The uploaded file's name and bytes (at most 10 MB), or None when none was chosen."""
    value = form.get(name)
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    value.file.seek(0)
    data = value.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise TooLarge("http.too_large", limit="10 MB")
    return value.filename, data


@dataclass
class Console:
    """Everything a console route needs about who is asking, resolved once per request."""

    request: Request
    db: Session
    locale: str
    session: WebSession
    staff: Staff
    actor: Actor
    token: str

    def brand(self, ref: str, permission: str = "org.read") -> Brand:
        """The brand through the tenant funnel: another tenant's brand is a 404."""
        return queries.access_brand(self.db, self.actor, ref, permission)


def current_console(request: Request, db: Db, form: Form) -> Console:
    """Resolve the session cookie (401 → the login page) and check CSRF on unsafe methods."""
    token = request.cookies.get(SESSION_COOKIE) or ""
    session, staff, actor = auth.resolve_session(db, token)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "") or text_field(form, "csrf_token")
        if not sent or not constant_equal(sent, session.csrf_token):
            raise Forbidden("auth.csrf_failed")
    return Console(
        request=request,
        db=db,
        locale=locale_of(request),
        session=session,
        staff=staff,
        actor=actor,
        token=token,
    )


Con = Annotated[Console, Depends(current_console)]
