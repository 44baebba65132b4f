"""SOP pages: the list ``/b/{brand}/sops`` (status, priority, audience, live counts,
enable/disable, new from a template), an SOP's page ``/b/{brand}/sops/{sop}`` (its steps as a
readable list, a JSON editor, its recent decisions), the decision explorer
``/b/{brand}/sops/decisions`` ("why didn't this customer get X?"), the dry-run
``/b/{brand}/sops/simulate`` (nothing is written) and the brand's breathing policy
``/b/{brand}/sops/policy``.

Reads go through ``sop.queries`` and ``sop.engine.simulate`` (``customers.read``); every write
is a ``sop.actions`` function (``sop.write``), which checks the permission and audits. Every
deferred or suppressed touch shows its reason code with its label (``ui.sop.reason.<code>``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from siyu.core.clock import local_today
from siyu.core.errors import Invalid, SiyuError
from siyu.core.validation import parse
from siyu.org.models import Brand, Staff
from siyu.sop import actions, engine, queries
from siyu.sop.models import TOUCH_STATUSES
from siyu.sop.planner import REASONS
from siyu.sop.policy import CHANNELS, GUIDE_CHANNEL, MassQuota
from siyu.sop.schemas import SopOut, SopPatch
from siyu.sop.templates import TEMPLATES
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, has_key, page, translator
from siyu.web.tags import rule_error

router = APIRouter(include_in_schema=False)

KEY = re.compile(r"[a-z][a-z0-9_]{1,63}")
DONE = ("created", "updated", "enabled", "disabled", "policy")
EDITABLE = (
    "name",
    "description",
    "priority",
    "audience",
    "schedule",
    "goal_event",
    "holdout_pct",
    "steps",
    "policy",
)
MAX_DAYS = 31
MAX_DEFINITION = 100_000
CAP_WINDOWS = ("day", "week", "month")
POLICY_INTS = ("min_gap_minutes", "backoff_after", "backoff_days", "guide_capacity")


def _notice(done: str, sop: str) -> dict[str, str]:
    if done in DONE and (not sop or KEY.fullmatch(sop)):
        return {"done": done, "sop": sop}
    return {}


def _error(con: Console, exc: SiyuError | None) -> dict[str, str]:
    return {"text": exc.message(con.locale), "code": exc.code} if exc else {}


def reason_label(locale: str, code: str | None) -> str:
    """The label of a reason (or cause) code; the code itself when it has none."""
    if not code:
        return ""
    key = f"ui.sop.reason.{code}"
    return translator(locale)(key) if has_key(key, locale) else code


# ---------------------------------------------------------------- the list


def list_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    notice: dict[str, str] | None = None,
    error: SiyuError | None = None,
) -> Response:
    sops = queries.list_sops(con.db, con.actor, b)
    templates = queries.templates(con.db, con.actor, b)
    return page(
        con,
        "sop_list.html",
        b,
        "sop",
        status,
        sops=sops,
        templates=templates,
        template_options=[(t.key, f"{t.name} ({t.key})") for t in templates],
        form=form or FormState(values={"template": next(iter(TEMPLATES), "")}),
        notice=notice or {},
        error=_error(con, error),
        canonical=f"/b/{b.slug}/sops",
    )


@router.get("/b/{brand}/sops")
def list_sops(brand: str, con: Con, done: str = "", sop: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    return list_page(con, b, notice=_notice(done, sop))


@router.post("/b/{brand}/sops/from-template")
def from_template(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "sop.write")
    values = {name: text_field(form, name) for name in ("template", "key", "name", "segment")}
    try:
        overrides: dict[str, Any] = {"key": values["key"] or None, "name": values["name"] or None}
        if values["segment"]:
            overrides["audience"] = {"kind": "segment", "segment": values["segment"]}
        sop = actions.create_from_template(con.db, con.actor, b, values["template"], **overrides)
    except SiyuError as exc:
        state = FormState.failed(exc, values, con.locale)
        if exc.code == "sop.exists":
            state.errors.setdefault("key", state.message)
        if exc.code == "segments.not_found":
            state.errors.setdefault("segment", state.message)
        if exc.code.startswith("sop.template"):
            state.errors.setdefault("template", state.message)
        return list_page(con, b, exc.status, form=state)
    query = urlencode({"done": "created"})
    return RedirectResponse(f"/b/{b.slug}/sops/{sop.key}?{query}", status_code=303)


def _switch(con: Console, brand: str, sop: str, form: Any, on: bool) -> Response:
    b = con.brand(brand, "sop.write")
    done = actions.enable_sop if on else actions.disable_sop
    row = done(con.db, con.actor, b, sop)
    query = {"done": "enabled" if on else "disabled", "sop": row.key}
    if text_field(form, "back") == "detail":
        return RedirectResponse(f"/b/{b.slug}/sops/{row.key}?{urlencode(query)}", status_code=303)
    return RedirectResponse(f"/b/{b.slug}/sops?{urlencode(query)}", status_code=303)


# ---------------------------------------------------------------- decisions


def decision_rows(con: Console, found: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "d": d,
            "reason_label": reason_label(con.locale, d.reason),
            "cause_label": reason_label(con.locale, d.cause) if d.cause != d.reason else "",
        }
        for d in found
    ]


@router.get("/b/{brand}/sops/decisions")
def decisions(
    brand: str,
    con: Con,
    customer: str = "",
    sop: str = "",
    status: str = "",
    reason: str = "",
) -> Response:
    b = con.brand(brand, "customers.read")
    values = {"customer": customer.strip(), "sop": sop, "status": status, "reason": reason}
    t = translator(con.locale)
    found: list[Any] = []
    error: SiyuError | None = None
    try:
        found = queries.decisions(
            con.db,
            con.actor,
            b,
            customer_id=values["customer"] or None,
            sop_key=sop or None,
            status=status or None,
            reason=reason or None,
            limit=200,
        )
    except SiyuError as exc:
        error = exc
    sops = queries.list_sops(con.db, con.actor, b)
    return page(
        con,
        "sop_decisions.html",
        b,
        "sop",
        error.status if error else 200,
        rows=decision_rows(con, found),
        form=FormState(values=values),
        sop_options=[(s.key, s.name) for s in sops],
        status_options=[(s, t(f"ui.sop.status.{s}")) for s in TOUCH_STATUSES],
        reason_options=[(r, f"{reason_label(con.locale, r)} ({r})") for r in REASONS[1:]],
        error=_error(con, error),
        canonical=f"/b/{b.slug}/sops/decisions",
    )


# ---------------------------------------------------------------- the dry-run


def _staff_names(con: Console, ids: set[str]) -> dict[str, str]:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    rows = con.db.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids)))
    return {str(i): str(n) for i, n in rows}


def simulation_view(con: Console, sim: dict[str, Any]) -> dict[str, Any]:
    """The dry-run's answer as tables and a stacked bar chart of sends per SOP and day."""
    days = sim["days"]
    keys = sorted(
        set(sim.get("sops", {})) | {k for d in days for k in d["sent_by_sop"]},
        key=lambda k: (-int(sim.get("sops", {}).get(k, {}).get("priority", 0)), k),
    )
    reasons: Counter[str] = Counter()
    for d in days:
        reasons.update(d["reasons"])
    reason_rows = []
    for name, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        status, _, code = name.partition(":")
        reason_rows.append(
            {"status": status, "code": code, "label": reason_label(con.locale, code), "n": n}
        )
    guide_ids = {g for d in days for g in d["guides"]}
    names = _staff_names(con, guide_ids)
    guides = [
        {
            "id": g,
            "name": names.get(g, g or "—"),
            "days": [d["guides"].get(g, {}) for d in days],
        }
        for g in sorted(guide_ids, key=lambda g: (names.get(g, g), g))
    ]
    pressure = sorted(((int(k), v) for k, v in sim["pressure"].items()), key=lambda kv: kv[0])
    chart = {
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll"},
        "grid": {"left": 40, "right": 16, "top": 36, "bottom": 28},
        "xAxis": {"type": "category", "data": [d["day"][5:] for d in days]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "name": k,
                "type": "bar",
                "stack": "sent",
                "data": [d["sent_by_sop"].get(k, 0) for d in days],
            }
            for k in keys
        ],
    }
    return {
        "days": days,
        "sop_keys": keys,
        "reasons": reason_rows,
        "guides": guides,
        "pressure": pressure,
        "chart": chart,
        "total_sent": sum(sum(d["sent_by_sop"].values()) for d in days),
    }


