"""Tag pages: the library ``/b/{brand}/tags`` (groups, tags with their health, compute now,
new tags and groups), a tag's edit page ``/b/{brand}/tags/{tag}/edit`` (rule, pause/resume,
delete), the health page ``/b/{brand}/tags/health`` (failing, stale and never computed
tags first, then the recent runs) and the settings page ``/b/{brand}/tags/settings`` (the
brand-set parameters of the built-in computed groups, and what the last full run derived).

The rule builder: while a rule is typed, htmx asks ``GET /b/{brand}/tags/check?rule=…`` for a
fragment with the canonical rule, its live count (``segments.count``: a rule is a valid
segment definition), its JSON tree (``lang.to_json``) or, for a rule that does not check, the
reason with the offending part of the line marked.

Reads go through ``tags.queries`` (``customers.read``); every write is a ``tags.actions``
function (``tags.write``), which checks the permission and writes the audit entry.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import Invalid, NotFound, SiyuError
from siyu.core.money import format_fen, parse_yuan
from siyu.core.validation import parse
from siyu.org.models import Brand
from siyu.tags import actions, lang, queries, rules, segments
from siyu.tags.builtin import DEFAULT_SETTINGS
from siyu.tags.schemas import (
    RunIn,
    SettingsIn,
    TagGroupIn,
    TagGroupOut,
    TagIn,
    TagOut,
    TagPatch,
)
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, html, page, translator

router = APIRouter(include_in_schema=False)

KEY = re.compile(r"[a-z][a-z0-9_]{1,63}")
RUN_ID = re.compile(r"[0-9A-Za-z]{1,40}")
TAG_FIELDS = ("key", "name", "group", "rule", "description", "stale_after_hours")
GROUP_FIELDS = ("key", "name", "kind", "description")
EDIT_FIELDS = ("name", "rule", "description", "stale_after_hours")
DONE = ("created", "updated", "deleted", "paused", "resumed", "group_created")
RUN_MODES = ("auto", "full", "incremental")
HEALTH_ORDER = {"failing": 0, "stale": 1, "never": 2}
MAX_RULE = 4000


# ---------------------------------------------------------------- the rule builder


def _marked_line(text: str, position: dict[str, Any]) -> dict[str, Any]:
    """The line of ``text`` an error points at, split around the offending part."""
    offset = max(0, min(int(position.get("offset", 0)), len(text)))
    start = text.rfind("\n", 0, offset) + 1
    stop = text.find("\n", offset)
    stop = len(text) if stop < 0 else stop
    end = int(position.get("end", offset + 1) or offset + 1)
    end = max(offset + 1, min(end, stop))
    return {
        "line": int(position.get("line", 1)),
        "column": int(position.get("column", offset - start + 1)),
        "before": text[start:offset],
        "marked": text[offset:end],
        "after": text[end:stop],
    }


def rule_error(exc: SiyuError, text: str, locale: str) -> dict[str, Any]:
    """What the builder shows about a rule that does not check: the message, the reason and,
    when the error has a position, the offending line with the bad part marked."""
    position = exc.params.get("position")
    return {
        "code": exc.code,
        "message": exc.message(locale),
        "reason": str(exc.params.get("reason") or ""),
        "at": _marked_line(text, position) if isinstance(position, dict) and text else None,
    }


def check_rule(
    con: Console, b: Brand, text: str, definition: bool = False, preview: bool = False
) -> dict[str, Any]:
    """The builder's answer for a rule (``definition``: a segment definition, which may name
    tags as ``tag_<key>``): canonical text, JSON tree and live count, or the error."""
    out: dict[str, Any] = {
        "text": text,
        "canonical": "",
        "tree": None,
        "count": None,
        "rows": [],
        "error": None,
        "count_error": "",
    }
    if not text.strip():
        return out
    try:
        if len(text) > MAX_RULE:
            raise Invalid("tags.parse_error", line=1, column=MAX_RULE, reason="too long")
        if definition:
            canonical = segments.check(con.db, b, text)
        else:
            canonical = rules.normalise(con.db, b, text, None)
    except Invalid as exc:
        out["error"] = rule_error(exc, text, con.locale)
        return out
    out["canonical"] = canonical
    out["tree"] = lang.to_json(lang.parse(canonical))
    try:
        if preview:
            out["count"], out["rows"] = segments.preview(con.db, con.actor, b, canonical)
        else:
            out["count"] = segments.count(con.db, con.actor, b, canonical)
    except SiyuError as exc:
        out["count_error"] = exc.message(con.locale)
    return out


@router.get("/b/{brand}/tags/check")
def check(brand: str, con: Con, rule: str = "") -> Response:
    b = con.brand(brand, "tags.write")
    result = check_rule(con, b, rule)
    return check_answer(con, b, result, "rule")


def check_answer(con: Console, b: Brand, result: dict[str, Any], field: str) -> Response:
    """The builder's fragment for htmx; for a plain request, a page with the form."""
    segment = field == "definition"
    if con.request.headers.get("hx-request"):
        context = {"brand": b, "check": result, "segment": segment}
        return html(con.request, "tags_check.html", context)
    back = f"/b/{b.slug}/segments" if segment else f"/b/{b.slug}/tags"
    return page(
        con,
        "rule_check.html",
        b,
        "segments" if segment else "tags",
        check=result,
        segment=segment,
        field=field,
        endpoint=con.request.url.path,
        back=back,
        canonical=con.request.url.path,
    )


