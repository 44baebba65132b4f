"""Platform limits of materials, checked on save with precise errors.

WeCom's customer-contact messages (``add_msg_template``, welcome messages, 1:1 sends) allow a
text of at most 4,000 bytes (UTF-8) and at most 9 attachments; a link card's title is at most
128 bytes and its description 512 bytes; a mini-program card needs an ``appid`` and a page
path ending in ``.html`` and its title is at most 64 bytes; images and videos at most 10 MB,
files 20 MB. :func:`validate_body` reports every problem (code, field path, reason), not only
the first, and returns the template variables the body uses.

    variables = validate_body("link", {"title": "…", "url": "https://…"}, allowed_domains)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from siyu.content import templating
from siyu.core.errors import FieldError, Invalid

TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9
LINK_TITLE_BYTES = 128
LINK_DESC_BYTES = 512
URL_BYTES = 2048
MINI_TITLE_BYTES = 64
IMAGE_BYTES = 10 * 1024 * 1024
VIDEO_BYTES = 10 * 1024 * 1024
FILE_BYTES = 20 * 1024 * 1024
TEMPLATED = ("text", "title", "desc")

# kind → (required fields, optional fields)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "text": (("text",), ()),
    "image": (("url",), ("media_id", "size_bytes")),
    "link": (("title", "url"), ("desc", "pic_url")),
    "miniprogram": (("title", "appid", "page"), ("pic_url", "media_id")),
    "file": (("url", "filename"), ("media_id", "size_bytes")),
    "video": (("url",), ("media_id", "size_bytes", "cover_url")),
    "poster": (("background_url",), ("qr", "qr_url")),
}
_COMMON = ("text", "attachments")
_SIZE = {"image": IMAGE_BYTES, "video": VIDEO_BYTES, "file": FILE_BYTES}


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "\\" not in value


def _check(
    kind: str, body: dict[str, Any], path: str, errors: list[FieldError], used: set[str]
) -> None:
    if kind not in FIELDS:
        errors.append(FieldError("content.bad_kind", path + "kind", reason=str(kind)))
        return
    required, optional = FIELDS[kind]
    known = set(required) | set(optional) | set(_COMMON) | {"kind"}
    for name in sorted(set(body) - known):
        errors.append(FieldError("content.unknown_field", path + name, reason=f"{kind}: {name}"))
    for name in required:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            code = "content.field_required"
            if kind == "miniprogram" and name in ("appid", "page"):
                code = f"content.miniprogram_{name}_required"
            errors.append(FieldError(code, path + name, reason=f"{kind} needs {name}"))
    for name in sorted(set(body) & (known - {"kind", "attachments", "qr", "size_bytes"})):
        if body[name] is not None and not isinstance(body[name], str):
            errors.append(FieldError("content.not_text", path + name, reason="a string"))
    for name in TEMPLATED:
        value = body.get(name)
        if isinstance(value, str) and value:
            try:
                used.update(templating.check(value, field=path + name).variables)
            except Invalid as exc:
                errors.extend(exc.errors)
    limits = {"text": TEXT_BYTES}
    if kind == "link":
        limits |= {"title": LINK_TITLE_BYTES, "desc": LINK_DESC_BYTES}
    if kind == "miniprogram":
        limits |= {"title": MINI_TITLE_BYTES}
    for name, limit in limits.items():
        value = body.get(name)
        if isinstance(value, str) and nbytes(value) > limit:
            errors.append(
                FieldError(
                    f"content.{'text' if name == 'text' else kind + '_' + name}_too_long",
                    path + name,
                    reason=f"{nbytes(value)} bytes > {limit} (UTF-8)",
                )
            )
    for name in ("url", "pic_url", "cover_url", "background_url", "qr_url"):
        value = body.get(name)
        if isinstance(value, str) and value:
            if nbytes(value) > URL_BYTES:
                errors.append(
                    FieldError("content.url_too_long", path + name, reason=f"> {URL_BYTES}")
                )
            elif not _http_url(value):
                errors.append(FieldError("content.bad_url", path + name, reason=value[:100]))
    if kind == "miniprogram":
        appid, page = body.get("appid"), body.get("page")
        if isinstance(appid, str) and appid and not (appid.startswith("wx") and len(appid) == 18):
            errors.append(FieldError("content.miniprogram_bad_appid", path + "appid", reason=appid))
        if isinstance(page, str) and page and ".html" not in page:
            errors.append(
                FieldError("content.miniprogram_bad_page", path + "page", reason="needs .html")
            )
    size = body.get("size_bytes")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            errors.append(FieldError("content.bad_size", path + "size_bytes", reason=str(size)))
        elif kind in _SIZE and size > _SIZE[kind]:
            errors.append(
                FieldError(
                    f"content.{kind}_too_large", path + "size_bytes", reason=f"> {_SIZE[kind]}"
                )
            )


def validate_body(kind: str, body: dict[str, Any], *, field: str = "body") -> list[str]:
    """Check a material body against the platform limits; return its template variables.
    Raises :class:`Invalid` (code of the first problem) listing every problem."""
    errors: list[FieldError] = []
    used: set[str] = set()
    _check(kind, body, f"{field}.", errors, used)
    attachments = body.get("attachments") or []
    if not isinstance(attachments, list):
        errors.append(FieldError("content.bad_attachments", f"{field}.attachments", reason="list"))
        attachments = []
    if len(attachments) > MAX_ATTACHMENTS:
        errors.append(
            FieldError(
                "content.too_many_attachments",
                f"{field}.attachments",
                reason=f"{len(attachments)} > {MAX_ATTACHMENTS}",
            )
        )
    for i, item in enumerate(attachments[: MAX_ATTACHMENTS + 1]):
        path = f"{field}.attachments[{i}]."
        if not isinstance(item, dict):
            errors.append(FieldError("content.bad_attachments", path[:-1], reason="an object"))
            continue
        sub = {k: v for k, v in item.items() if k != "kind"}
        if "attachments" in sub:
            errors.append(
                FieldError("content.bad_attachments", path + "attachments", reason="nested")
            )
            sub.pop("attachments")
        kind_i = str(item.get("kind", ""))
        if kind_i == "text":
            errors.append(FieldError("content.bad_kind", path + "kind", reason="text attachment"))
            continue
        _check(kind_i, sub, path, errors, used)
    if errors:
        first = errors[0]
        raise Invalid(first.code, errors=errors, field=first.field, reason=first.reason)
    return sorted(used)


def check_fallbacks(fallbacks: dict[str, Any]) -> None:
    """Fallbacks name known variables and are short plain text (no template syntax)."""
    errors = []
    for name, value in fallbacks.items():
        if name not in templating.VARIABLES:
            errors.append(FieldError("content.template_unknown_variable", f"fallbacks.{name}"))
        elif not isinstance(value, str) or len(value) > 200 or "{" in value:
            errors.append(FieldError("content.bad_fallback", f"fallbacks.{name}", reason="text"))
    if errors:
        raise Invalid(errors[0].code, errors=errors, name=errors[0].field, field=errors[0].field)
