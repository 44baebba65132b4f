"""Content pages: the library ``/b/{brand}/content`` (search by name; filter by kind, folder,
tag and validity; a new-material form), a material's editor ``/b/{brand}/content/{id}`` (its
fields, a live preview re-rendered by htmx as the template is typed — for a chosen customer,
PII masked —, save-time errors shown next to the field with line and column, "send test"
through the outbox, recent test sends and versions) and its performance
``/b/{brand}/content/{id}/stats`` (sends, delivered, replies, clicks, orders, GMV within the
attribution window; A/B/n results of the SOP steps that use it, with lift and p-value; its
tracking links with their clicks).

Reads go through ``content.queries`` (library: ``org.read``; previews and measures:
``customers.read`` and the actor's data scope); writes are ``content.actions`` functions and
``content.testsend.send_test`` (``content.write``), which check the permission and audit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.content import actions, queries, testsend
from siyu.content.models import MATERIAL_KINDS
from siyu.content.schemas import MaterialIn, MaterialOut, MaterialPatch, PreviewIn
from siyu.content.templating import VARIABLES
from siyu.core.clock import local_midnight_utc, utcnow
from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.core.validation import parse
from siyu.customers import queries as customer_queries
from siyu.org.models import Brand
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, field_error_text, html, page, translator

router = APIRouter(include_in_schema=False)

VALIDITY = ("valid", "upcoming", "expired")
DONE = ("created", "saved", "test_sent", "unchanged")
# Body fields the editor shows per kind, besides the text template every kind may carry.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "text": (),
    "link": ("title", "desc", "url", "pic_url"),
    "image": ("url",),
    "miniprogram": ("title", "appid", "page", "pic_url"),
    "file": ("url", "filename"),
    "video": ("url", "cover_url"),
    "poster": ("background_url",),
}
BODY_FIELDS = ("text", "title", "desc", "url", "pic_url", "appid", "page", "filename", "cover_url",
               "background_url")  # fmt: skip
META_FIELDS = ("name", "tags", "folder_id", "valid_from", "valid_until", "fallbacks", "note")


def _bad(name: str, code: str, reason: str) -> Invalid:
    return Invalid("validation.failed", errors=[FieldError(code, field=name, reason=reason)])


# ---------------------------------------------------------------- form <-> material


def _day(b: Brand, name: str, text: str, end: bool = False) -> datetime | None:
    """A date typed in the form as the brand-local midnight it means (the next one for an
    end date: valid *through* that day)."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _bad(name, "invalid.date_from_datetime_parsing", "YYYY-MM-DD") from None
    return local_midnight_utc(day + timedelta(days=1) if end else day, b.timezone)


def _local_day(b: Brand, at: datetime | None, end: bool = False) -> str:
    if at is None:
        return ""
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(b.timezone))
    return (local.date() - timedelta(days=1) if end else local.date()).isoformat()