@router.get("/b/{brand}/sops/simulate")
def simulate(brand: str, con: Con, start: str = "", days: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    today = local_today(b.timezone)
    values = {"start": start.strip() or today.isoformat(), "days": days.strip() or "7"}
    view: dict[str, Any] | None = None
    state = FormState(values=values)
    status = 200
    if start:
        try:
            try:
                first = date.fromisoformat(values["start"])
            except ValueError:
                raise Invalid(
                    "sop.bad_filter", name="start", value=start, known="YYYY-MM-DD"
                ) from None
            if not values["days"].isdigit() or not 1 <= int(values["days"]) <= MAX_DAYS:
                raise Invalid("sop.bad_filter", name="days", value=days, known=f"1–{MAX_DAYS}")
            sim = engine.simulate(con.db, con.actor, b, first, int(values["days"]))
            view = simulation_view(con, sim)
        except SiyuError as exc:
            state = FormState.failed(exc, values, con.locale)
            status = exc.status
        finally:
            con.db.rollback()  # a dry run: nothing it loaded or touched stays in the session
    return page(
        con,
        "sop_simulate.html",
        b,
        "sop",
        status,
        form=state,
        sim=view,
        max_days=MAX_DAYS,
        last_day=(
            (date.fromisoformat(values["start"]) + timedelta(days=int(values["days"]) - 1))
            if view
            else None
        ),
        canonical=f"/b/{b.slug}/sops/simulate",
    )


# ---------------------------------------------------------------- the breathing policy


def _policy_values(settings: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    caps = settings.get("caps") or {}
    for w in CAP_WINDOWS:
        v = caps.get(w)
        values[f"caps_{w}"] = "" if v is None else str(v)
    values["channel_caps"] = json.dumps(
        settings.get("channel_caps") or {}, ensure_ascii=False, indent=1, sort_keys=True
    )
    for name in (*POLICY_INTS, "mass_quota", "quiet_start", "quiet_end", "automation_channel"):
        values[name] = str(settings.get(name, ""))
    return values


def _bad(setting: str, reason: str) -> Invalid:
    return Invalid("sop.policy_invalid", setting=setting, reason=reason)


def _policy_settings(values: dict[str, str]) -> dict[str, Any]:
    """The form's text as the settings ``set_policy`` takes."""
    caps: dict[str, int | None] = {}
    for w in CAP_WINDOWS:
        text = values[f"caps_{w}"]
        if text and not text.isdigit():
            raise _bad("caps", f"{w}: a whole number, or empty for no cap")
        caps[w] = int(text) if text else None
    try:
        channel_caps = json.loads(values["channel_caps"] or "{}")
    except ValueError as exc:
        raise _bad("channel_caps", f"not JSON: {exc}") from None
    if not isinstance(channel_caps, dict):
        raise _bad("channel_caps", 'a JSON object like {"sms": {"day": 1}}')
    out: dict[str, Any] = {"caps": caps, "channel_caps": channel_caps}
    for name in POLICY_INTS:
        text = values[name]
        if not text.isdigit():
            raise _bad(name, "not a non-negative integer")
        out[name] = int(text)
    for name in ("mass_quota", "quiet_start", "quiet_end", "automation_channel"):
        out[name] = values[name]
    return out


def policy_page(
    con: Console, b: Brand, status: int = 200, form: FormState | None = None, done: bool = False
) -> Response:
    policy = actions.get_policy(con.db, con.actor, b)
    settings = policy.as_dict()
    t = translator(con.locale)
    return page(
        con,
        "sop_policy.html",
        b,
        "sop",
        status,
        policy=settings,
        form=form or FormState(values=_policy_values(settings)),
        quota_options=[(str(q), t(f"ui.sop.quota.{q}")) for q in MassQuota],
        channel_options=[(c, c) for c in CHANNELS if c != GUIDE_CHANNEL],
        done=done,
        canonical=f"/b/{b.slug}/sops/policy",
    )


@router.get("/b/{brand}/sops/policy")
def policy(brand: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    return policy_page(con, b, done=done == "policy")


@router.post("/b/{brand}/sops/policy")
def save_policy(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "sop.write")
    names = (
        *(f"caps_{w}" for w in CAP_WINDOWS),
        "channel_caps",
        *POLICY_INTS,
        "mass_quota",
        "quiet_start",
        "quiet_end",
        "automation_channel",
    )
    values = {name: text_field(form, name) for name in names}
    try:
        actions.set_policy(con.db, con.actor, b, _policy_settings(values))
    except SiyuError as exc:
        state = FormState.failed(exc, values, con.locale)
        setting = str(exc.params.get("setting") or "")
        if setting == "caps":
            for w in CAP_WINDOWS:
                state.errors.setdefault(f"caps_{w}", state.message)
        elif setting == "quiet_hours":
            state.errors.setdefault("quiet_start", state.message)
            state.errors.setdefault("quiet_end", state.message)
        elif setting in values:
            state.errors.setdefault(setting, state.message)
        return policy_page(con, b, exc.status, form=state)
    return RedirectResponse(f"/b/{b.slug}/sops/policy?done=policy", status_code=303)


# ---------------------------------------------------------------- one SOP


def _target(value: Any, i: int, n: int) -> int | None:
    """A jump target as a 1-based step number (``None``: the end)."""
    j = i + 1 if value is None else int(value)
    return j + 1 if j < n else None


def step_view(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps as the readable list shows them: number, type, fields, jump targets."""
    n = len(steps)
    out = []
    for i, s in enumerate(steps):
        item: dict[str, Any] = {"n": i + 1, "index": i, "type": s.get("type", ""), "s": s}
        if item["type"] == "branch":
            item["then"] = _target(s.get("then"), i, n)
            item["else"] = _target(s.get("else"), i, n)
        elif item["type"] == "split":
            item["goto"] = [
                (name, share, _target((s.get("goto") or {}).get(name), i, n))
                for name, share in (s.get("variants") or {}).items()
            ]
        elif item["type"] != "exit":
            item["next"] = _target(None, i, n)
        out.append(item)
    return out


def editable(sop: SopOut) -> str:
    data = {name: getattr(sop, name) for name in EDITABLE}
    return json.dumps(data, ensure_ascii=False, indent=2)


def _editor_error(con: Console, exc: SiyuError) -> dict[str, Any]:
    """A definition's error: the message, each field's problem, and for a condition in the
    tag language the place in it (``where``, line, column, the offending part marked)."""
    rule = exc.params.get("rule")
    return {
        "text": exc.message(con.locale),
        "code": exc.code,
        "where": str(exc.params.get("where") or ""),
        "fields": [(e.field or "", e.reason or e.code) for e in exc.errors if e.field or e.reason],
        "rule": rule_error(exc, rule, con.locale) if isinstance(rule, str) and rule else None,
    }


def detail_page(
    con: Console,
    b: Brand,
    key: str,
    status: int = 200,
    text: str | None = None,
    editor_error: dict[str, Any] | None = None,
    notice: dict[str, str] | None = None,
    window: int = 14,
) -> Response:
    sop = queries.show_sop(con.db, con.actor, b, key)
    recent = queries.decisions(con.db, con.actor, b, sop_key=sop.key, limit=50)
    return page(
        con,
        "sop_detail.html",
        b,
        "sop",
        status,
        sop=sop,
        effect=holdout_effect(con, b, sop, window),
        window=window,
        windows=EFFECT_WINDOWS,
        steps=step_view(sop.steps),
        definition=editable(sop) if text is None else text,
        editor_error=editor_error,
        rows=decision_rows(con, recent),
        notice=notice or {},
        canonical=f"/b/{b.slug}/sops/{sop.key}",
    )


EFFECT_WINDOWS = (7, 14, 30, 60)


def holdout_effect(con: Console, b: Brand, sop: SopOut, window: int) -> dict[str, Any] | None:
    """What the SOP adds over its holdout (``metrics.attribution.sop_effect``) for whoever may
    read metrics; None when the SOP keeps no holdout or the viewer may not see metrics."""
    from siyu.metrics import attribution
    from siyu.org.permissions import permissions_on
    from siyu.org.queries import brand_ref

    if not (sop.holdout_pct or sop.counts.holdout):
        return None
    if "metrics.read" not in permissions_on(con.actor, brand_ref(b)):
        return None
    eff = attribution.sop_effect(con.db, con.actor, b, sop.key, window_days=window)
    return eff.as_dict()


@router.get("/b/{brand}/sops/{sop}")
def detail(brand: str, sop: str, con: Con, done: str = "", window: int = 14) -> Response:
    b = con.brand(brand, "customers.read")
    window = window if window in EFFECT_WINDOWS else 14
    return detail_page(con, b, sop, notice=_notice(done, ""), window=window)


@router.post("/b/{brand}/sops/{sop}/edit")
def update(brand: str, sop: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "sop.write")
    text = text_field(form, "definition")
    current = actions.sop_by_key(con.db, b, sop)  # sop.not_found: a 404 page
    t = translator(con.locale)
    try:
        data = json.loads(text) if len(text) <= MAX_DEFINITION else None
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        reason = getattr(exc, "msg", str(exc))
        message = t("ui.sop.editor.bad_json", line=line, column=column, reason=reason)
        err = {"text": message, "code": "json", "where": "", "fields": [], "rule": None}
        return detail_page(con, b, current.key, 422, text=text, editor_error=err)
    if not isinstance(data, dict):
        message = t("ui.sop.editor.not_object")
        err = {"text": message, "code": "json", "where": "", "fields": [], "rule": None}
        return detail_page(con, b, current.key, 422, text=text, editor_error=err)
    try:
        patch = parse(SopPatch, data)
        actions.update_sop(con.db, con.actor, b, current.key, patch)
    except SiyuError as exc:
        con.db.rollback()
        return detail_page(
            con, b, current.key, exc.status, text=text, editor_error=_editor_error(con, exc)
        )
    query = urlencode({"done": "updated"})
    return RedirectResponse(f"/b/{b.slug}/sops/{current.key}?{query}", status_code=303)


@router.post("/b/{brand}/sops/{sop}/enable")
def enable(brand: str, sop: str, con: Con, form: Form) -> Response:
    return _switch(con, brand, sop, form, True)


@router.post("/b/{brand}/sops/{sop}/disable")
def disable(brand: str, sop: str, con: Con, form: Form) -> Response:
    return _switch(con, brand, sop, form, False)
