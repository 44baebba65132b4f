"""Type checks of a rule against the event catalogue, with positions.

Codes: ``tags.unknown_event``, ``tags.unknown_property``, ``tags.unknown_field``,
``tags.type_error``, ``tags.bad_argument``. Each error carries ``position`` and ``reason``.
"""

from __future__ import annotations

from datetime import date

from siyu.core.errors import Invalid
from siyu.tags.lang.ast import (
    Agg,
    Arith,
    Between,
    BoolOp,
    Compare,
    Contains,
    Field,
    InList,
    Lit,
    Neg,
    Node,
    Not,
    Span,
    rule_error,
)
from siyu.tags.lang.catalogue import VALUE_TYPE, EventCatalogue, Prop
from siyu.tags.lang.functions import FUNCTIONS


def _lit_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, date):
        return "date"
    return "string"


def _near(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    def __init__(self, catalogue: EventCatalogue, text: str | None) -> None:
        self.cat = catalogue
        self.text = text

    def err(self, code: str, reason: str, node: Node, **params: object) -> Invalid:
        return rule_error(code, reason, self.text, node.span, **params)

    # The event whose properties bare names refer to (inside a function's filters), or None.
    def check(self, node: Node, event: str | None = None) -> str:
        if isinstance(node, Lit):
            return _lit_type(node.value)
        if isinstance(node, Field):
            return self.field_type(node, event)
        if isinstance(node, Not):
            self.expect_bool(node.arg, event, "'not' applies to a condition")
            return "bool"
        if isinstance(node, BoolOp):
            for arg in node.args:
                self.expect_bool(arg, event, f"'{node.op}' joins conditions")
            return "bool"
        if isinstance(node, Compare):
            self.compare(node, event)
            return "bool"
        if isinstance(node, InList):
            left = self.scalar(node.left, event)
            for v in node.values:
                self.same(left, _lit_type(v.value), v, "in")
                self.choice(node.left, v, event)
            return "bool"
        if isinstance(node, Between):
            left = self.scalar(node.left, event)
            if left not in ("number", "date", "datetime"):
                raise self.err(
                    "tags.type_error", f"'between' needs numbers or dates, not a {left}", node
                )
            for bound in (node.low, node.high):
                self.same(left, self.check(bound, event), bound, "between")
            return "bool"
        if isinstance(node, Contains):
            left = self.check(node.left, event)
            if left != "list":
                raise self.err(
                    "tags.type_error",
                    f"'contains' needs a list property, {self.describe(node.left)} is a {left}",
                    node.left,
                )
            if _lit_type(node.value.value) != "string":
                raise self.err("tags.type_error", "a list holds strings", node.value)
            return "bool"
        if isinstance(node, Arith):
            for side in (node.left, node.right):
                t = self.check(side, event)
                if t != "number":
                    raise self.err(
                        "tags.type_error",
                        f"'{node.op}' needs numbers, {self.describe(side)} is a {t}",
                        side,
                    )
            return "number"
        if isinstance(node, Neg):
            t = self.check(node.arg, event)
            if t != "number":
                raise self.err("tags.type_error", f"'-' needs a number, not a {t}", node.arg)
            return "number"
        return self.agg(node, event)

    def describe(self, node: Node) -> str:
        from siyu.tags.lang.parser import to_text

        return to_text(node)

    def expect_bool(self, node: Node, event: str | None, why: str) -> None:
        t = self.check(node, event)
        if t != "bool":
            raise self.err("tags.type_error", f"{why}; {self.describe(node)} is a {t}", node)

    def scalar(self, node: Node, event: str | None) -> str:
        t = self.check(node, event)
        if t == "list":
            raise self.err(
                "tags.type_error",
                f"{self.describe(node)} is a list: use 'contains'",
                node,
            )
        return t

    def same(self, left: str, right: str, node: Node, op: str) -> None:
        ok = left == right or {left, right} == {"date", "datetime"}
        if not ok:
            raise self.err("tags.type_error", f"'{op}' compares a {left} with a {right}", node)

    def compare(self, node: Compare, event: str | None) -> None:
        left = self.scalar(node.left, event)
        right = self.scalar(node.right, event)
        if left == "bool" and node.op not in ("=", "!="):
            raise self.err("tags.type_error", f"booleans cannot be compared with '{node.op}'", node)
        self.same(left, right, node.right if isinstance(node.right, Lit) else node, node.op)
        if isinstance(node.right, Lit):
            self.choice(node.left, node.right, event)
        if isinstance(node.left, Lit):
            self.choice(node.right, node.left, event)

    def prop_of(self, node: Node, event: str | None) -> Prop | None:
        if isinstance(node, Field) and event is not None:
            return self.cat.prop(event, node.name)
        if (
            isinstance(node, Agg)
            and node.prop is not None
            and node.fn
            in (
                "first_value",
                "last_value",
                "min",
                "max",
            )
        ):
            return self.cat.prop(node.event, node.prop)
        return None

    def choice(self, target: Node, lit: Lit, event: str | None) -> None:
        prop = self.prop_of(target, event)
        if prop is None or not prop.choices or not isinstance(lit.value, str):
            return
        if lit.value not in prop.choices:
            raise self.err(
                "tags.type_error",
                f"{prop.name} has no value {lit.value!r}; it is one of "
                + ", ".join(repr(c) for c in prop.choices),
                lit,
            )

    def field_type(self, node: Field, event: str | None) -> str:
        if event is None:
            prop = self.cat.profile.get(node.name)
            if prop is None:
                raise self.err(
                    "tags.unknown_field",
                    f"{node.name!r} is not a profile column"
                    + _near(node.name, list(self.cat.profile))
                    + "; event properties are named inside a function, e.g. "
                    'count(order_paid, channel = "pos")',
                    node,
                    name=node.name,
                )
        else:
            prop = self.cat.prop(event, node.name)
            if prop is None:
                names = self.cat.names(event)
                raise self.err(
                    "tags.unknown_property",
                    f"{event} has no property {node.name!r}"
                    + _near(node.name, names)
                    + "; it has: "
                    + ", ".join(names),
                    node,
                    name=node.name,
                    event=event,
                )
        return self.kind_type(prop, node)

    def kind_type(self, prop: Prop, node: Node, span: Span | None = None) -> str:
        t = VALUE_TYPE.get(prop.kind)
        if t is None:
            raise rule_error(
                "tags.type_error",
                f"{prop.name} is a {prop.kind} property and cannot be used in rules",
                self.text,
                span or node.span,
            )
        return t

    def agg(self, node: Agg, event: str | None) -> str:
        spec = FUNCTIONS[node.fn]
        if event is not None:
            raise self.err(
                "tags.bad_argument",
                f"{node.fn}(…) cannot be used inside the filters of another function",
                node,
            )
        if node.event not in self.cat.events:
            known = sorted(self.cat.events)
            raise rule_error(
                "tags.unknown_event",
                f"unknown event type {node.event!r}" + _near(node.event, known),
                self.text,
                node.event_span or node.span,
                name=node.event,
            )
        if node.which is not None and not spec.takes_which:
            raise self.err("tags.bad_argument", f"{node.fn} does not take 'first' or 'last'", node)
        ptype = None
        if spec.takes_property:
            if node.prop is None:
                raise rule_error(
                    "tags.bad_argument",
                    f"{node.fn} needs a property: {node.fn}({node.event}.<property>, …)",
                    self.text,
                    node.event_span or node.span,
                )
            prop = self.cat.prop(node.event, node.prop)
            if prop is None:
                names = self.cat.names(node.event)
                raise rule_error(
                    "tags.unknown_property",
                    f"{node.event} has no property {node.prop!r}"
                    + _near(node.prop, names)
                    + "; it has: "
                    + ", ".join(names),
                    self.text,
                    node.prop_span or node.span,
                    name=node.prop,
                    event=node.event,
                )
            ptype = self.kind_type(prop, node, node.prop_span)
            if ptype not in spec.accepts:
                raise rule_error(
                    "tags.type_error",
                    f"{node.fn} needs a {' or '.join(spec.accepts)} property; "
                    f"{node.event}.{node.prop} is a {ptype}",
                    self.text,
                    node.prop_span or node.span,
                )
        elif node.prop is not None:
            raise rule_error(
                "tags.bad_argument",
                f"{node.fn} counts occurrences and takes no property: {node.fn}({node.event}, …)",
                self.text,
                node.prop_span or node.span,
            )
        for cond in node.where:
            t = self.check(cond, node.event)
            if t != "bool":
                raise self.err(
                    "tags.type_error",
                    f"a filter must be a condition; {self.describe(cond)} is a {t}",
                    cond,
                )
        if spec.result == "property":
            assert ptype is not None
            return ptype
        return spec.result


def check(
    node: Node, catalogue: EventCatalogue, text: str | None = None, expect: str | None = "bool"
) -> str:
    """The value type of a rule; raises :class:`Invalid` with a position when it does not type.
    ``expect`` "bool" for rule tags, None for value expressions."""
    checker = Checker(catalogue, text)
    t = checker.check(node)
    if expect is not None and t != expect:
        raise checker.err(
            "tags.type_error",
            f"a rule must be a condition (true or false for each customer); this is a {t}",
            node,
        )
    if t == "list":
        raise checker.err("tags.type_error", "a value cannot be a list", node)
    return t
