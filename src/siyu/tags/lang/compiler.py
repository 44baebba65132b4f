"""Rules → Ibis expressions.

A set of rules compiles to **one scan and one aggregation per fact table**: every function
call of every rule becomes a conditional aggregate (``count(*) FILTER (WHERE …)``) of a single
``GROUP BY customer_id`` over the events (and one over the orders), deduplicated across rules
(``exists(x, last 30d)`` and ``count(x, last 30d)`` share a column). The universe of customers
is left-joined with those aggregates and each rule becomes a boolean column. The scan keeps
only the event types the rules name, facts up to the as-of moment and, when every call has a
window, days from the earliest window start: the engine prunes the rest.

Time. Rules are evaluated as of an aware instant ``as_of`` in the brand's time zone ``tz``;
``today`` is the brand-local day of ``as_of``. Windows are whole brand-local days on the
facts' ``dt`` column (written by ingest in the brand's zone), and facts after ``as_of`` are
never seen. ``days_since`` counts days between the occurrence's ``dt`` and ``today``.

Missing values. ``count``/``count_distinct``/``sum`` are 0 without occurrences, ``exists`` is
false; ``avg``, ``min``, ``max``, ``first_value``, ``last_value`` and ``days_since`` are
missing, and a comparison with a missing value is not true (SQL's three-valued logic; ``not``
of an unknown is unknown). A customer is a member when the rule is true.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from typing import Any, cast
from zoneinfo import ZoneInfo

from siyu.core.errors import Invalid
from siyu.tags.lang.ast import (
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
    Window,
)
from siyu.tags.lang.catalogue import ORDER_COLUMNS, ORDER_KIND, EventCatalogue
from siyu.tags.lang.check import check
from siyu.tags.lang.facts import Facts
from siyu.tags.lang.parser import normalise, to_text

Rule = str | dict[str, Any] | Node
DIALECTS = ("duckdb", "pyspark", "trino", "clickhouse")
_DIALECT_ALIASES = {"spark": "pyspark"}
_IBIS_TYPES = {
    "str": "string",
    "int": "int64",
    "fen": "int64",
    "float": "float64",
    "bool": "boolean",
    "date": "date",
    "datetime": "timestamp('UTC')",
    "str_list": "string",  # JSON text of the list; 'contains' searches it
}


@dataclass(frozen=True)
class Checked:
    """A rule that parsed and typed: its tree, its text and its value type."""

    tree: Node
    text: str
    type: str


def check_rule(rule: Rule, catalogue: EventCatalogue, expect: str | None = "bool") -> Checked:
    """Parse (text or JSON tree) and type-check one rule; :class:`Invalid` with a position."""
    tree, text = normalise(rule)
    kind = check(tree, catalogue, text, expect)
    return Checked(tree, text, kind)


def check_rules(
    rules: Mapping[str, Rule], catalogue: EventCatalogue, expect: str | None = "bool"
) -> tuple[dict[str, Checked], dict[str, Invalid]]:
    """Every rule checked: those that pass, and the error of each that does not."""
    good: dict[str, Checked] = {}
    bad: dict[str, Invalid] = {}
    for key, rule in rules.items():
        try:
            good[key] = check_rule(rule, catalogue, expect)
        except Invalid as exc:
            exc.params.setdefault("tag", key)
            bad[key] = exc
    return good, bad


def brand_today(as_of: datetime, tz: str) -> date:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    return as_of.astimezone(ZoneInfo(tz)).date()


def window_days(w: Window, today: date) -> tuple[date | None, date | None]:
    """The inclusive brand-local day range of a window (None: open)."""
    if w.kind == "last":
        n = (w.n or 1) * WINDOW_UNITS[w.unit or "d"]
        return today - timedelta(days=n - 1), None
    first = today.replace(day=1)
    if w.kind == "this_month":
        return first, None
    if w.kind == "last_month":
        end = first - timedelta(days=1)
        return end.replace(day=1), end
    if w.kind == "since":
        return w.start, None
    return w.start, w.end


def _agg_key(node: Agg) -> Agg:
    """The aggregate a call needs: exists is a count; spans dropped."""
    fn = "count" if node.fn == "exists" else node.fn
    return replace(node, fn=fn, span=None, event_span=None, prop_span=None)


def _fields(node: Node) -> set[str]:
    if isinstance(node, Field):
        return {node.name}
    out: set[str] = set()
    for child in _children(node):
        out |= _fields(child)
    return out


def _children(node: Node) -> list[Node]:
    if isinstance(node, Not | Neg):
        return [node.arg]
    if isinstance(node, BoolOp):
        return list(node.args)
    if isinstance(node, Compare | Arith):
        return [node.left, node.right]
    if isinstance(node, InList):
        return [node.left]
    if isinstance(node, Between):
        return [node.left, node.low, node.high]
    if isinstance(node, Contains):
        return [node.left]
    if isinstance(node, Agg):
        return list(node.where)
    return []


def _json_getter(dialect: str) -> Any:
    """A builtin function (text, '$.name') → the scalar as text, per dialect."""
    import ibis

    name = {
        "duckdb": "json_extract_string",
        "pyspark": "get_json_object",
        "trino": "json_extract_scalar",
        "clickhouse": "JSON_VALUE",
    }[dialect]

    @ibis.udf.scalar.builtin(name=name)  # type: ignore[untyped-decorator]
    def extract(doc: str, path: str) -> str:  # type: ignore[empty-body]
        ...

    return extract


class _Compiler:
    def __init__(
        self,
        catalogue: EventCatalogue,
        facts: Facts,
        as_of: datetime,
        tz: str,
        dialect: str | None,
    ) -> None:
        self.cat = catalogue
        self.facts = facts
        self.today = brand_today(as_of, tz)
        self.as_of = as_of.astimezone(UTC)
        name = dialect or facts.backend_name() or "duckdb"
        name = _DIALECT_ALIASES.get(name, name)
        if name not in DIALECTS:
            raise ValueError(f"unsupported dialect {name!r}; known: {', '.join(DIALECTS)}")
        self.dialect = name
        # canonical text of the aggregate → (aggregate, source table, column)
        self.aggs: dict[str, tuple[Agg, str, str]] = {}
        self.profile: set[str] = set()

    # ------------------------------------------------------------ planning

    def source(self, node: Agg) -> str:
        if node.event in ORDER_KIND:
            used = _fields(node) | ({node.prop} if node.prop else set())
            if used <= set(ORDER_COLUMNS[node.event]):
                return "orders"
        return "events"

    def plan(self, node: Node) -> None:
        if isinstance(node, Agg):
            key = _agg_key(node)
            text = to_text(key)
            if text not in self.aggs:
                self.aggs[text] = (key, self.source(node), f"a{len(self.aggs)}")
            return
        if isinstance(node, Field):
            self.profile.add(node.name)
            return
        for child in _children(node):
            self.plan(child)

    # ------------------------------------------------------------ the aggregate tables

    def window_pred(self, t: Any, w: Window | None) -> Any:
        import ibis

        if w is None:
            return None
        lo, hi = window_days(w, self.today)
        preds = []
        if lo is not None:
            preds.append(t.dt >= ibis.literal(lo))
        if hi is not None:
            preds.append(t.dt <= ibis.literal(hi))
        return reduce(lambda a, b: a & b, preds) if preds else None

    def scan(self, source: str, keys: list[Agg]) -> Any:
        import ibis

        t = self.facts.events if source == "events" else self.facts.orders
        if source == "events":
            types = sorted({k.event for k in keys})
            preds = [t.event_type.isin(types)]
        else:
            kinds = sorted({ORDER_KIND[k.event] for k in keys})
            preds = [t.kind.isin(kinds)]
        preds += [
            t.customer_id.notnull(),
            t.occurred_at <= ibis.literal(self.as_of),
            t.dt <= ibis.literal(self.today),
        ]
        starts = [window_days(k.window, self.today)[0] if k.window else None for k in keys]
        if all(s is not None for s in starts):
            preds.append(t.dt >= ibis.literal(min(s for s in starts if s is not None)))
        t = t.filter(*preds)
        if source == "events":
            extracted = {}
            getter = None
            for k in keys:
                for name in sorted(_fields(k) | ({k.prop} if k.prop else set())):
                    col = self.prop_column(k.event, name)
                    if col == name or col in extracted:
                        continue
                    prop = self.cat.prop(k.event, name)
                    kind = prop.kind if prop is not None else "str"
                    getter = getter or _json_getter(self.dialect)
                    raw = getter(t.properties, f"$.{name}")
                    typ = _IBIS_TYPES[kind]
                    value = raw if typ == "string" else raw.try_cast(typ)
                    extracted[col] = ibis.ifelse(t.event_type == k.event, value, ibis.null(typ))
            if extracted:
                t = t.mutate(**extracted)
        return t

    def prop_column(self, event: str, name: str) -> str:
        """The scan column of a property: typed columns as they are, JSON ones extracted."""
        if name == "source":
            return name
        return f"p__{event}__{name}"

    def field_expr(self, t: Any, source: str, event: str, name: str) -> Any:
        if source == "orders":
            return t[name]
        return t[self.prop_column(event, name)]

    def aggregate(self, source: str) -> Any:
        chosen = [(k, col) for k, src, col in self.aggs.values() if src == source]
        if not chosen:
            return None
        t = self.scan(source, [k for k, _ in chosen])
        metrics = {}
        for key, col in chosen:
            if source == "events":
                cond = t.event_type == key.event
            else:
                cond = t.kind == ORDER_KIND[key.event]
            wp = self.window_pred(t, key.window)
            if wp is not None:
                cond = cond & wp
            for w in key.where:
                cond = cond & self.expr(w, t, (source, key.event))
            value: Any = (
                self.field_expr(t, source, key.event, key.prop) if key.prop is not None else None
            )
            fn = key.fn
            if fn == "count":
                metrics[col] = t.count(where=cond)
            elif fn == "count_distinct":
                metrics[col] = value.nunique(where=cond)
            elif fn == "sum":
                metrics[col] = value.sum(where=cond)
            elif fn == "avg":
                metrics[col] = value.mean(where=cond)
            elif fn == "min":
                metrics[col] = value.min(where=cond)
            elif fn == "max":
                metrics[col] = value.max(where=cond)
            elif fn == "first_value":
                metrics[col] = value.argmin(t.occurred_at, where=cond & value.notnull())
            elif fn == "last_value":
                metrics[col] = value.argmax(t.occurred_at, where=cond & value.notnull())
            elif fn == "days_since":
                metrics[col] = (
                    t.dt.min(where=cond) if key.which == "first" else t.dt.max(where=cond)
                )
            else:  # pragma: no cover - the registry and this list agree
                raise ValueError(fn)
        return t.group_by("customer_id").aggregate(**metrics)

    def table(self) -> Any:
        """The universe with every aggregate column."""
        cust = self.facts.customers
        base = cust.filter(cust.customer_id.notnull()).select("customer_id", *sorted(self.profile))
        for source in ("events", "orders"):
            agg = self.aggregate(source)
            if agg is None:
                continue
            cols = [c for c in agg.columns if c != "customer_id"]
            joined = base.left_join(agg, base.customer_id == agg.customer_id)
            base = joined.select(*[base[c] for c in base.columns], *[agg[c] for c in cols])
        return base

    # ------------------------------------------------------------ expressions

    def expr(self, node: Node, t: Any, scope: tuple[str, str] | None = None) -> Any:
        """``node`` over table ``t``: the joined universe (scope None) or a fact scan inside
        an aggregate's filters (scope = (source, event))."""
        import ibis

        if isinstance(node, Lit):
            return ibis.literal(node.value)
        if isinstance(node, Field):
            if scope is None:
                return t[node.name]
            return self.field_expr(t, scope[0], scope[1], node.name)
        if isinstance(node, Not):
            return ~self.expr(node.arg, t, scope)
        if isinstance(node, BoolOp):
            parts = [self.expr(a, t, scope) for a in node.args]
            if node.op == "and":
                return reduce(lambda a, b: a & b, parts)
            return reduce(lambda a, b: a | b, parts)
        if isinstance(node, Compare):
            left, right = self.expr(node.left, t, scope), self.expr(node.right, t, scope)
            left, right = _align(left, right)
            return {
                "=": lambda: left == right,
                "!=": lambda: left != right,
                "<": lambda: left < right,
                "<=": lambda: left <= right,
                ">": lambda: left > right,
                ">=": lambda: left >= right,
            }[node.op]()
        if isinstance(node, InList):
            left = self.expr(node.left, t, scope)
            values = [v.value for v in node.values]
            return left.notin(values) if node.negate else left.isin(values)
        if isinstance(node, Between):
            left = self.expr(node.left, t, scope)
            low, high = self.expr(node.low, t, scope), self.expr(node.high, t, scope)
            left, low = _align(left, low)
            left, high = _align(left, high)
            inside = left.between(low, high)
            return ~inside if node.negate else inside
        if isinstance(node, Contains):
            left = self.expr(node.left, t, scope)
            value = node.value.value
            if left.type().is_array():
                return left.contains(value)
            return left.contains(json.dumps(value, ensure_ascii=False))
        if isinstance(node, Arith):
            left, right = self.expr(node.left, t, scope), self.expr(node.right, t, scope)
            if node.op == "+":
                return left + right
            if node.op == "-":
                return left - right
            if node.op == "*":
                return left * right
            return left / right.nullif(0)
        if isinstance(node, Neg):
            return -self.expr(node.arg, t, scope)
        return self.agg_value(node, t)

    def agg_value(self, node: Agg, t: Any) -> Any:
        import ibis

        col = t[self.aggs[to_text(_agg_key(node))][2]]
        if node.fn == "exists":
            return ibis.coalesce(col, 0) > 0
        if node.fn in ("count", "count_distinct", "sum"):
            return ibis.coalesce(col, 0)
        if node.fn == "days_since":
            return ibis.literal(self.today).delta(col, unit="day")
        return col


