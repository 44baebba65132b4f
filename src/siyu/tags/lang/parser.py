"""Text form of the tag language: tokenizer, recursive-descent parser and the canonical printer.

    count(order_paid, channel in ("mini_mall", "pos"), last 90d) >= 3
      and days_since(last order_paid) <= 30

Grammar (keywords are case-insensitive)::

    rule     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | cmp
    cmp      := add [ ("=" | "!=" | "<" | "<=" | ">" | ">=") add
                    | ["not"] "in" "(" literal ("," literal)* ")"
                    | ["not"] "between" add "and" add
                    | "contains" literal ]
    add      := mul (("+" | "-") mul)*
    mul      := unary (("*" | "/") unary)*
    unary    := "-" unary | primary
    primary  := NUMBER | "¥" NUMBER | STRING | DATE | "true" | "false"
              | call | NAME | "(" or ")"
    call     := FUNCTION "(" [("first" | "last")] EVENT ["." PROPERTY] ("," (window | or))* ")"
    window   := "last" INT ("d" | "w") | "this" "month" | "last" "month"
              | "since" DATE | "between" DATE "and" DATE

``¥12.5`` is a money literal in fen (1250). Dates are ``YYYY-MM-DD``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from siyu.core.errors import Invalid
from siyu.tags.lang.ast import (
    AGGREGATES,
    WINDOW_UNITS,
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
    Window,
    rule_error,
)

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "between", "contains", "true", "false", "last", "this", "since"}
)
_UNITS = {"d": "d", "day": "d", "days": "d", "w": "w", "week": "w", "weeks": "w"}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d-]))
  | (?P<money>[¥￥]\s*\d+(?:\.\d+)?)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>=|<=|!=|<>|==|[=<>(),.+\-*/])
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str  # num | str | date | name | op | eof
    text: str
    start: int
    end: int
    value: Any = None

    @property
    def span(self) -> Span:
        return (self.start, self.end)

    def describe(self) -> str:
        return "the end of the rule" if self.kind == "eof" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            closed = ch not in "\"'"
            reason = f"unexpected character {ch!r}" if closed else "the string is not closed"
            raise rule_error("tags.parse_error", reason, text, (pos, pos + 1))
        kind = m.lastgroup or ""
        piece = m.group()
        if kind != "ws":
            tok = Token(kind, piece, m.start(), m.end())
            if kind == "num":
                tok.value = float(piece) if "." in piece else int(piece)
            elif kind == "money":
                tok.kind = "num"
                yuan = Decimal(piece[1:].strip())
                fen = yuan * 100
                if fen != fen.to_integral_value():
                    raise rule_error(
                        "tags.parse_error", "money has at most 2 decimals", text, tok.span
                    )
                tok.value = int(fen)
            elif kind == "date":
                try:
                    tok.value = date.fromisoformat(piece)
                except ValueError:
                    raise rule_error(
                        "tags.parse_error", f"{piece} is not a valid date", text, tok.span
                    ) from None
            elif kind == "str":
                tok.value = _unquote(piece)
            elif kind == "op":
                tok.text = {"==": "=", "<>": "!="}.get(piece, piece)
            out.append(tok)
        pos = m.end()
    out.append(Token("eof", "", len(text), len(text)))
    return out


def _unquote(piece: str) -> str:
    body = piece[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # ------------------------------------------------------------ helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_kw(self, word: str, tok: Token | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "name" and tok.text.lower() == word

    def is_op(self, op: str, tok: Token | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "op" and tok.text == op

    def fail(self, reason: str, tok: Token | None = None) -> Invalid:
        tok = tok or self.tok
        return rule_error("tags.parse_error", reason, self.text, tok.span)

    def expect_op(self, op: str, what: str = "") -> Token:
        if not self.is_op(op):
            where = f" {what}" if what else ""
            raise self.fail(f"expected {op!r}{where}, found {self.tok.describe()}")
        return self.advance()

    def expect_kw(self, word: str, what: str = "") -> Token:
        if not self.is_kw(word):
            where = f" {what}" if what else ""
            raise self.fail(f"expected {word!r}{where}, found {self.tok.describe()}")
        return self.advance()

    def span_from(self, start: int) -> Span:
        prev = self.tokens[self.i - 1] if self.i > 0 else self.tok
        return (start, max(prev.end, start))

    # ------------------------------------------------------------ grammar

    def parse(self) -> Node:
        if self.tok.kind == "eof":
            raise self.fail("the rule is empty")
        node = self.parse_or()
        if self.tok.kind != "eof":
            raise self.fail(f"unexpected {self.tok.describe()} after a complete expression")
        return node

    def parse_or(self) -> Node:
        start = self.tok.start
        args = [self.parse_and()]
        while self.is_kw("or"):
            self.advance()
            args.append(self.parse_and())
        return args[0] if len(args) == 1 else BoolOp("or", args, self.span_from(start))

    def parse_and(self) -> Node:
        start = self.tok.start
        args = [self.parse_not()]
        while self.is_kw("and"):
            self.advance()
            args.append(self.parse_not())
        return args[0] if len(args) == 1 else BoolOp("and", args, self.span_from(start))

    def parse_not(self) -> Node:
        if self.is_kw("not"):
            start = self.advance().start
            arg = self.parse_not()
            return Not(arg, self.span_from(start))
        return self.parse_cmp()

    def parse_cmp(self) -> Node:
        start = self.tok.start
        left = self.parse_add()
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "!=", "<", "<=", ">", ">="):
            self.advance()
            right = self.parse_add()
            return Compare(tok.text, left, right, self.span_from(start))
        negate = False
        if self.is_kw("not") and (
            self.is_kw("in", self.peek()) or self.is_kw("between", self.peek())
        ):
            self.advance()
            negate = True
        if self.is_kw("in"):
            self.advance()
            self.expect_op("(", "after 'in'")
            values = [self.parse_literal()]
            while self.is_op(","):
                self.advance()
                values.append(self.parse_literal())
            self.expect_op(")", "to close the list")
            return InList(left, values, negate, self.span_from(start))
        if self.is_kw("between"):
            self.advance()
            low = self.parse_add()
            self.expect_kw("and", "between the bounds of 'between'")
            high = self.parse_add()
            return Between(left, low, high, negate, self.span_from(start))
        if negate:  # pragma: no cover - guarded by the lookahead above
            raise self.fail("expected 'in' or 'between' after 'not'")
        if self.is_kw("contains"):
            self.advance()
            value = self.parse_literal()
            return Contains(left, value, self.span_from(start))
        return left

    def parse_add(self) -> Node:
        start = self.tok.start
        left = self.parse_mul()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.advance().text
            right = self.parse_mul()
            left = Arith(op, left, right, self.span_from(start))
        return left

    def parse_mul(self) -> Node:
        start = self.tok.start
        left = self.parse_unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self.advance().text
            right = self.parse_unary()
            left = Arith(op, left, right, self.span_from(start))
        return left

    def parse_unary(self) -> Node:
        if self.is_op("-"):
            start = self.advance().start
            if self.tok.kind == "num":
                tok = self.advance()
                return Lit(-tok.value, self.span_from(start))
            arg = self.parse_unary()
            return Neg(arg, self.span_from(start))
        return self.parse_primary()

    def parse_literal(self) -> Lit:
        start = self.tok.start
        neg = False
        if self.is_op("-"):
            self.advance()
            neg = True
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Lit(-tok.value if neg else tok.value, self.span_from(start))
        if not neg:
            if tok.kind in ("str", "date"):
                self.advance()
                return Lit(tok.value, tok.span)
            if self.is_kw("true") or self.is_kw("false"):
                self.advance()
                return Lit(tok.text.lower() == "true", tok.span)
        raise self.fail(f"expected a literal value, found {tok.describe()}")

    def parse_primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("num", "str", "date") or self.is_kw("true") or self.is_kw("false"):
            return self.parse_literal()
        if self.is_op("("):
            start = self.advance().start
            node = self.parse_or()
            self.expect_op(")", "to close '('")
            node.span = self.span_from(start)
            return node
        if tok.kind == "name":
            if self.is_op("(", self.peek()):
                return self.parse_call()
            if tok.text.lower() in KEYWORDS:
                raise self.fail(f"expected a value, found the keyword {tok.text!r}")
            self.advance()
            return Field(tok.text, tok.span)
        raise self.fail(f"expected a value, found {tok.describe()}")

    def parse_call(self) -> Node:
        name_tok = self.advance()
        fn = name_tok.text.lower()
        if fn not in AGGREGATES:
            raise rule_error(
                "tags.unknown_function",
                f"unknown function {name_tok.text!r}; known: {', '.join(AGGREGATES)}",
                self.text,
                name_tok.span,
                name=name_tok.text,
            )
        self.expect_op("(")
        which = None
        if (self.is_kw("first") or self.is_kw("last")) and self.peek().kind == "name":
            which = self.advance().text.lower()
        ev = self.tok
        if ev.kind != "name" or ev.text.lower() in KEYWORDS:
            raise self.fail(f"expected an event type, found {ev.describe()}")
        self.advance()
        prop = None
        prop_span = None
        if self.is_op("."):
            self.advance()
            ptok = self.tok
            if ptok.kind != "name":
                raise self.fail(f"expected a property name after '.', found {ptok.describe()}")
            self.advance()
            prop, prop_span = ptok.text, ptok.span
        node = Agg(fn, ev.text, prop, which, [], None, None, ev.span, prop_span)
        while self.is_op(","):
            self.advance()
            if self.at_window():
                wstart = self.tok
                window = self.parse_window()
                if node.window is not None:
                    raise rule_error(
                        "tags.bad_window",
                        "a function takes at most one time window",
                        self.text,
                        (wstart.start, window.span[1] if window.span else wstart.end),
                    )
                node.window = window
            else:
                node.where.append(self.parse_or())
        self.expect_op(")", f"to close {name_tok.text}(…)")
        node.span = self.span_from(name_tok.start)
        return node

    def at_window(self) -> bool:
        if self.is_kw("last"):
            nxt = self.peek()
            return nxt.kind == "num" or self.is_kw("month", nxt)
        return self.is_kw("this") or self.is_kw("since") or self.is_kw("between")

    def parse_date(self, what: str) -> date:
        tok = self.tok
        if tok.kind == "date":
            self.advance()
            value: date = tok.value
            return value
        if tok.kind == "str":
            try:
                value = date.fromisoformat(tok.value)
            except ValueError:
                raise self.fail(f"{tok.value!r} is not a date (YYYY-MM-DD)") from None
            self.advance()
            return value
        raise self.fail(f"expected a date (YYYY-MM-DD) {what}, found {tok.describe()}")

    def parse_window(self) -> Window:
        start = self.tok.start
        if self.is_kw("this"):
            self.advance()
            self.expect_kw("month", "after 'this'")
            return Window("this_month", span=self.span_from(start))
        if self.is_kw("since"):
            self.advance()
            day = self.parse_date("after 'since'")
            return Window("since", start=day, span=self.span_from(start))
        if self.is_kw("between"):
            self.advance()
            lo = self.parse_date("after 'between'")
            self.expect_kw("and", "between the two dates")
            hi = self.parse_date("after 'and'")
            span = self.span_from(start)
            if hi < lo:
                raise rule_error(
                    "tags.bad_window",
                    f"the window ends ({hi}) before it starts ({lo})",
                    self.text,
                    span,
                )
            return Window("between", start=lo, end=hi, span=span)
        self.expect_kw("last")
        if self.is_kw("month"):
            self.advance()
            return Window("last_month", span=self.span_from(start))
        ntok = self.advance()
        if not isinstance(ntok.value, int) or ntok.value < 1:
            raise rule_error(
                "tags.bad_window",
                "the number of days or weeks must be a whole number ≥ 1",
                self.text,
                ntok.span,
            )
        utok = self.tok
        unit = _UNITS.get(utok.text.lower()) if utok.kind == "name" else None
        if unit is None:
            raise self.fail(f"expected a unit (d or w) after {ntok.text}, found {utok.describe()}")
        self.advance()
        return Window("last", n=ntok.value, unit=unit, span=self.span_from(start))


def parse(text: str) -> Node:
    """The tree of a rule in text form; :class:`Invalid` ``tags.parse_error`` (or
    ``tags.unknown_function``, ``tags.bad_window``) with the position otherwise."""
    if not isinstance(text, str):
        raise Invalid("tags.bad_tree", path="$", reason="a rule is text or a JSON tree")
    return _Parser(text).parse()


# ---------------------------------------------------------------- printing

_PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}
_ATOM = 8


def _prec(node: Node) -> int:
    if isinstance(node, BoolOp):
        return _PREC[node.op]
    if isinstance(node, Not):
        return _PREC["not"]
    if isinstance(node, Compare | InList | Between | Contains):
        return _PREC["cmp"]
    if isinstance(node, Arith):
        return _PREC[node.op]
    if isinstance(node, Neg):
        return _PREC["neg"]
    if (
        isinstance(node, Lit)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return _PREC["neg"] if node.value < 0 else _ATOM
    return _ATOM


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if "e" not in text else format(Decimal(text), "f")
    if isinstance(value, date):
        return value.isoformat()
    return json.dumps(str(value), ensure_ascii=False)


def window_text(w: Window) -> str:
    if w.kind == "last":
        return f"last {w.n}{w.unit}"
    if w.kind == "this_month":
        return "this month"
    if w.kind == "last_month":
        return "last month"
    if w.kind == "since":
        return f"since {w.start}"
    return f"between {w.start} and {w.end}"


def to_text(node: Node, parent: int = 0) -> str:
    """The canonical text of a tree (``parse(to_text(t)) == t``)."""
    own = _prec(node)
    text = _text(node)
    return f"({text})" if own < parent else text


def _text(node: Node) -> str:
    if isinstance(node, Lit):
        return _lit(node.value)
    if isinstance(node, Field):
        return node.name
    if isinstance(node, BoolOp):
        p = _PREC[node.op] + 1
        return f" {node.op} ".join(to_text(a, p) for a in node.args)
    if isinstance(node, Not):
        return "not " + to_text(node.arg, _PREC["not"])
    if isinstance(node, Compare):
        return f"{to_text(node.left, 5)} {node.op} {to_text(node.right, 5)}"
    if isinstance(node, InList):
        neg = "not in" if node.negate else "in"
        return f"{to_text(node.left, 5)} {neg} ({', '.join(_lit(v.value) for v in node.values)})"
    if isinstance(node, Between):
        neg = "not between" if node.negate else "between"
        return f"{to_text(node.left, 5)} {neg} {to_text(node.low, 5)} and {to_text(node.high, 5)}"
    if isinstance(node, Contains):
        return f"{to_text(node.left, 5)} contains {_lit(node.value.value)}"
    if isinstance(node, Arith):
        p = _PREC[node.op]
        return f"{to_text(node.left, p)} {node.op} {to_text(node.right, p + 1)}"
    if isinstance(node, Neg):
        return "-" + to_text(node.arg, _ATOM)
    # Agg
    head = f"{node.which} " if node.which else ""
    target = node.event + (f".{node.prop}" if node.prop else "")
    args = [head + target] + [to_text(w) for w in node.where]
    if node.window is not None:
        args.append(window_text(node.window))
    return f"{node.fn}({', '.join(args)})"


# ---------------------------------------------------------------- JSON tree


def _scalar_json(value: Any) -> Any:
    return {"date": value.isoformat()} if isinstance(value, date) else value


def window_json(w: Window) -> dict[str, Any]:
    if w.kind == "last":
        return {"kind": "last", "n": w.n, "unit": w.unit}
    if w.kind in ("this_month", "last_month"):
        return {"kind": w.kind}
    if w.kind == "since":
        return {"kind": "since", "date": str(w.start)}
    return {"kind": "between", "from": str(w.start), "to": str(w.end)}


def to_json(node: Node) -> dict[str, Any]:
    """The console builder's JSON tree of a rule."""
    if isinstance(node, Lit):
        return (
            {"date": node.value.isoformat()}
            if isinstance(node.value, date)
            else {"value": node.value}
        )
    if isinstance(node, Field):
        return {"field": node.name}
    if isinstance(node, BoolOp):
        return {"op": node.op, "args": [to_json(a) for a in node.args]}
    if isinstance(node, Not):
        return {"op": "not", "arg": to_json(node.arg)}
    if isinstance(node, Compare | Arith):
        return {"op": node.op, "left": to_json(node.left), "right": to_json(node.right)}
    if isinstance(node, InList):
        return {
            "op": "not in" if node.negate else "in",
            "left": to_json(node.left),
            "values": [_scalar_json(v.value) for v in node.values],
        }
    if isinstance(node, Between):
        return {
            "op": "not between" if node.negate else "between",
            "left": to_json(node.left),
            "low": to_json(node.low),
            "high": to_json(node.high),
        }
    if isinstance(node, Contains):
        return {"op": "contains", "left": to_json(node.left), "value": node.value.value}
    if isinstance(node, Neg):
        return {"op": "neg", "arg": to_json(node.arg)}
    out: dict[str, Any] = {"fn": node.fn, "event": node.event}
    if node.prop is not None:
        out["property"] = node.prop
    if node.which is not None:
        out["which"] = node.which
    if node.where:
        out["where"] = [to_json(w) for w in node.where]
    if node.window is not None:
        out["window"] = window_json(node.window)
    return out