# ---------------------------------------------------------------- the library


def _tag(groups: list[TagGroupOut], key: str) -> tuple[TagGroupOut, TagOut]:
    for g in groups:
        for t in g.tags:
            if t.key == key:
                return g, t
    raise NotFound("tags.not_found", tag=key)


def _notice(done: str, tag: str) -> dict[str, str]:
    if done in DONE and KEY.fullmatch(tag):
        return {"done": done, "tag": tag}
    return {}


def library_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    group_form: FormState | None = None,
    notice: dict[str, str] | None = None,
    run_id: str = "",
    error: SiyuError | None = None,
) -> Response:
    groups = queries.tag_library(con.db, con.actor, b)
    t = translator(con.locale)
    run = None
    if run_id:
        run = next((r for r in queries.runs(con.db, con.actor, b) if r.id == run_id), None)
    editable = [g for g in groups if g.kind in ("rule", "manual")]
    counts = {h: 0 for h in HEALTH_ORDER}
    for g in groups:
        for tag in g.tags:
            if tag.health in counts:
                counts[tag.health] += 1
    return page(
        con,
        "tags.html",
        b,
        "tags",
        status,
        groups=groups,
        health_counts=counts,
        group_options=[(g.key, f"{g.name} · {t('ui.tags.kind.' + g.kind)}") for g in editable],
        kind_options=[(k, t(f"ui.tags.kind.{k}")) for k in ("rule", "manual")],
        mode_options=[(m, t(f"ui.tags.mode.{m}")) for m in RUN_MODES],
        run_form=FormState(values={"mode": "auto"}),
        form=form or FormState(values={"group": "rules", "stale_after_hours": "26"}),
        group_form=group_form or FormState(values={"kind": "rule"}),
        check=check_rule(con, b, form.value("rule")) if form and form.value("rule") else None,
        notice=notice or {},
        run=run,
        error=error.message(con.locale) if error else "",
        error_code=error.code if error else "",
        canonical=f"/b/{b.slug}/tags",
    )