def _align(left: Any, right: Any) -> tuple[Any, Any]:
    """A timestamp compared with a date compares its (UTC) day."""
    lt, rt = left.type(), right.type()
    if lt.is_timestamp() and rt.is_date():
        return left.date(), right
    if lt.is_date() and rt.is_timestamp():
        return left, right.date()
    return left, right


def compile_rules(
    rules: Mapping[str, Rule],
    catalogue: EventCatalogue,
    facts: Facts,
    as_of: datetime,
    tz: str,
    *,
    dialect: str | None = None,
    values: bool = False,
) -> Any:
    """One Ibis table: ``customer_id`` and, per rule key, a boolean column (member or not) —
    or, with ``values=True``, the rule's value (value expressions such as
    ``sum(order_paid.paid_fen, last 365d)``; missing where the rule has none).

    Every rule is checked first; the first bad one raises (with ``tag`` = its key) before any
    expression is built, so nothing runs half-compiled.
    """
    good, bad = check_rules(rules, catalogue, None if values else "bool")
    if bad:
        raise next(iter(bad.values()))
    for key in good:
        if key == "customer_id":
            raise ValueError("'customer_id' cannot be a rule key")
    comp = _Compiler(catalogue, facts, as_of, tz, dialect)
    for checked in good.values():
        comp.plan(checked.tree)
    t = comp.table()
    columns = {}
    for key, checked in good.items():
        e = comp.expr(checked.tree, t)
        columns[key] = e.fill_null(False) if not values else e
    return t.select("customer_id", **columns)


