"""Rendering console pages: the Jinja2 environment, the page layout context, form state.

Every visible string goes through the catalogue: templates call ``t("ui.nav.org")``; role,
scope and unit-kind labels are ``t("ui.role." ~ role)`` and so on.

    return page(con, "org.html", brand, "org", tree=tree)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from siyu import __version__
from siyu.core.errors import FieldError, SiyuError
from siyu.core.i18n import catalogue, translate
from siyu.core.money import format_fen
from siyu.org import queries
from siyu.org.models import Brand, OrgUnit
from siyu.org.permissions import permissions_on
from siyu.web.deps import Console, locale_of

TEMPLATES = Path(__file__).with_name("templates")

# Console responses are same-origin only: no inline scripts, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Navigation: (key, path suffix, permission needed to see it).
NAV = (
    ("overview", "", "org.read"),
    ("workbench", "/workbench", "customers.write"),
    ("customers", "/customers", "customers.read"),
    ("oneid_reviews", "/oneid/reviews", "customers.merge"),
    ("tags", "/tags", "customers.read"),
    ("segments", "/segments", "customers.read"),
    ("sop", "/sops", "customers.read"),
    ("wecom", "/wecom", "wecom.manage"),
    ("channels", "/channels", "channels.manage"),
    ("content", "/content", "customers.read"),
    ("metrics", "/metrics", "metrics.read"),
    ("org", "/org", "org.read"),
    ("staff", "/staff", "org.read"),
    ("api_keys", "/api-keys", "apikeys.manage"),
    ("audit", "/audit", "audit.read"),
)


def _localtime(value: datetime | str | None, tz: str = "Asia/Shanghai") -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        # facts read from the lake may carry ISO strings rather than datetimes
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the lake stores UTC
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(value: int | None) -> str:
    """Integer fen as ``¥1,234.50``; never floats."""
    return "—" if value is None else format_fen(int(value))


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["localtime"] = _localtime
env.filters["pretty"] = _pretty
env.filters["yuan"] = _yuan
env.globals["version"] = __version__


def translator(locale: str) -> Any:
    def t(key: str, **params: Any) -> str:
        return translate(key, locale, **params)

    return t


def has_key(key: str, locale: str) -> bool:
    return key in catalogue(locale)


def field_error_text(err: FieldError, locale: str) -> str:
    """A field error for people: the catalogue's wording for its code, else its reason."""
    key = f"ui.{err.code}"
    if has_key(key, locale):
        return translate(key, locale, reason=err.reason)
    return err.reason or err.code


def report_view(report: dict[str, Any], locale: str) -> dict[str, Any]:
    """An import report with each row error's text in the viewer's language where known."""
    errors = [
        {**e, "text": field_error_text(FieldError(**e), locale)} for e in report.get("errors", [])
    ]
    return {**report, "errors": errors}


# Which form field a domain error is about, so it can be shown next to that field.
ERROR_FIELDS = {
    "org.unit_code_taken": "code",
    "org.parent_not_found": "parent",
    "org.username_taken": "username",
    "org.wecom_userid_taken": "wecom_userid",
    "org.unit_not_found": "unit",
    "org.scope_needs_unit": "unit",
    "org.cannot_grant_role": "role",
    "org.cannot_grant_scope": "scope",
    "org.agency_scope_without_agency": "scope",
    "org.staff_not_found": "username",
    "org.already_member": "username",
    "auth.password_too_short": "password",
    "customers.bad_split": "identity",
    "customers.split_relinked": "identity",
    "customers.merge_needs_two": "other",
    "customers.no_identity": "other",
}


@dataclass
class FormState:
    """A form's entered values and its errors (general message plus per-field messages)."""

    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    code: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)

    def error(self, name: str) -> str:
        return self.errors.get(name, "")

    @classmethod
    def failed(cls, exc: SiyuError, values: dict[str, Any], locale: str) -> FormState:
        state = cls(values=values, message=exc.message(locale), code=exc.code)
        for err in exc.errors:
            if err.field:
                name = err.field.split(".")[0]
                state.errors.setdefault(name, field_error_text(err, locale))
        related = ERROR_FIELDS.get(exc.code)
        if related:
            state.errors.setdefault(related, state.message)
        return state


def html(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    locale = locale_of(request)
    # Where the language toggle reloads: this page, or for a POST result its GET twin.
    here = request.url.path if request.method == "GET" else context.get("canonical", "/")
    ctx: dict[str, Any] = {
        "request": request,
        "locale": locale,
        "t": translator(locale),
        "here": here,
        **context,
    }
    body = env.get_template(template).render(ctx)
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def unit_options(units: list[OrgUnit]) -> list[tuple[str, str]]:
    """(code, label) pairs for a <select>, indented by depth so the tree shape shows."""
    return [(u.code, "\u00a0\u00a0" * u.depth + f"{u.name} ({u.code})") for u in units]


def nav_items(brand: Brand, perms: frozenset[str], active: str) -> list[dict[str, Any]]:
    return [
        {"key": key, "href": f"/b/{brand.slug}{suffix}", "active": key == active}
        for key, suffix, perm in NAV
        if perm in perms
    ]


def page(
    con: Console, template: str, brand: Brand | None, active: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page inside the console layout (top bar, brand switcher, navigation)."""
    perms = permissions_on(con.actor, queries.brand_ref(brand)) if brand else frozenset()
    nav = nav_items(brand, perms, active) if brand else []
    ctx = {
        "user": con.staff,
        "brands": queries.accessible_brands(con.db, con.actor),
        "brand": brand,
        "perms": perms,
        "nav": nav,
        "canonical": next((item["href"] for item in nav if item["active"]), "/"),
        "csrf": con.session.csrf_token,
        "active": active,
        **context,
    }
    return html(con.request, template, ctx, status)
