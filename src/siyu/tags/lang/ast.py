"""The rule tree: the nodes both forms (text and JSON) parse to, and the errors that point at a
position in the rule text.

Every node may carry its span (start and end offsets) in the text it came from; spans are not
part of a node's identity (two trees that say the same thing are equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from siyu.core.errors import Invalid

Span = tuple[int, int]

AGGREGATES = (
    "count",
    "count_distinct",
    "sum",
    "avg",
    "min",
    "max",
    "first_value",
    "last_value",
    "exists",
    "days_since",
)
COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
ARITH_OPS = ("+", "-", "*", "/")
WINDOW_KINDS = ("last", "this_month", "last_month", "since", "between")
WINDOW_UNITS = {"d": 1, "w": 7}


@dataclass
class Lit:
    """A literal: integer or decimal number, string, boolean or date."""

    value: int | float | str | bool | date
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Field:
    """A property of the aggregated event (inside an aggregate's filters) or a profile column
    of the customer (outside)."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Not:
    arg: Node
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class BoolOp:
    op: str  # and | or
    args: list[Node]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Compare:
    op: str  # = != < <= > >=
    left: Node
    right: Node
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class InList:
    left: Node
    values: list[Lit]
    negate: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Between:
    left: Node
    low: Node
    high: Node
    negate: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Contains:
    """``coupon_codes contains "WELCOME"``: a list property holds a value."""

    left: Node
    value: Lit
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Arith:
    op: str  # + - * /
    left: Node
    right: Node
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Neg:
    arg: Node
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Window:
    """A time window, in brand-local days.

    ``last`` n units (d or w) up to the as-of day; ``this_month`` / ``last_month`` calendar
    months; ``since`` a day (inclusive); ``between`` two days (both inclusive).
    """

    kind: str
    n: int | None = None
    unit: str | None = None
    start: date | None = None
    end: date | None = None
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Agg:
    """A function over one event type's occurrences for each customer.

    ``count(order_paid, channel = "pos", last 90d)``: ``fn`` count, ``event`` order_paid, no
    property, one filter, a window. ``which`` is first/last for ``days_since``.
    """

    fn: str
    event: str
    prop: str | None = None
    which: str | None = None
    where: list[Node] = field(default_factory=list)
    window: Window | None = None
    span: Span | None = field(default=None, compare=False, repr=False)
    event_span: Span | None = field(default=None, compare=False, repr=False)
    prop_span: Span | None = field(default=None, compare=False, repr=False)


Node = Lit | Field | Not | BoolOp | Compare | InList | Between | Contains | Arith | Neg | Agg


def position(text: str | None, offset: int) -> dict[str, int]:
    """Offset (0-based), line and column (1-based) of ``offset`` in ``text``."""
    if text is None:
        return {"offset": offset, "line": 1, "column": offset + 1}
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return {"offset": offset, "line": line, "column": column}


def rule_error(
    code: str, reason: str, text: str | None, span: Span | None, **params: Any
) -> Invalid:
    """An :class:`Invalid` with ``position`` (offset, line, column), ``reason`` and, flat for
    the message, ``line`` and ``column``."""
    offset = span[0] if span is not None else 0
    pos = position(text, offset)
    if span is not None:
        pos["end"] = span[1]
    return Invalid(
        code,
        position=pos,
        line=pos["line"],
        column=pos["column"],
        reason=reason,
        rule=text,
        **params,
    )