def _fallbacks(text: str) -> dict[str, str]:
    """``name=value`` lines (or ``name: value``) as the fallbacks mapping."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sep = "=" if "=" in line else ":"
        name, found, value = line.partition(sep)
        if not found or not name.strip():
            raise _bad("fallbacks", "invalid.value_error", f"line {i}: name=value")
        out[name.strip()] = value.strip()
    return out


def _tags(text: str) -> list[str]:
    return [t for t in (p.strip() for p in text.replace("，", ",").split(",")) if t]


def _body(kind: str, values: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("text", *KIND_FIELDS.get(kind, ())):
        if values.get(name):
            body[name] = values[name]
    return body


def form_values(b: Brand, m: MaterialOut) -> dict[str, str]:
    values = {name: str(m.body.get(name) or "") for name in BODY_FIELDS}
    values.update(
        {
            "kind": m.kind,
            "name": m.name,
            "tags": ", ".join(m.tags),
            "folder_id": m.folder_id or "",
            "valid_from": _local_day(b, m.valid_from),
            "valid_until": _local_day(b, m.valid_until, end=True),
            "fallbacks": "\n".join(f"{k}={v}" for k, v in sorted(m.fallbacks.items())),
            "note": "",
        }
    )
    return values


def _posted(form: Any) -> dict[str, str]:
    names = ("kind", *BODY_FIELDS, *META_FIELDS, "customer_id")
    values = {name: text_field(form, name) for name in names}
    # a template keeps its line breaks and leading spaces
    raw = form.get("text")
    if isinstance(raw, str):
        values["text"] = raw.replace("\r\n", "\n").rstrip()
    return values


def failed(exc: SiyuError, values: dict[str, str], locale: str) -> FormState:
    """The form state for a refused save: each problem next to its field (``body.text`` is
    the ``text`` field, ``fallbacks.nickname`` the fallbacks box)."""
    state = FormState(values=values, message=exc.message(locale), code=exc.code)
    for err in exc.errors:
        if not err.field:
            continue
        parts = err.field.split(".")
        name = parts[1] if parts[0] == "body" and len(parts) > 1 else parts[0]
        name = name.split("[")[0]
        if name == "attachments" or name not in (*BODY_FIELDS, *META_FIELDS, "kind"):
            name = "text"
        state.errors.setdefault(name, field_error_text(err, locale))
    if exc.code.startswith("content.template") and "text" not in state.errors:
        state.errors["text"] = state.message
    if exc.code == "content.folder_not_found":
        state.errors.setdefault("folder_id", state.message)
    if exc.code == "content.bad_validity":
        state.errors.setdefault("valid_until", state.message)
    return state


def template_error(exc: SiyuError, locale: str) -> dict[str, Any]:
    """Where a template was refused: the message, the line and column, the offending name."""
    line = exc.params.get("line")
    return {
        "code": exc.code,
        "text": exc.message(locale),
        "line": line,
        "column": exc.params.get("column"),
        "name": exc.params.get("name") or "",
        "fields": [
            (e.field or "", field_error_text(e, locale)) for e in exc.errors if e.field or e.reason
        ],
    }


# ---------------------------------------------------------------- the library


def _options(con: Console, b: Brand) -> dict[str, Any]:
    t = translator(con.locale)
    folders = queries.list_folders(con.db, con.actor, b)
    return {
        "kind_options": [(k, t(f"ui.content.kind.{k}")) for k in MATERIAL_KINDS],
        "folder_options": [(f.id, f.name) for f in folders],
        "folders": {f.id: f.name for f in folders},
        "validity_options": [(v, t(f"ui.content.validity.{v}")) for v in VALIDITY],
    }


def _validity(m: MaterialOut, now: datetime) -> str:
    if m.valid_now:
        return "valid"
    if m.valid_from is not None and m.valid_from > now:
        return "upcoming"
    return "expired"


def library_page(
    con: Console,
    b: Brand,
    filters: dict[str, str],
    status: int = 200,
    form: FormState | None = None,
) -> Response:
    error: SiyuError | None = None
    rows: list[MaterialOut] = []
    try:
        if filters["validity"] and filters["validity"] not in VALIDITY:
            raise Invalid("content.bad_filter", name="validity", value=filters["validity"])
        if filters["kind"] and filters["kind"] not in MATERIAL_KINDS:
            raise Invalid("content.bad_filter", name="kind", value=filters["kind"])
        rows = queries.list_materials(
            con.db,
            con.actor,
            b,
            q=filters["q"],
            kind=filters["kind"] or None,
            tag=filters["tag"] or None,
            folder_id=filters["folder"] or None,
            status="archived" if filters["archived"] else "active",
        )
    except SiyuError as exc:
        error = exc
    now = utcnow()
    items = [{"m": m, "validity": _validity(m, now)} for m in rows]
    if filters["validity"]:
        items = [i for i in items if i["validity"] == filters["validity"]]
    return page(
        con,
        "content_library.html",
        b,
        "content",
        error.status if error else status,
        items=items,
        filters=FormState(values=filters),
        form=form or FormState(values={"kind": "text"}),
        error={"text": error.message(con.locale), "code": error.code} if error else {},
        variables=list(VARIABLES),
        canonical=f"/b/{b.slug}/content",
        **_options(con, b),
    )


@router.get("/b/{brand}/content")
def library(
    brand: str,
    con: Con,
    q: str = "",
    kind: str = "",
    folder: str = "",
    tag: str = "",
    validity: str = "",
    archived: str = "",
) -> Response:
    b = con.brand(brand, "org.read")
    filters = {
        "q": q.strip()[:100],
        "kind": kind,
        "folder": folder,
        "tag": tag.strip()[:40],
        "validity": validity,
        "archived": "1" if archived else "",
    }
    return library_page(con, b, filters)


@router.post("/b/{brand}/content")
def create(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "content.write")
    values = _posted(form)
    try:
        body = parse(
            MaterialIn,
            {
                "kind": values["kind"] or "text",
                "name": values["name"],
                "body": _body(values["kind"] or "text", values),
                "fallbacks": _fallbacks(values["fallbacks"]),
                "tags": _tags(values["tags"]),
                "folder_id": values["folder_id"] or None,
                "valid_from": _day(b, "valid_from", values["valid_from"]),
                "valid_until": _day(b, "valid_until", values["valid_until"], end=True),
            },
        )
        m = actions.create_material(con.db, con.actor, b, body)
    except SiyuError as exc:
        con.db.rollback()
        empty = {k: "" for k in ("q", "kind", "folder", "tag", "validity", "archived")}
        return library_page(con, b, empty, exc.status, form=failed(exc, values, con.locale))
    return RedirectResponse(f"/b/{b.slug}/content/{m.id}?done=created", status_code=303)


# ---------------------------------------------------------------- the editor


def _customers(con: Console, b: Brand) -> list[tuple[str, str]]:
    """Recent customers the actor may see, for the preview (masked name and phone)."""
    try:
        rows = customer_queries.search(con.db, con.actor, b, "", limit=20)
    except SiyuError:
        return []
    return [(r.id, " · ".join(p for p in (r.name, r.phone) if p) or r.id) for r in rows]


def _preview(con: Console, b: Brand, material_id: str, values: dict[str, str]) -> dict[str, Any]:
    """The rendered template, or the reason it cannot be rendered."""
    try:
        out = queries.preview(
            con.db,
            con.actor,
            b,
            PreviewIn(
                material_id=material_id,
                text=values.get("text", ""),
                customer_id=values.get("customer_id") or None,
                fallbacks=_fallbacks(values.get("fallbacks", "")),
            ),
        )
    except SiyuError as exc:
        return {"error": template_error(exc, con.locale)}
    return {"out": out}


def editor_page(
    con: Console,
    b: Brand,
    material_id: str,
    status: int = 200,
    form: FormState | None = None,
    error: dict[str, Any] | None = None,
    test_error: str = "",
    done: str = "",
) -> Response:
    m = queries.get_material(con.db, con.actor, b, material_id)
    customers = _customers(con, b)
    state = form or FormState(values=form_values(b, m))
    if not state.value("customer_id") and customers:
        state.values["customer_id"] = customers[0][0]
    preview = _preview(con, b, m.id, state.values)
    t = translator(con.locale)
    return page(
        con,
        "content_edit.html",
        b,
        "content",
        status,
        mat=m,
        form=state,
        editor_error=error,
        preview=preview,
        customer_options=customers,
        kind_fields=KIND_FIELDS.get(m.kind, ()),
        versions=queries.versions(con.db, con.actor, b, m.id)[:10],
        tests=testsend.recent_tests(con.db, con.actor, b, m.id),
        test_error=test_error,
        channel_options=[(c, t(f"ui.content.test.{c}")) for c in testsend.TEST_CHANNELS],
        variables=VARIABLES,
        done=done if done in DONE else "",
        canonical=f"/b/{b.slug}/content/{m.id}",
        **_options(con, b),
    )


@router.get("/b/{brand}/content/{material}")
def editor(brand: str, material: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, "org.read")
    return editor_page(con, b, material, done=done)


@router.get("/b/{brand}/content/{material}/preview")
def preview(
    brand: str, material: str, con: Con, text: str = "", customer_id: str = "", fallbacks: str = ""
) -> Response:
    """The preview panel alone (htmx swaps it in while the template is typed)."""
    b = con.brand(brand, "org.read")
    values = {"text": text[:20_000], "customer_id": customer_id, "fallbacks": fallbacks[:5000]}
    result = _preview(con, b, material, values)
    return html(con.request, "content_preview.html", {"brand": b, "preview": result})


@router.post("/b/{brand}/content/{material}")
def save(brand: str, material: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "content.write")
    current = queries.get_material(con.db, con.actor, b, material)
    values = _posted(form)
    values["kind"] = current.kind
    try:
        patch = parse(
            MaterialPatch,
            {
                "name": values["name"] or None,
                "body": _body(current.kind, values),
                "fallbacks": _fallbacks(values["fallbacks"]),
                "tags": _tags(values["tags"]),
                "folder_id": values["folder_id"] or None,
                "valid_from": _day(b, "valid_from", values["valid_from"]),
                "valid_until": _day(b, "valid_until", values["valid_until"], end=True),
                "note": values["note"] or None,
            },
        )
        m = actions.update_material(con.db, con.actor, b, current.id, patch)
    except SiyuError as exc:
        con.db.rollback()
        return editor_page(
            con,
            b,
            current.id,
            exc.status,
            form=failed(exc, values, con.locale),
            error=template_error(exc, con.locale),
        )
    done = "saved" if m.version != current.version else "unchanged"
    return RedirectResponse(f"/b/{b.slug}/content/{m.id}?done={done}", status_code=303)


@router.post("/b/{brand}/content/{material}/send-test")
def send_test(brand: str, material: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "content.write")
    channel = text_field(form, "channel") or "console"
    customer = text_field(form, "customer_id") or None
    try:
        testsend.send_test(con.db, con.actor, b, material, channel=channel, customer_id=customer)
    except SiyuError as exc:
        con.db.rollback()
        return editor_page(con, b, material, exc.status, test_error=exc.message(con.locale))
    return RedirectResponse(f"/b/{b.slug}/content/{material}?done=test_sent", status_code=303)


# ---------------------------------------------------------------- performance


def _steps_using(con: Console, b: Brand, material_id: str) -> list[tuple[str, str, int]]:
    """(SOP key, name, step) of the touch steps that carry this material as A/B/n variants."""
    from siyu.sop import queries as sop_queries

    out = []
    for sop in sop_queries.list_sops(con.db, con.actor, b):
        for i, step in enumerate(sop.steps):
            names = {(v.get("content") or {}).get("content_id") for v in step.get("variants") or []}
            if material_id in names:
                out.append((sop.key, sop.name, i))
    return out


def _int(name: str, text: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise Invalid("content.bad_filter", name=name, value=text)
    return int(text)


@router.get("/b/{brand}/content/{material}/stats")
def stats(
    brand: str, material: str, con: Con, days: str = "", window: str = "", metric: str = ""
) -> Response:
    b = con.brand(brand, "customers.read")
    m = queries.get_material(con.db, con.actor, b, material)
    values = {"days": days or "30", "window": window or "7", "metric": metric or "click"}
    error: SiyuError | None = None
    row = None
    tables: list[dict[str, Any]] = []
    try:
        n_days = _int("days", days, 30, 1, 366)
        n_window = _int("window", window, 7, 1, queries.MAX_WINDOW_DAYS)
        if values["metric"] not in queries.METRICS:
            raise Invalid("content.bad_metric", metric=metric, known=", ".join(queries.METRICS))
        perf = queries.performance(con.db, con.actor, b, days=n_days, window_days=n_window)
        row = next((r for r in perf.rows if r.material_id == m.id), None)
        for key, name, step in _steps_using(con, b, m.id):
            result = queries.variant_results(
                con.db,
                con.actor,
                b,
                key,
                step,
                metric=values["metric"],
                window_days=n_window,
                days=max(n_days, 1),
            )
            tables.append({"sop": key, "name": name, "step": step, "result": result})
    except SiyuError as exc:
        error = exc
    t = translator(con.locale)
    return page(
        con,
        "content_stats.html",
        b,
        "content",
        error.status if error else 200,
        mat=m,
        row=row,
        tables=tables,
        links=queries.list_links(con.db, con.actor, b, material_id=m.id, limit=50),
        form=FormState(values=values),
        metric_options=[(x, t(f"ui.content.metric.{x}")) for x in queries.METRICS],
        error={"text": error.message(con.locale), "code": error.code} if error else {},
        canonical=f"/b/{b.slug}/content/{m.id}/stats",
        query=urlencode(values),
    )
