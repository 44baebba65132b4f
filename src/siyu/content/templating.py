"""Message templates: ``{{ nickname }}``-style variables, checked at save and rendered in a
sandbox.

A template is Jinja2 source restricted to a tiny language: text, whitelisted variable names
(:data:`VARIABLES`), a few whitelisted attributes of the ``coupon`` variable, string and
number constants, ``~`` concatenation, ``if``/``elif``/``else`` on variables, and a short
filter whitelist (:data:`FILTERS`, with constant arguments only). Everything else — calls,
other attributes, subscripts, ``%`` formatting, loops, ``set``, macros, imports, includes,
blocks — is refused at save by :func:`check`, which walks Jinja's own parse tree and reports
the first problem with its code, line, column and name.

Rendering (:func:`render`) checks again (a template stored around the save path is refused
too) and then runs in Jinja2's ``ImmutableSandboxedEnvironment`` with no globals, only the
whitelisted filters and tests, so even a template that slipped past both could not reach
Python internals.

    tpl = check("{{ nickname }}，{{ store }}的新品到了")
    render(tpl.source, {"nickname": "小王"}, {"store": "门店"})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from siyu.core.errors import FieldError, Invalid

VARIABLES: dict[str, str] = {
    "nickname": "customer nickname (昵称)",
    "guide_name": "owner guide's name (导购)",
    "store": "home store name (门店)",
    "store_city": "home store city",
    "city": "customer city",
    "member_tier": "member tier (会员等级)",
    "points": "points balance (积分)",
    "coupon": "coupon (券): coupon.name, coupon.code, coupon.value, coupon.expires",
    "brand": "brand name",
    "link": "the tracking link of this message",
    "today": "today's date in the brand time zone",
}
ATTRIBUTES: dict[str, frozenset[str]] = {
    "coupon": frozenset({"name", "code", "value", "expires"}),
}
FILTERS = frozenset(
    {"default", "upper", "lower", "title", "capitalize", "trim", "truncate", "replace"}
)
TESTS = frozenset({"defined", "undefined", "none", "number", "string"})
MAX_SOURCE = 20_000

# Jinja nodes allowed as such; the others (below) are checked in detail or refused.
_PLAIN = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.If,
    nodes.Concat,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.Compare,
    nodes.Operand,
    nodes.CondExpr,
)
_NAMES = {
    nodes.Call: "call",
    nodes.Getitem: "subscript",
    nodes.Slice: "slice",
    nodes.For: "for",
    nodes.Macro: "macro",
    nodes.CallBlock: "call_block",
    nodes.FilterBlock: "filter_block",
    nodes.With: "with",
    nodes.Block: "block",
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "import",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.ExprStmt: "do",
    nodes.Mod: "percent_format",
    nodes.List: "list",
    nodes.Dict: "dict",
    nodes.Tuple: "tuple",
    nodes.ScopedEvalContextModifier: "autoescape",
}


# Where to point for constructs whose name is not in the source.
_HINT = {
    "subscript": "[",
    "slice": "[",
    "call": "(",
    "percent_format": "%",
    "filter_argument": "(",
    "dynamic_arguments": "*",
    "list": "[",
    "dict": "{",
    "tuple": "(",
}


@dataclass(frozen=True)
class Checked:
    """A template that passed :func:`check`: its source and the variables it uses."""

    source: str
    variables: tuple[str, ...] = field(default_factory=tuple)


class _Refused(Exception):
    def __init__(self, code: str, line: int | None, name: str, reason: str = "") -> None:
        self.code, self.line, self.name, self.reason = code, line, name, reason
        super().__init__(code)


def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.filters = {k: v for k, v in env.filters.items() if k in FILTERS}
    env.tests = {k: v for k, v in env.tests.items() if k in TESTS}
    return env


_ENV = _env()


def _column(source: str, line: int | None, name: str) -> int | None:
    if line is None:
        return None
    lines = source.splitlines()
    if not 0 < line <= len(lines):
        return None
    at = lines[line - 1].find(_HINT.get(name, name))
    return at + 1 if at >= 0 else None


def _walk(node: nodes.Node, used: set[str]) -> None:
    line = getattr(node, "lineno", None)
    for kind, construct in _NAMES.items():
        if isinstance(node, kind):
            raise _Refused("content.template_forbidden", line, construct)
    if isinstance(node, nodes.Name):
        if node.ctx != "load":
            raise _Refused("content.template_forbidden", line, "set")
        if node.name not in VARIABLES:
            raise _Refused("content.template_unknown_variable", line, node.name)
        used.add(node.name)
        return
    if isinstance(node, nodes.Getattr):
        base = node.node
        if not isinstance(base, nodes.Name) or node.attr not in ATTRIBUTES.get(base.name, ()):
            raise _Refused("content.template_forbidden_attribute", line, node.attr)
        _walk(base, used)
        return
    if isinstance(node, nodes.Filter):
        if node.name not in FILTERS:
            raise _Refused("content.template_unknown_filter", line, node.name)
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _Refused("content.template_forbidden", line, "dynamic_arguments")
        for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
            if not isinstance(arg, nodes.Const):
                raise _Refused("content.template_forbidden", line, "filter_argument")
        if node.node is not None:
            _walk(node.node, used)
        return
    if isinstance(node, nodes.Test):
        if node.name not in TESTS:
            raise _Refused("content.template_forbidden", line, f"test {node.name}")
        if node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise _Refused("content.template_forbidden", line, "test_argument")
        _walk(node.node, used)
        return
    if isinstance(node, nodes.Const):
        if not isinstance(node.value, str | int | float | bool) and node.value is not None:
            raise _Refused("content.template_forbidden", line, "constant")
        return
    if not isinstance(node, _PLAIN):
        raise _Refused("content.template_forbidden", line, type(node).__name__.lower())
    for child in node.iter_child_nodes():
        _walk(child, used)


def check(source: str, *, field: str = "text") -> Checked:
    """Parse and check a template; raise :class:`Invalid` with a precise error if refused."""
    if len(source) > MAX_SOURCE:
        raise Invalid(
            "content.template_too_long",
            errors=[FieldError("content.template_too_long", field, reason=f"> {MAX_SOURCE}")],
            limit=MAX_SOURCE,
        )
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        reason = str(exc.message or "syntax error")
        raise Invalid(
            "content.template_syntax",
            errors=[FieldError("content.template_syntax", field, exc.lineno, reason)],
            line=exc.lineno,
            reason=reason,
        ) from None
    used: set[str] = set()
    try:
        _walk(tree, used)
    except _Refused as r:
        column = _column(source, r.line, r.name)
        where = f"line {r.line}" + (f", column {column}" if column else "")
        raise Invalid(
            r.code,
            errors=[FieldError(r.code, field, r.line, f"{r.name} ({where})")],
            name=r.name,
            line=r.line,
            column=column,
        ) from None
    return Checked(source, tuple(sorted(used)))


def variables_of(source: str) -> tuple[str, ...]:
    """The variables a (checked) template uses."""
    return check(source).variables


@lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    return _ENV.from_string(source)


def sandbox_render(source: str, context: dict[str, Any]) -> str:
    """Render in the sandbox *without* the save-time check (tests use it to show the sandbox
    alone stops injection); anything unsafe raises :class:`Invalid`."""
    try:
        out: str = _ENV.from_string(source).render(**context)
    except SecurityError as exc:
        raise Invalid("content.template_unsafe", reason=str(exc)) from None
    except (TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise Invalid("content.template_render_failed", reason=str(exc)) from None
    return out


@lru_cache(maxsize=512)
def _verdict(source: str) -> Invalid | None:
    try:
        check(source)
    except Invalid as exc:
        return exc
    return None


def render(source: str, values: dict[str, Any], fallbacks: dict[str, Any] | None = None) -> str:
    """Render a template: a missing or empty value takes the variable's fallback, else ""."""
    refused = _verdict(source)
    if refused is not None:
        raise Invalid(refused.code, errors=list(refused.errors), **refused.params)
    context: dict[str, Any] = {}
    fallbacks = fallbacks or {}
    for name in VARIABLES:
        value = values.get(name)
        if value is None or value == "" or value == {}:
            value = fallbacks.get(name)
        if value is not None:
            context[name] = value
    try:
        out: str = _compiled(source).render(**context)
    except SecurityError as exc:
        raise Invalid("content.template_unsafe", reason=str(exc)) from None
    except (TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise Invalid("content.template_render_failed", reason=str(exc)) from None
    return out


_SIMPLE = re.compile(r"{{\s*([a-z_]+)\s*}}")


def placeholders(source: str) -> list[str]:
    """Variable names in simple ``{{ name }}`` slots (for editors' hints; no checking)."""
    return _SIMPLE.findall(source)