class _Json:
    def fail(self, path: str, reason: str) -> Invalid:
        return Invalid("tags.bad_tree", path=path, reason=reason)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected an object")
        return value

    def get(self, d: dict[str, Any], key: str, path: str) -> Any:
        if key not in d:
            raise self.fail(path, f"missing {key!r}")
        return d[key]

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise self.fail(path, "expected a name (letters, digits, _)")
        return value

    def scalar(self, value: Any, path: str) -> Lit:
        if isinstance(value, dict) and set(value) == {"date"}:
            return Lit(self.day(value["date"], path + ".date"))
        if isinstance(value, bool | int | str) or (
            isinstance(value, float) and value == value and abs(value) != float("inf")
        ):
            return Lit(value)
        raise self.fail(path, 'expected a number, string, boolean or {"date": …}')

    def day(self, value: Any, path: str) -> date:
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            raise self.fail(path, "expected a date YYYY-MM-DD") from None

    def window(self, value: Any, path: str) -> Window:
        d = self.obj(value, path)
        kind = self.get(d, "kind", path)
        if kind == "last":
            n, unit = d.get("n"), d.get("unit", "d")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise self.fail(path + ".n", "expected a whole number ≥ 1")
            if unit not in WINDOW_UNITS:
                raise self.fail(path + ".unit", "expected 'd' or 'w'")
            return Window("last", n=n, unit=unit)
        if kind in ("this_month", "last_month"):
            return Window(kind)
        if kind == "since":
            return Window("since", start=self.day(d.get("date"), path + ".date"))
        if kind == "between":
            lo = self.day(d.get("from"), path + ".from")
            hi = self.day(d.get("to"), path + ".to")
            if hi < lo:
                raise self.fail(path, "the window ends before it starts")
            return Window("between", start=lo, end=hi)
        raise self.fail(path + ".kind", f"unknown window kind {kind!r}")

    def node(self, value: Any, path: str) -> Node:
        d = self.obj(value, path)
        if "op" in d:
            return self.operation(d, path)
        if "value" in d:
            lit = self.scalar(d["value"], path + ".value")
            return lit
        if "date" in d:
            return Lit(self.day(d["date"], path + ".date"))
        if "field" in d:
            return Field(self.name(d["field"], path + ".field"))
        if "fn" in d:
            return self.agg(d, path)
        raise self.fail(path, "expected an operation (op), a function (fn), a value or a field")

    def operation(self, d: dict[str, Any], path: str) -> Node:
        op = d["op"]
        if op in ("and", "or"):
            args = self.get(d, "args", path)
            if not isinstance(args, list) or len(args) < 2:
                raise self.fail(path + ".args", "expected a list of at least two conditions")
            return BoolOp(op, [self.node(a, f"{path}.args[{i}]") for i, a in enumerate(args)])
        if op == "not":
            return Not(self.node(self.get(d, "arg", path), path + ".arg"))
        if op == "neg":
            arg = self.node(self.get(d, "arg", path), path + ".arg")
            if isinstance(arg, Lit) and isinstance(arg.value, int | float):
                return Lit(-arg.value)
            return Neg(arg)
        if op in ("=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/"):
            left = self.node(self.get(d, "left", path), path + ".left")
            right = self.node(self.get(d, "right", path), path + ".right")
            return Compare(op, left, right) if op not in "+-*/" else Arith(op, left, right)
        if op in ("in", "not in"):
            left = self.node(self.get(d, "left", path), path + ".left")
            values = self.get(d, "values", path)
            if not isinstance(values, list) or not values:
                raise self.fail(path + ".values", "expected a non-empty list")
            lits = [self.scalar(v, f"{path}.values[{i}]") for i, v in enumerate(values)]
            return InList(left, lits, op == "not in")
        if op in ("between", "not between"):
            left = self.node(self.get(d, "left", path), path + ".left")
            low = self.node(self.get(d, "low", path), path + ".low")
            high = self.node(self.get(d, "high", path), path + ".high")
            return Between(left, low, high, op == "not between")
        if op == "contains":
            left = self.node(self.get(d, "left", path), path + ".left")
            return Contains(left, self.scalar(self.get(d, "value", path), path + ".value"))
        raise self.fail(path + ".op", f"unknown operator {op!r}")

    def agg(self, d: dict[str, Any], path: str) -> Agg:
        fn = d["fn"]
        if fn not in AGGREGATES:
            raise self.fail(path + ".fn", f"unknown function {fn!r}")
        event = self.name(self.get(d, "event", path), path + ".event")
        prop = d.get("property")
        if prop is not None:
            prop = self.name(prop, path + ".property")
        which = d.get("which")
        if which not in (None, "first", "last"):
            raise self.fail(path + ".which", "expected 'first' or 'last'")
        where = d.get("where", [])
        if not isinstance(where, list):
            raise self.fail(path + ".where", "expected a list of conditions")
        conds = [self.node(w, f"{path}.where[{i}]") for i, w in enumerate(where)]
        window = self.window(d["window"], path + ".window") if d.get("window") else None
        return Agg(fn, event, prop, which, conds, window)


def from_json(tree: Any) -> Node:
    """The rule tree of the console builder's JSON; ``tags.bad_tree`` with the JSON path of the
    offending part otherwise."""
    return _Json().node(tree, "$")


_NODES = (Lit, Field, Not, BoolOp, Compare, InList, Between, Contains, Arith, Neg, Agg)


def normalise(rule: str | dict[str, Any] | Node) -> tuple[Node, str]:
    """(tree with spans, canonical-or-given text) of a rule in any form. A JSON tree is printed
    and parsed again so that later errors can point at a position in its text."""
    if isinstance(rule, str):
        return parse(rule), rule
    node = rule if isinstance(rule, _NODES) else from_json(rule)
    text = to_text(node)
    return parse(text), text


__all__ = [
    "from_json",
    "normalise",
    "parse",
    "to_json",
    "to_text",
    "tokenize",
    "window_json",
    "window_text",
]
