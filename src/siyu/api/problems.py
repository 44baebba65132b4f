"""Errors as RFC 9457 problem+json: ``{"type", "title", "status", "code", "errors"}``.

The title is translated by ``Accept-Language`` (zh-CN by default); ``code`` is stable.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from siyu.core.errors import FieldError, SiyuError
from siyu.core.i18n import normalise_locale, translate
from siyu.core.ids import new_id

log = logging.getLogger("siyu.api")
PROBLEM = "application/problem+json"


def problem(
    request: Request,
    status: int,
    code: str,
    errors: list[FieldError] | None = None,
    /,
    **params: Any,
) -> JSONResponse:
    locale = normalise_locale(request.headers.get("accept-language"))
    body: dict[str, Any] = {
        "type": f"urn:siyu:problem:{code}",
        "title": translate(f"errors.{code}", locale, **params),
        "status": status,
        "code": code,
    }
    if params:
        body["params"] = {k: str(v) for k, v in params.items()}
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def respond(
    request: Request,
    status: int,
    code: str,
    errors: list[FieldError] | None = None,
    /,
    **params: Any,
) -> Response:
    """Problem+json for the API; the console registers ``app.state.render_error`` for HTML."""
    if not is_api(request):
        render = getattr(request.app.state, "render_error", None)
        if render is not None:
            response: Response = render(request, status, code, errors or [], params)
            return response
    return problem(request, status, code, errors, **params)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(SiyuError)
    async def _siyu(request: Request, exc: SiyuError) -> Response:
        return respond(request, exc.status, exc.code, exc.errors, **exc.params)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:]
            errors.append(
                FieldError(
                    code=f"invalid.{err.get('type', 'value')}",
                    field=".".join(loc) or None,
                    reason=str(err.get("msg", "")).removeprefix("Value error, "),
                )
            )
        json_broken = any(e.code == "invalid.json_invalid" for e in errors)
        if json_broken:
            return problem(request, 400, "http.malformed_body", errors, reason=errors[0].reason)
        return problem(request, 422, "validation.failed", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {405: "http.method_not_allowed", 413: "http.too_large"}.get(
            exc.status_code, "http.not_found"
        )
        params = {"limit": str(exc.detail)} if exc.status_code == 413 else {}
        return respond(request, exc.status_code, code, **params)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        ref = new_id()
        log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
        return respond(request, 500, "internal.error", ref=ref)
