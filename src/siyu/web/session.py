"""Signing in and out, the landing redirect and the brand switcher.

- ``GET /`` → the session's current brand (or the first one the user may see);
- ``GET|POST /login`` → a session cookie (``siyu_session``, HttpOnly) and a readable CSRF
  cookie (``siyu_csrf``), then ``303 /``;
- ``POST /logout``; ``POST /switch-brand`` (form field ``brand``) → that brand's org page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import Locked, Unauthenticated
from siyu.core.i18n import translate
from siyu.core.settings import get_settings
from siyu.org import auth, queries
from siyu.web.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Con,
    Db,
    Form,
    cookie_secure,
    locale_of,
    text_field,
)
from siyu.web.render import html, page

router = APIRouter(include_in_schema=False)


def _login_page(
    request: Request, status: int = 200, username: str = "", message: str = ""
) -> Response:
    if not message and request.query_params.get("expired"):
        message = translate("ui.login.expired", locale_of(request))
    context = {"username": username, "message": message, "canonical": "/login"}
    return html(request, "login.html", context, status)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
def login_submit(request: Request, db: Db, form: Form) -> Response:
    username = text_field(form, "username")
    password = form.get("password")
    ip = request.client.host if request.client else None
    try:
        session, token = auth.login(
            db, username, password if isinstance(password, str) else "", ip=ip
        )
    except (Unauthenticated, Locked) as exc:
        return _login_page(request, exc.status, username, exc.message(locale_of(request)))
    response = RedirectResponse("/", status_code=303)
    secure = cookie_secure(request)
    max_age = get_settings().session_hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    # Readable by scripts on purpose: it is the double-submit half of the CSRF check.
    response.set_cookie(
        CSRF_COOKIE,
        session.csrf_token,
        max_age=max_age,
        path="/",
        httponly=False,
        samesite="lax",
        secure=secure,
    )
    return response


@router.post("/logout")
def logout(con: Con) -> Response:
    auth.logout(con.db, con.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/")
def home(con: Con) -> Response:
    brands = queries.accessible_brands(con.db, con.actor)
    if not brands:
        return page(con, "no_brand.html", None, "")
    current = next((b for b in brands if b.id == con.session.brand_id), brands[0])
    return RedirectResponse(f"/b/{current.slug}", status_code=303)


@router.post("/switch-brand")
def switch_brand(con: Con, form: Form) -> Response:
    slug = text_field(form, "brand")
    brand = auth.switch_brand(con.db, con.session, con.actor, slug)
    return RedirectResponse(f"/b/{brand.slug}/org", status_code=303)
