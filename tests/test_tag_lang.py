"""The tag language's text and JSON forms: parsing, round trips, errors with positions and
type checks against the event catalogue."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu.core.errors import Invalid
from siyu.tags import lang
from siyu.tags.lang.ast import Agg, BoolOp, Compare, Lit, Window

CAT = lang.STANDARD_CATALOGUE.__class__(
    lang.STANDARD_CATALOGUE.events,
    lang.EventCatalogue.build({}, {"city": "str", "birthday": "date"}).profile,
)
AS_OF = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)


def test_issue_example_parses_to_the_expected_tree() -> None:
    tree = lang.parse(
        'count(order_paid, channel in ("mini_mall","pos"), last 90d) >= 3 '
        "and days_since(last order_paid) <= 30"
    )
    assert isinstance(tree, BoolOp) and tree.op == "and"
    left, right = tree.args
    assert isinstance(left, Compare) and left.op == ">="
    assert isinstance(left.left, Agg)
    assert left.left.fn == "count" and left.left.event == "order_paid"
    assert left.left.window == Window("last", n=90, unit="d")
    assert left.right == Lit(3)
    assert isinstance(right, Compare) and isinstance(right.left, Agg)
    assert right.left.which == "last"


def test_precedence_and_literals() -> None:
    tree = lang.parse("a = 1 or b = 2 and not c = 3")
    assert isinstance(tree, BoolOp) and tree.op == "or"
    assert isinstance(tree.args[1], BoolOp) and tree.args[1].op == "and"
    assert lang.parse("x >= ¥12.5") == lang.parse("x >= 1250")
    assert lang.parse("x = 2026-01-31").right == Lit(date(2026, 1, 31))  # type: ignore[union-attr]
    assert lang.parse("x = 'it\\'s'").right == Lit("it's")  # type: ignore[union-attr]
    assert lang.parse("A AND B") == lang.parse("A and B")


RULES = [
    'count(order_paid, channel in ("mini_mall", "pos"), last 90d) >= 3 '
    "and days_since(last order_paid) <= 30",
    "sum(order_paid.paid_fen, this month) / count(order_paid) > 1250.5",
    'not exists(coupon_redeemed, between 2026-01-01 and 2026-02-01) or city = "上海"',
    'avg(survey_answered.csat, store_code = "A" or csat between 1 and 2, last 12w) < 2.5',
    "a - -3 * (b + 2) = 1 and x not in (1, 2) and y not between 1 and 2",
    'exists(order_paid, coupon_codes contains "WELCOME", since 2026-03-01)',
    "(a = 1 and b = 2) and c = 3",
    'first_value(order_paid.channel, last month) = "pos" and max(order_paid.paid_fen) > -1',
]


@pytest.mark.parametrize("rule", RULES)
def test_text_json_round_trip(rule: str) -> None:
    tree = lang.parse(rule)
    text = lang.to_text(tree)
    assert lang.parse(text) == tree
    assert lang.from_json(lang.to_json(tree)) == tree
    assert lang.to_text(lang.from_json(lang.to_json(tree))) == text


_names = st.sampled_from(["a", "b", "paid_fen", "city"])
_lits = st.one_of(
    st.integers(-1000, 10**9),
    st.text("abc 上海\"'\\", max_size=5),
    st.booleans(),
    st.dates(date(2000, 1, 1), date(2030, 12, 31)),
    st.floats(0.5, 1000, allow_nan=False).map(lambda f: round(f, 2)),
)


def _trees(depth: int = 3) -> st.SearchStrategy[dict[str, object]]:
    leaf = st.one_of(
        _lits.map(lambda v: {"date": v.isoformat()} if isinstance(v, date) else {"value": v}),
        _names.map(lambda n: {"field": n}),
        st.builds(
            lambda fn, ev, w: (
                {"fn": fn, "event": ev, "window": w} if w else {"fn": fn, "event": ev}
            ),
            st.sampled_from(["count", "exists"]),
            st.sampled_from(["order_paid", "page_viewed"]),
            st.one_of(
                st.none(),
                st.integers(1, 400).map(lambda n: {"kind": "last", "n": n, "unit": "d"}),
                st.just({"kind": "this_month"}),
            ),
        ),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda a, b: {"op": "and", "args": [a, b]}, inner, inner),
            st.builds(lambda a, b: {"op": "or", "args": [a, b]}, inner, inner),
            st.builds(lambda a: {"op": "not", "arg": a}, inner),
            st.builds(
                lambda op, a, b: {"op": op, "left": a, "right": b},
                st.sampled_from([">=", "=", "!=", "+", "-", "*", "/"]),
                inner,
                inner,
            ),
        ),
        max_leaves=8,
    )


@settings(max_examples=200, deadline=None)
@given(_trees())
def test_any_json_tree_round_trips_through_text(tree: dict[str, object]) -> None:
    node = lang.from_json(tree)
    assert lang.parse(lang.to_text(node)) == node
    assert lang.from_json(lang.to_json(node)) == node


def _error(rule: str, catalogue: lang.EventCatalogue = CAT) -> Invalid:
    with pytest.raises(Invalid) as info:
        lang.check_rule(rule, catalogue)
    return info.value


@pytest.mark.parametrize(
    ("rule", "code", "line", "column", "says"),
    [
        ("count(order_paid", "tags.parse_error", 1, 17, "expected ')'"),
        ("count(order_paid) >=", "tags.parse_error", 1, 21, "expected a value"),
        ("count(order_paid) >= 3 3", "tags.parse_error", 1, 24, "unexpected '3'"),
        ('count(order_paid, channel = "pos) > 1', "tags.parse_error", 1, 29, "not closed"),
        ("count(order_paid) # 1", "tags.parse_error", 1, 19, "unexpected character"),
        ("", "tags.parse_error", 1, 1, "empty"),
        ("exists(order_paid,\n  last 3x)", "tags.parse_error", 2, 9, "unit"),
        ("exists(order_paid, last 0d)", "tags.bad_window", 1, 25, "≥ 1"),
        ("exists(order_paid, last 3d, this month)", "tags.bad_window", 1, 29, "at most one"),
        (
            "exists(order_paid, between 2026-03-01 and 2026-02-01)",
            "tags.bad_window",
            1,
            20,
            "before it starts",
        ),
        ("cnt(order_paid) > 1", "tags.unknown_function", 1, 1, "unknown function 'cnt'"),
        ("count(order_payed) > 1", "tags.unknown_event", 1, 7, "did you mean 'order_paid'"),
        (
            'count(order_paid,\n      chanel = "pos") > 1',
            "tags.unknown_property",
            2,
            7,
            "did you mean 'channel'",
        ),
        ("sum(order_paid.amount) > 1", "tags.unknown_property", 1, 16, "no property 'amount'"),
        ("count(order_paid, channel = 3) > 1", "tags.type_error", 1, 29, "compares a string"),
        ('count(order_paid, channel = "mini") > 1', "tags.type_error", 1, 29, "'mini_mall'"),
        ('count(order_paid, channel in ("pos", 1)) > 1', "tags.type_error", 1, 38, "number"),
        ("sum(order_paid.channel) > 1", "tags.type_error", 1, 16, "needs a number"),
        ("avg(order_paid.items) > 1", "tags.type_error", 1, 16, "complex"),
        ('count(order_paid) > "3"', "tags.type_error", 1, 21, "compares a number"),
        ("count(order_paid)", "tags.type_error", 1, 1, "must be a condition"),
        ("count(order_paid) + exists(page_viewed) > 1", "tags.type_error", 1, 21, "needs numbers"),
        ("exists(order_paid) and 3", "tags.type_error", 1, 24, "joins conditions"),
        ("count(order_paid, paid_fen) > 1", "tags.type_error", 1, 19, "filter must be"),
        ('count(order_paid, coupon_codes = "A") > 1', "tags.type_error", 1, 19, "contains"),
        ('count(order_paid, channel contains "A") > 1', "tags.type_error", 1, 19, "list"),
        ("sum(order_paid) > 1", "tags.bad_argument", 1, 5, "needs a property"),
        ("count(order_paid.paid_fen) > 1", "tags.bad_argument", 1, 18, "no property"),
        ("exists(last order_paid)", "tags.bad_argument", 1, 1, "first' or 'last"),
        ("exists(order_paid, exists(page_viewed))", "tags.bad_argument", 1, 20, "inside"),
        ('country = "CN"', "tags.unknown_field", 1, 1, "not a profile column"),
        ("paid_fen > 1", "tags.unknown_field", 1, 1, "inside a function"),
    ],
)
def test_errors_point_at_the_position_and_say_why(
    rule: str, code: str, line: int, column: int, says: str
) -> None:
    exc = _error(rule)
    assert exc.code == code
    pos = exc.params["position"]
    assert (pos["line"], pos["column"]) == (line, column), exc.params["reason"]
    assert says in exc.params["reason"]
    offset = pos["offset"]
    lines = rule.split("\n")
    assert sum(len(x) + 1 for x in lines[: line - 1]) + column - 1 == offset
    # both languages render it, with the position
    assert f"{line}" in exc.message("en") and f"{column}" in exc.message("zh-CN")


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        ({"op": "and", "args": [{"value": True}]}, "$.args"),
        ({"op": "xor", "left": {"value": 1}, "right": {"value": 2}}, "$.op"),
        ({"op": ">=", "left": {"fn": "count"}, "right": {"value": 2}}, "$.left"),
        ({"op": ">=", "left": {"fn": "cnt", "event": "x"}, "right": {"value": 2}}, "$.left.fn"),
        (
            {"fn": "exists", "event": "order_paid", "window": {"kind": "last", "n": 0}},
            "$.window.n",
        ),
        ({"fn": "exists", "event": "order_paid", "where": [{"value": [1]}]}, "$.where[0].value"),
        ([1, 2], "$"),
    ],
)
def test_bad_json_trees_name_the_path(tree: object, path: str) -> None:
    with pytest.raises(Invalid) as info:
        lang.check_rule(tree, CAT)  # type: ignore[arg-type]
    assert info.value.code == "tags.bad_tree"
    assert info.value.params["path"] == path


def test_type_errors_in_json_trees_point_into_their_canonical_text() -> None:
    tree = {
        "op": "and",
        "args": [
            {"fn": "exists", "event": "group_joined"},
            {"op": ">", "left": {"fn": "count", "event": "order_payed"}, "right": {"value": 1}},
        ],
    }
    exc = _error(tree)  # type: ignore[arg-type]
    assert exc.code == "tags.unknown_event"
    text = exc.params["rule"]
    assert text[exc.params["position"]["offset"] :].startswith("order_payed")


def test_a_pack_with_one_bad_rule_compiles_nothing() -> None:
    rules = {"good": "exists(order_paid)", "bad": 'count(order_paid, chanel = "pos") > 1'}
    good, bad = lang.check_rules(rules, CAT)
    assert list(good) == ["good"] and list(bad) == ["bad"]
    assert bad["bad"].params["tag"] == "bad"
    facts = lang.unbound_facts()
    with pytest.raises(Invalid) as info:
        lang.compile_rules(rules, CAT, facts, AS_OF, "Asia/Shanghai")
    assert info.value.code == "tags.unknown_property"


def test_profile_and_date_comparisons_type() -> None:
    assert lang.check_rule('birthday >= 1990-01-01 and city != ""', CAT).type == "bool"
    assert lang.check_rule("sum(order_paid.paid_fen) / 100", CAT, expect=None).type == "number"
    exc = _error("birthday >= 3")
    assert exc.code == "tags.type_error"


def test_catalogue_from_a_registry_shape() -> None:
    class Desc:
        def __init__(self, name: str, kind: str, choices: tuple[str, ...] | None = None):
            self.name, self.kind, self.choices = name, kind, choices

    class Registry:
        def __init__(self) -> None:
            self.specs = {("visit", 1): None, ("visit", 2): None}

        def types(self) -> set[str]:
            return {"visit"}

        def latest(self, t: str) -> int:
            return 2

        def fields(self, t: str, v: int) -> list[Desc]:
            if v == 1:
                return [Desc("store", "str")]
            return [Desc("store", "str"), Desc("kind", "str", ("a", "b"))]

    cat = lang.EventCatalogue.from_registry(Registry())
    assert lang.check_rule('count(visit, store = "x", kind = "a") > 1', cat).type == "bool"
    assert _error('exists(visit, kind = "c")', cat).code == "tags.type_error"


def test_to_sql_refuses_an_unknown_dialect() -> None:
    with pytest.raises(Invalid) as info:
        lang.to_sql("exists(order_paid)", CAT, AS_OF, "Asia/Shanghai", "oracle")
    assert info.value.code == "tags.bad_dialect"
