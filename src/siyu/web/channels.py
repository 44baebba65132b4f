"""Channel pages: the outbox ``/b/{brand}/channels`` (state counts per channel, the
dead-letter list with filters by channel, SOP, reason and date, retry one or many) and the
brand's channel settings ``/b/{brand}/channels/settings`` (webhook, SMS with its template
registry, e-mail; secrets write-only, shown masked).

Reads go through ``channels.queries``, writes through ``channels.actions`` (both
``channels.manage``; retries and settings changes are audited).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.channels import actions, queries
from siyu.channels.base import REASONS
from siyu.channels.models import CONFIGURABLE
from siyu.channels.schemas import OUTBOX_STATUSES
from siyu.core.clock import local_midnight_utc
from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.org.models import Brand
from siyu.sop import queries as sop_queries
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, page, translator

router = APIRouter(include_in_schema=False)

PERMISSION = "channels.manage"
FILTERS = ("status", "channel", "sop", "reason", "since", "until")
MAX_RETRY = 500


def reason_label(locale: str, code: str | None) -> str:
    return translator(locale)(f"ui.channels.reason.{code}") if code in REASONS else code or ""


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(
            "validation.failed",
            errors=[FieldError("invalid.date", name, reason="YYYY-MM-DD")],
        ) from exc


@router.get("/b/{brand}/channels")
def outbox_page(
    brand: str,
    con: Con,
    status: str = "failed",
    channel: str = "",
    sop: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
    done: str = "",
    n: int = 0,
) -> Response:
    b = con.brand(brand, PERMISSION)
    values = {
        "status": status,
        "channel": channel,
        "sop": sop,
        "reason": reason,
        "since": since,
        "until": until,
    }
    return _outbox(con, b, values, notice={"done": done, "n": n} if done == "retried" else {})


def _outbox(
    con: Console,
    b: Brand,
    values: dict[str, str],
    status: int = 200,
    notice: dict[str, Any] | None = None,
    error: SiyuError | None = None,
) -> Response:
    t = translator(con.locale)
    rows: list[Any] = []
    form = FormState(values=values)
    try:
        start, end = _day(values["since"], "since"), _day(values["until"], "until")
        rows = queries.outbox(
            con.db,
            con.actor,
            b,
            status=values["status"] or None,
            channel=values["channel"] or None,
            sop=values["sop"] or None,
            reason=values["reason"] or None,
            since=local_midnight_utc(start, b.timezone) if start else None,
            until=local_midnight_utc(end + timedelta(days=1), b.timezone) if end else None,
            limit=200,
        )
    except SiyuError as exc:
        form = FormState.failed(exc, values, con.locale)
        error, status = error or exc, exc.status
    summary = queries.summary(con.db, con.actor, b)
    sops = sop_queries.list_sops(con.db, con.actor, b)
    channels = sorted({c.channel for c in summary.channels} | set(CONFIGURABLE) | {"console"})
    return page(
        con,
        "channels.html",
        b,
        "channels",
        status,
        rows=[{"r": r, "reason_label": reason_label(con.locale, r.reason)} for r in rows],
        summary=summary,
        reason_labels={k: reason_label(con.locale, k) for k in summary.reasons},
        form=form,
        notice=notice or {},
        error={"text": error.message(con.locale), "code": error.code} if error else {},
        status_options=[(s, t(f"ui.channels.status.{s}")) for s in OUTBOX_STATUSES],
        channel_options=[(c, c) for c in channels],
        sop_options=[(s.key, s.name) for s in sops],
        reason_options=[(r, f"{reason_label(con.locale, r)} ({r})") for r in REASONS],
        back=urlencode({k: v for k, v in values.items() if v}),
        canonical=f"/b/{b.slug}/channels",
    )


@router.post("/b/{brand}/channels/retry")
def retry(brand: str, con: Con, form: Form) -> Response:
    """Retry the ticked dead letters (``ids``), or the one named by ``id``."""
    b = con.brand(brand, PERMISSION)
    ids = [str(v) for v in form.getlist("ids") if isinstance(v, str) and v][:MAX_RETRY]
    if text_field(form, "id"):
        ids = [text_field(form, "id")]
    values = {k: text_field(form, k) for k in FILTERS}
    values["status"] = values["status"] or "failed"
    if not ids:
        err = Invalid(
            "validation.failed", errors=[FieldError("invalid.missing", "ids", reason="none")]
        )
        return _outbox(con, b, values, 422, error=err)
    try:
        done = actions.retry(con.db, con.actor, b, ids)
    except SiyuError as exc:
        return _outbox(con, b, values, exc.status, error=exc)
    query = {k: v for k, v in values.items() if v} | {"done": "retried", "n": str(len(done))}
    return RedirectResponse(f"/b/{b.slug}/channels?{urlencode(query)}", status_code=303)


# ---------------------------------------------------------------- settings


def templates_text(templates: dict[str, Any]) -> str:
    """The SMS template registry as editable lines: ``code | template id | vars | sign``."""
    lines = []
    for code, tpl in templates.items():
        parts = [code, str(tpl.get("template_id", "")), ",".join(tpl.get("variables", []))]
        if tpl.get("sign_name"):
            parts.append(str(tpl["sign_name"]))
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def parse_templates(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or not parts[0] or not parts[1] or len(parts) > 4:
            raise Invalid(
                "validation.failed",
                errors=[
                    FieldError(
                        "invalid.template_line",
                        "templates",
                        row=number,
                        reason=f"line {number}: code | template id | variables | sign name",
                    )
                ],
            )
        variables = [v.strip() for v in parts[2].split(",") if v.strip()] if len(parts) > 2 else []
        entry: dict[str, Any] = {"template_id": parts[1], "variables": variables}
        if len(parts) > 3 and parts[3]:
            entry["sign_name"] = parts[3]
        out[parts[0]] = entry
    return out


def _settings_values(stored: Any) -> dict[str, Any]:
    cfg = dict(stored.config)
    values: dict[str, Any] = {
        "enabled": stored.enabled or not stored.configured,
        **{k: v for k, v in cfg.items() if k != "templates"},
    }
    if stored.channel == "sms":
        values["templates"] = templates_text(cfg.get("templates") or {})
    if stored.channel == "email" and "smtp_starttls" not in cfg:
        values["smtp_starttls"] = True
    return values


def settings_page(
    con: Console,
    b: Brand,
    status: int = 200,
    failed: tuple[str, FormState] | None = None,
    done: str = "",
) -> Response:
    stored = queries.settings(con.db, con.actor, b)
    forms = {s.channel: FormState(values=_settings_values(s)) for s in stored}
    if failed is not None:
        forms[failed[0]] = failed[1]
    return page(
        con,
        "channels_settings.html",
        b,
        "channels",
        status,
        stored={s.channel: s for s in stored},
        forms=forms,
        done=done if done in CONFIGURABLE else "",
        canonical=f"/b/{b.slug}/channels/settings",
    )


@router.get("/b/{brand}/channels/settings")
def settings_view(brand: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, PERMISSION)
    return settings_page(con, b, done=done)


FIELDS = {
    "webhook": ("url",),
    "sms": ("endpoint", "key_id", "sign_name", "templates"),
    "email": ("from_address", "smtp_host", "smtp_port", "smtp_user"),
}


@router.post("/b/{brand}/channels/settings/{channel}")
def settings_save(brand: str, channel: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, PERMISSION)
    if channel not in CONFIGURABLE:
        raise Invalid("channels.unknown_channel", channel=channel[:40])
    values: dict[str, Any] = {name: text_field(form, name) for name in FIELDS[channel]}
    values["enabled"] = form.get("enabled") == "1"
    values["clear_secret"] = form.get("clear_secret") == "1"
    if channel == "email":
        values["smtp_starttls"] = form.get("smtp_starttls") == "1"
    secret = text_field(form, "secret")
    try:
        body: dict[str, Any] = {k: v for k, v in values.items() if v != ""}
        if channel == "sms":
            body["templates"] = parse_templates(values["templates"])
        if secret:
            body["secret"] = secret
        actions.save_settings(con.db, con.actor, b, channel, body)
    except SiyuError as exc:
        state = FormState.failed(exc, values, con.locale)
        if exc.code == "channels.secret_required":
            state.errors.setdefault("secret", state.message)
        return settings_page(con, b, exc.status, failed=(channel, state))
    return RedirectResponse(
        f"/b/{b.slug}/channels/settings?{urlencode({'done': channel})}", status_code=303
    )
