"""Mounts the console on the ASGI app: pages at ``/``, assets under ``/static``.

``install(app)`` (called by :func:`siyu.server.create_app`):

- includes the console routers (sign-in, brand pages);
- serves the npm front-end packages from ``node_modules`` under ``/static/vendor/`` (they are
  installed by ``npm install``, never copied into the repo) and the console's own CSS/JS from
  ``siyu/web/static``;
- sets ``app.state.render_error`` so errors raised on console routes become HTML pages (a 401
  becomes a redirect to ``/login``);
- turns ``?lang=en|zh-CN`` on any console page into the ``siyu_lang`` cookie.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from siyu.core.errors import FieldError, NotFound
from siyu.core.i18n import LOCALES, translate
from siyu.core.settings import get_settings
from siyu.web import (
    apikeys,
    audit,
    channels,
    content,
    content_koc,
    customers,
    metrics,
    metrics_contracts,
    oneid,
    org,
    segments,
    session,
    sop,
    staff,
    tags,
    wecom,
    workbench,
)
from siyu.web.deps import LANG_COOKIE, SESSION_COOKIE, cookie_secure, locale_of
from siyu.web.render import field_error_text, html

STATIC = Path(__file__).with_name("static")
# The only files served out of node_modules: name → path inside node_modules.
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "echarts.min.js": "echarts/dist/echarts.min.js",
}
UNCONSOLE = ("/api/", "/static/")


def node_modules() -> Path:
    """``SIYU_NODE_MODULES``, else ``node_modules`` beside the nearest ``package.json`` above
    this package (a source checkout), else in the working directory."""
    configured = get_settings().node_modules
    if configured is not None:
        return configured.expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "package.json").is_file():
            return parent / "node_modules"
    return Path.cwd() / "node_modules"


vendor_router = APIRouter(include_in_schema=False)


@vendor_router.get("/static/vendor/{name}")
def vendor(name: str) -> Response:
    rel = VENDOR.get(name)
    path = node_modules() / rel if rel else None
    if path is None or not path.is_file():
        raise NotFound("http.not_found")
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


def render_error(
    request: Request, status: int, code: str, errors: list[FieldError], params: dict[str, Any]
) -> Response:
    """The console's error page; a 401 sends the browser to the sign-in page instead."""
    if status == 401:
        target = "/login?expired=1" if code == "auth.session_expired" else "/login"
        response: Response
        if request.headers.get("hx-request"):
            # htmx would swap the login page into the current one; make it navigate instead.
            response = Response(status_code=200, headers={"HX-Redirect": target})
        else:
            response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    locale = locale_of(request)
    return html(
        request,
        "error.html",
        {
            "status": status,
            "code": code,
            "message": translate(f"errors.{code}", locale, **params),
            "details": [field_error_text(e, locale) for e in errors],
        },
        status=status,
    )


async def language_switch(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """``GET /any/page?lang=en`` stores the choice in a cookie and reloads the clean URL."""
    lang = request.query_params.get("lang")
    # One leading slash only: "//evil.example" would be a protocol-relative open redirect.
    path = "/" + request.url.path.lstrip("/")
    if lang is None or request.method != "GET" or path.startswith(UNCONSOLE):
        return await call_next(request)
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    response = RedirectResponse(path + (f"?{urlencode(rest)}" if rest else ""), status_code=303)
    if lang in LOCALES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            path="/",
            samesite="lax",
            secure=cookie_secure(request),
            httponly=True,
        )
    return response


def install(app: FastAPI) -> None:
    app.state.render_error = render_error
    app.middleware("http")(language_switch)
    app.include_router(vendor_router)
    routers = (
        session,
        org,
        staff,
        customers,
        oneid,
        tags,
        segments,
        sop,
        channels,
        metrics,
        metrics_contracts,
        apikeys,
        audit,
        workbench,
        wecom,
        content_koc,
        content,
    )
    for module in routers:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