def compile_rule(
    rule: Rule,
    catalogue: EventCatalogue,
    facts: Facts,
    as_of: datetime,
    tz: str,
    *,
    dialect: str | None = None,
) -> Any:
    """The members of one rule: an Ibis table with the column ``customer_id``."""
    t = compile_rules({"member": rule}, catalogue, facts, as_of, tz, dialect=dialect)
    return t.filter(t.member).select("customer_id")


def compile_value(
    rule: Rule,
    catalogue: EventCatalogue,
    facts: Facts,
    as_of: datetime,
    tz: str,
    *,
    dialect: str | None = None,
) -> Any:
    """Per-customer values of a value expression: ``customer_id``, ``value``."""
    return compile_rules({"value": rule}, catalogue, facts, as_of, tz, dialect=dialect, values=True)


def members(result: Any) -> dict[str, list[str]]:
    """Sorted member ids per rule key from an executed :func:`compile_rules` result (a pyarrow
    table)."""
    import pyarrow.compute as pc

    ids = result.column("customer_id")
    out: dict[str, list[str]] = {}
    for name in result.column_names:
        if name == "customer_id":
            continue
        chosen = pc.filter(ids, pc.fill_null(result.column(name), False))
        out[name] = sorted(chosen.to_pylist())
    return out


def to_sql(
    rule: Rule | Mapping[str, Rule],
    catalogue: EventCatalogue,
    as_of: datetime,
    tz: str,
    dialect: str = "duckdb",
    *,
    facts: Facts | None = None,
) -> str:
    """The SQL of a rule (its members) or of a set of rules (one boolean column each) for
    ``dialect``: duckdb, spark, trino or clickhouse. Tables are named events, orders and
    customers unless ``facts`` says otherwise."""
    import ibis

    from siyu.tags.lang.facts import unbound_facts

    name = _DIALECT_ALIASES.get(dialect, dialect)
    if name not in DIALECTS:
        raise Invalid("tags.bad_dialect", dialect=dialect, known=", ".join(("spark", *DIALECTS)))
    if name == "pyspark":
        _spark_options()
    if facts is None:
        profile = {n: p.kind for n, p in catalogue.profile.items()}
        facts = unbound_facts(profile)
    if isinstance(rule, Mapping) and not _is_tree(rule):
        expr = compile_rules(rule, catalogue, facts, as_of, tz, dialect=name)
    else:
        expr = compile_rule(cast(Rule, rule), catalogue, facts, as_of, tz, dialect=name)
    return str(ibis.to_sql(expr, dialect=name))


def _spark_options() -> None:
    """Ibis' Spark compiler reads the backend's options, registered when the backend loads;
    printing Spark SQL must not need PySpark installed."""
    import ibis

    if ibis.options.pyspark is not None:
        return
    try:
        _ = ibis.pyspark
    except ImportError:

        class _Options(ibis.config.Config):  # type: ignore[misc]
            treat_nan_as_null: bool = False

        ibis.options.pyspark = _Options()


def _is_tree(value: Mapping[str, Any]) -> bool:
    return any(k in value for k in ("op", "fn", "value", "field", "date"))


__all__ = [
    "Checked",
    "Rule",
    "check_rule",
    "check_rules",
    "compile_rule",
    "compile_rules",
    "compile_value",
    "members",
    "to_sql",
    "to_text",
    "window_days",
]
