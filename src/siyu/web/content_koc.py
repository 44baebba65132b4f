"""UGC / KOC pages: the review queue ``/b/{brand}/content/koc`` (notes by status, platform and
text, with what each approved note brought; a submit form for staff) and a note's page
``/b/{brand}/content/koc/{note}`` (the post, the review — approve with a reward, a channel
``state`` and a tracking link, or reject with a reason —, the reward ledger, and the customers,
orders and GMV the note brought, PII masked).

Reads go through ``content.ugc`` (``customers.read``, within the reader's data scope); writes
are ``ugc.submit_note`` (``content.submit``) and ``ugc.approve_note`` / ``ugc.reject_note``
(``content.write``), which check the permission and audit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.content import ugc
from siyu.content.models import KOC_PLATFORMS, KOC_STATUSES, KocNote
from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.core.money import parse_yuan
from siyu.core.validation import parse
from siyu.org.models import Brand
from siyu.web.deps import Con, Console, Form, text_field, upload_of
from siyu.web.render import FormState, page, report_view, translator

router = APIRouter(include_in_schema=False)

DONE = ("submitted", "approved", "rejected")
SUBMIT_FIELDS = ("url", "title", "platform", "summary", "customer_id", "author")
APPROVE_FIELDS = ("reward_yuan", "reward_points", "state", "target_url", "attribution_days")


def _options(con: Console) -> dict[str, Any]:
    t = translator(con.locale)
    return {
        "platform_options": [(p, t(f"ui.koc.platform.{p}")) for p in KOC_PLATFORMS],
        "status_options": [(s, t(f"ui.koc.status.{s}")) for s in KOC_STATUSES],
    }


def _error(con: Console, exc: SiyuError | None) -> dict[str, str]:
    return {"text": exc.message(con.locale), "code": exc.code} if exc else {}


# ---------------------------------------------------------------- the queue


def queue_page(
    con: Con,
    b: Brand,
    *,
    status: str = "",
    platform: str = "",
    q: str = "",
    code: int = 200,
    form: FormState | None = None,
    report: dict[str, Any] | None = None,
    import_error: str = "",
) -> Response:
    filters = {"status": status, "platform": platform, "q": q}
    error: SiyuError | None = None
    notes: list[KocNote] = []
    try:
        notes = ugc.list_notes(
            con.db, con.actor, b, status=status or None, platform=platform or None, query=q
        )
    except SiyuError as exc:
        error = exc
    approved = [n for n in notes if n.status == "approved"]
    stats = ugc.attribution(con.db, con.actor, b, approved, rows=False) if approved else {}
    return page(
        con,
        "content_koc.html",
        b,
        "content",
        error.status if error else code,
        notes=notes,
        stats=stats,
        counts=ugc.status_counts(con.db, con.actor, b),
        authors=ugc.staff_names(con.db, notes),
        filters=FormState(values=filters),
        form=form or FormState(values={"platform": "xiaohongshu"}),
        report=report,
        import_error=import_error,
        error=_error(con, error),
        canonical=f"/b/{b.slug}/content/koc",
        **_options(con),
    )


@router.get("/b/{brand}/content/koc")
def queue(brand: str, con: Con, status: str = "", platform: str = "", q: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    if status == "all":
        status = ""
    return queue_page(con, b, status=status, platform=platform, q=q.strip())


@router.post("/b/{brand}/content/koc")
def submit(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, ugc.SUBMIT)
    values = {name: text_field(form, name) for name in SUBMIT_FIELDS}
    try:
        data = parse(ugc.KocNoteIn, {k: v for k, v in values.items() if v})
        note = ugc.submit_note(con.db, con.actor, b, data, source="console")
    except SiyuError as exc:
        con.db.rollback()
        state = FormState.failed(exc, values, con.locale)
        if exc.code == "customers.not_found":
            state.errors.setdefault("customer_id", state.message)
        return queue_page(con, b, code=exc.status, form=state)
    query = urlencode({"done": "submitted"})
    return RedirectResponse(f"/b/{b.slug}/content/koc/{note.id}?{query}", status_code=303)


@router.post("/b/{brand}/content/koc/import")
def import_notes(brand: str, con: Con, form: Form) -> Response:
    """Notes from a CSV or XLSX file (url, title, platform, summary, customer_id, author)."""
    from pathlib import Path

    from siyu.core.tabular import read_rows

    b = con.brand(brand, ugc.SUBMIT)
    try:
        upload = upload_of(form)
        if upload is None:
            no_file = translator(con.locale)("ui.import.no_file")
            return queue_page(con, b, code=422, import_error=no_file)
        name, data = upload
        read = list(read_rows(Path(name), data))
        result = ugc.import_notes(
            con.db, con.actor, b, [row for _, row in read], lines=[n for n, _ in read]
        )
    except SiyuError as exc:
        con.db.rollback()
        return queue_page(con, b, code=exc.status, import_error=exc.message(con.locale))
    return queue_page(con, b, report=report_view(result.as_dict(), con.locale))


# ---------------------------------------------------------------- one note


def note_page(
    con: Con,
    b: Brand,
    note_id: str,
    *,
    code: int = 200,
    approve: FormState | None = None,
    reject: FormState | None = None,
    done: str = "",
) -> Response:
    note = ugc.get_note(con.db, con.actor, b, note_id)
    stats = ugc.attribution(con.db, con.actor, b, [note])[note.id]
    link = None
    if note.link_id:
        from siyu.content.models import TrackingLink

        link = con.db.get(TrackingLink, note.link_id)
    defaults = {
        "reward_yuan": "",
        "reward_points": "",
        "state": note.channel_state or "",
        "target_url": "",
        "attribution_days": str(ugc.attribution_days(note)),
    }
    return page(
        con,
        "content_koc_note.html",
        b,
        "content",
        code,
        note=note,
        stats=stats,
        link=link,
        rewards=ugc.rewards(con.db, con.actor, b, note),
        author=ugc.staff_names(con.db, [note]).get(note.staff_id or "", ""),
        approve=approve or FormState(values=defaults),
        reject=reject or FormState(),
        done=done if done in DONE else "",
        canonical=f"/b/{b.slug}/content/koc/{note.id}",
        **_options(con),
    )


@router.get("/b/{brand}/content/koc/{note}")
def note_detail(brand: str, note: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    return note_page(con, b, note, done=done)


def _decision(values: dict[str, str]) -> ugc.KocApproval:
    """The approval form as ``KocApproval``: the cash reward typed in yuan, stored in fen."""
    data: dict[str, Any] = {}
    text = values["reward_yuan"]
    if text:
        try:
            data["reward_fen"] = int(parse_yuan(text))
        except ValueError:
            raise Invalid(
                "validation.failed",
                errors=[_field("reward_yuan", "invalid.value_error", "¥ 0.00")],
            ) from None
    for name in ("reward_points", "attribution_days"):
        if values[name]:
            if not values[name].isdigit():
                raise Invalid(
                    "validation.failed",
                    errors=[_field(name, "invalid.int_parsing", values[name])],
                )
            data[name] = int(values[name])
    for name in ("state", "target_url"):
        if values[name]:
            data[name] = values[name]
    return parse(ugc.KocApproval, data)


def _field(name: str, code: str, reason: str) -> FieldError:
    return FieldError(code, field=name, reason=reason)


@router.post("/b/{brand}/content/koc/{note}/approve")
def approve(brand: str, note: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, ugc.REVIEW)
    values = {name: text_field(form, name) for name in APPROVE_FIELDS}
    try:
        row = ugc.approve_note(con.db, con.actor, b, note, _decision(values))
    except SiyuError as exc:
        con.db.rollback()
        state = FormState.failed(exc, values, con.locale)
        if exc.code in ("content.redirect_refused", "content.bad_domain"):
            state.errors.setdefault("target_url", state.message)
        if "reward_fen" in state.errors:
            state.errors.setdefault("reward_yuan", state.errors["reward_fen"])
        return note_page(con, b, note, code=exc.status, approve=state)
    query = urlencode({"done": "approved"})
    return RedirectResponse(f"/b/{b.slug}/content/koc/{row.id}?{query}", status_code=303)


@router.post("/b/{brand}/content/koc/{note}/reject")
def reject(brand: str, note: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, ugc.REVIEW)
    values = {"reason": text_field(form, "reason")}
    try:
        row = ugc.reject_note(con.db, con.actor, b, note, values["reason"])
    except SiyuError as exc:
        con.db.rollback()
        return note_page(
            con, b, note, code=exc.status, reject=FormState.failed(exc, values, con.locale)
        )
    query = urlencode({"done": "rejected"})
    return RedirectResponse(f"/b/{b.slug}/content/koc/{row.id}?{query}", status_code=303)