@router.get("/b/{brand}/tags")
def library(brand: str, con: Con, done: str = "", tag: str = "", run: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    run_id = run if RUN_ID.fullmatch(run) else ""
    return library_page(con, b, notice=_notice(done, tag), run_id=run_id)


def _rule_errors(state: FormState, exc: SiyuError) -> FormState:
    """Errors of the rule language belong next to the rule field."""
    if exc.code.startswith("tags.") and ("position" in exc.params or "rule" in exc.code):
        state.errors.setdefault("rule", state.message)
    if exc.code in ("tags.exists",):
        state.errors.setdefault("key", state.message)
    if exc.code in ("tags.group_not_found", "tags.wrong_group"):
        state.errors.setdefault("group", state.message)
    return state


@router.post("/b/{brand}/tags")
def create_tag(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    values = {name: text_field(form, name) for name in TAG_FIELDS}
    try:
        groups = queries.tag_library(con.db, con.actor, b)
        kind = next((g.kind for g in groups if g.key == values["group"]), "rule")
        data = {k: v for k, v in values.items() if v.strip()}
        data["kind"] = kind
        if kind != "rule":
            data.pop("rule", None)
        created = actions.create_tag(con.db, con.actor, b, parse(TagIn, data))
    except SiyuError as exc:
        state = _rule_errors(FormState.failed(exc, values, con.locale), exc)
        return library_page(con, b, exc.status, form=state)
    query = urlencode({"done": "created", "tag": created.key})
    return RedirectResponse(f"/b/{b.slug}/tags?{query}", status_code=303)


@router.post("/b/{brand}/tags/groups")
def create_group(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    values = {name: text_field(form, name) for name in GROUP_FIELDS}
    try:
        data = parse(TagGroupIn, {k: v for k, v in values.items() if v})
        group = actions.create_group(con.db, con.actor, b, data)
    except SiyuError as exc:
        state = FormState.failed(exc, values, con.locale)
        if exc.code == "tags.group_exists":
            state.errors.setdefault("key", state.message)
        return library_page(con, b, exc.status, group_form=state)
    query = urlencode({"done": "group_created", "tag": group.key})
    return RedirectResponse(f"/b/{b.slug}/tags?{query}", status_code=303)


@router.post("/b/{brand}/tags/compute")
def compute(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    mode = text_field(form, "mode") or "auto"
    back = "health" if text_field(form, "back") == "health" else ""
    try:
        run = actions.compute(con.db, con.actor, b, parse(RunIn, {"mode": mode}))
    except SiyuError as exc:
        if back:
            return health_page(con, b, exc.status, error=exc)
        return library_page(con, b, exc.status, error=exc)
    target = f"/b/{b.slug}/tags/health" if back else f"/b/{b.slug}/tags"
    return RedirectResponse(f"{target}?run={run.id}", status_code=303)


# ---------------------------------------------------------------- one tag


def edit_page(
    con: Console, b: Brand, key: str, status: int = 200, form: FormState | None = None
) -> Response:
    groups = queries.tag_library(con.db, con.actor, b)
    group, tag = _tag(groups, key)
    values = {
        "name": tag.name,
        "rule": tag.rule or "",
        "description": tag.description or "",
        "stale_after_hours": str(tag.stale_after_hours),
    }
    state = form or FormState(values=values)
    rule = str(state.value("rule") or "")
    return page(
        con,
        "tags_edit.html",
        b,
        "tags",
        status,
        group=group,
        tag=tag,
        form=state,
        check=check_rule(con, b, rule) if tag.kind == "rule" and rule else None,
        canonical=f"/b/{b.slug}/tags/{tag.key}/edit",
    )


@router.get("/b/{brand}/tags/{tag}/edit")
def edit(brand: str, tag: str, con: Con) -> Response:
    b = con.brand(brand, "customers.read")
    return edit_page(con, b, tag)


@router.post("/b/{brand}/tags/{tag}/edit")
def update(brand: str, tag: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    values = {name: text_field(form, name) for name in EDIT_FIELDS}
    try:
        _, current = _tag(queries.tag_library(con.db, con.actor, b), tag)
        data: dict[str, Any] = {k: v for k, v in values.items() if v and k != "rule"}
        if current.kind == "rule":
            data["rule"] = values["rule"] or None
        if "description" not in data and current.description:
            data["description"] = ""
        actions.update_tag(con.db, con.actor, b, tag, parse(TagPatch, data))
    except SiyuError as exc:
        if exc.code == "tags.not_found":
            raise
        state = _rule_errors(FormState.failed(exc, values, con.locale), exc)
        return edit_page(con, b, tag, exc.status, form=state)
    query = urlencode({"done": "updated", "tag": tag})
    return RedirectResponse(f"/b/{b.slug}/tags?{query}", status_code=303)


@router.post("/b/{brand}/tags/{tag}/status")
def set_status(brand: str, tag: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    status = "paused" if text_field(form, "status") == "paused" else "active"
    actions.update_tag(con.db, con.actor, b, tag, TagPatch(status=status))
    done = "paused" if status == "paused" else "resumed"
    query = urlencode({"done": done, "tag": tag})
    return RedirectResponse(f"/b/{b.slug}/tags?{query}", status_code=303)


@router.post("/b/{brand}/tags/{tag}/delete")
def delete(brand: str, tag: str, con: Con) -> Response:
    b = con.brand(brand, "tags.write")
    actions.delete_tag(con.db, con.actor, b, tag)
    query = urlencode({"done": "deleted", "tag": tag})
    return RedirectResponse(f"/b/{b.slug}/tags?{query}", status_code=303)


# ---------------------------------------------------------------- health


def run_errors(tags: dict[str, Any]) -> list[tuple[str, str]]:
    """(tag key, error) of each tag that failed in a run."""
    return sorted(
        (key, str(entry.get("error")))
        for key, entry in (tags or {}).items()
        if isinstance(entry, dict) and entry.get("error")
    )


def health_page(
    con: Console, b: Brand, status: int = 200, run_id: str = "", error: SiyuError | None = None
) -> Response:
    problems = queries.problems(con.db, con.actor, b)
    problems.sort(key=lambda tag: HEALTH_ORDER.get(tag.health, 9))
    runs = queries.runs(con.db, con.actor, b)
    t = translator(con.locale)
    return page(
        con,
        "tags_health.html",
        b,
        "tags",
        status,
        problems=problems,
        runs=[{"run": r, "errors": run_errors(r.tags)} for r in runs],
        run_id=run_id,
        mode_options=[(m, t(f"ui.tags.mode.{m}")) for m in RUN_MODES],
        run_form=FormState(values={"mode": "auto"}),
        error=error.message(con.locale) if error else "",
        error_code=error.code if error else "",
        canonical=f"/b/{b.slug}/tags/health",
    )


@router.get("/b/{brand}/tags/health")
def health(brand: str, con: Con, run: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    return health_page(con, b, run_id=run if RUN_ID.fullmatch(run) else "")


# ---------------------------------------------------------------- settings of computed groups

# The form fields of each computed group, with how a field's text is read: a whole number,
# a number, the value model's time unit, four cut points (whole numbers) or four cut points
# in yuan (stored in fen). Empty cut points: derived from the brand's data in a full run.
SETTINGS_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "rfm_segment": (
        ("window_days", "int"),
        ("high_from", "int"),
        ("recency", "cuts"),
        ("frequency", "cuts"),
        ("monetary", "yuan_cuts"),
    ),
    "lifecycle": (
        ("new_days", "int"),
        ("active_days", "int"),
        ("silent_days", "int"),
        ("churn_days", "int"),
        ("won_back_gap_days", "int"),
    ),
    "value_model": (
        ("horizon_days", "int"),
        ("discount_rate", "float"),
        ("unit", "unit"),
        ("penalizer", "float"),
    ),
}
SETTINGS_SECTION = {"rfm_segment": "rfm", "lifecycle": "lifecycle", "value_model": "value"}
VALUE_UNITS = ("days", "weeks")
CUT_SEPARATORS = re.compile(r"[\s,，、;；]+")
WHOLE = re.compile(r"[+-]?\d+")
FIT_PARAMS = (("bgnbd", ("r", "alpha", "a", "b")), ("gamma_gamma", ("p", "q", "gamma")))


def _yuan_text(fen: int) -> str:
    """Fen as yuan for a form field: ``5000`` → ``50``, ``1234`` → ``12.34``."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}" if cents == 0 else f"{sign}{whole}.{cents:02d}"


def _setting_text(kind: str, value: Any) -> str:
    """A stored parameter as the text of its form field."""
    if value is None:
        return ""
    if kind == "cuts" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if kind == "yuan_cuts" and isinstance(value, list):
        return ", ".join(_yuan_text(int(v)) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bad_setting(reason: str) -> Invalid:
    return Invalid("tags.bad_settings", reason=reason)


def _parse_setting(name: str, kind: str, text: str) -> Any:
    """A form field's text as the parameter ``update_settings`` expects (fen for yuan)."""
    if kind == "unit":
        return text
    if kind in ("cuts", "yuan_cuts"):
        parts = [p for p in CUT_SEPARATORS.split(text) if p]
        if not parts:
            return None
        if kind == "cuts":
            if not all(WHOLE.fullmatch(p) for p in parts):
                raise _bad_setting(f"{name}: four increasing whole numbers, or empty")
            return [int(p) for p in parts]
        try:
            return [int(parse_yuan(p)) for p in parts]
        except ValueError as exc:
            raise _bad_setting(f"{name}: amounts in yuan (at most two decimals)") from exc
    if not text:
        raise _bad_setting(f"{name} is required")
    if kind == "int":
        if not WHOLE.fullmatch(text):
            raise _bad_setting(f"{name} must be a whole number")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _bad_setting(f"{name} must be a number")
    return number


def _settings_field(group: str, exc: SiyuError) -> str:
    """The form field a settings error is about (its reason starts with the name), if any."""
    reason = str(exc.params.get("reason") or "")
    for name, _kind in SETTINGS_FIELDS.get(group, ()):
        if reason.startswith(name):
            return name
    return ""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def _derived_view(group: str, params: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    """What the last full run derived for a group, ready to show (read-only)."""
    view: dict[str, Any] = {"as_of": str(derived.get("as_of") or ""), "rows": [], "fit": []}
    if group == "rfm_segment":
        for name, kind in SETTINGS_FIELDS[group][2:]:
            cuts = derived.get(name)
            if not isinstance(cuts, list):
                continue
            if kind == "yuan_cuts":
                text = ", ".join(format_fen(int(c)) for c in cuts)
            else:
                text = ", ".join(str(c) for c in cuts)
            view["rows"].append({"name": name, "text": text, "in_use": params.get(name) is None})
    elif group == "value_model":
        fit = derived.get("fit")
        if isinstance(fit, dict):
            for model, names in FIT_PARAMS:
                values = fit.get(model)
                values = values if isinstance(values, dict) else {}
                view["fit"].append(
                    {"model": model, "params": [(n, _number(values.get(n))) for n in names]}
                )
            meta = fit.get("meta")
            meta = meta if isinstance(meta, dict) else {}
            view["customers"] = meta.get("customers")
            view["repeaters"] = meta.get("repeaters")
    view["empty"] = not view["rows"] and not view["fit"]
    return view


def settings_page(
    con: Console,
    b: Brand,
    status: int = 200,
    failed: tuple[str, FormState] | None = None,
    done: str = "",
) -> Response:
    present = {g.key for g in queries.tag_library(con.db, con.actor, b)}
    t = translator(con.locale)
    groups = []
    for key, fields in SETTINGS_FIELDS.items():
        if key not in present:
            continue
        stored = actions.group_by_key(con.db, b, key).settings or {}
        defaults = DEFAULT_SETTINGS[SETTINGS_SECTION[key]]
        params = {**defaults, **(stored.get("params") or {})}
        current = {name: _setting_text(kind, params.get(name)) for name, kind in fields}
        form = failed[1] if failed and failed[0] == key else FormState(values=current)
        groups.append(
            {
                "key": key,
                "fields": [
                    {
                        "name": name,
                        "kind": kind,
                        "current": current[name],
                        "default": _setting_text(kind, defaults.get(name)),
                    }
                    for name, kind in fields
                ],
                "form": form,
                "customised": bool(stored.get("params")),
                "derived": _derived_view(key, params, dict(stored.get("derived") or {})),
            }
        )
    return page(
        con,
        "tags_settings.html",
        b,
        "tags",
        status,
        groups=groups,
        unit_options=[(u, t(f"ui.tag_settings.unit.{u}")) for u in VALUE_UNITS],
        done=done if done in SETTINGS_FIELDS and done in present else "",
        canonical=f"/b/{b.slug}/tags/settings",
    )


@router.get("/b/{brand}/tags/settings")
def settings(brand: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, "customers.read")
    return settings_page(con, b, done=done)


@router.post("/b/{brand}/tags/settings")
def save_settings(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "tags.write")
    group = text_field(form, "group")
    if group not in SETTINGS_FIELDS:
        raise Invalid("tags.bad_settings", reason="unknown group")
    fields = SETTINGS_FIELDS[group]
    values = {name: text_field(form, name) for name, _kind in fields}
    try:
        params = {name: _parse_setting(name, kind, values[name]) for name, kind in fields}
        actions.update_settings(con.db, con.actor, b, SettingsIn(group=group, params=params))
    except SiyuError as exc:
        state = FormState.failed(exc, values, con.locale)
        name = _settings_field(group, exc)
        if name:
            state.errors.setdefault(name, state.message)
        return settings_page(con, b, exc.status, failed=(group, state))
    query = urlencode({"done": group})
    return RedirectResponse(f"/b/{b.slug}/tags/settings?{query}", status_code=303)
