"""The tag language: rules in text or as a JSON tree, checked against the event catalogue and
compiled to Ibis expressions (DuckDB by default; any Ibis SQL backend). See docs/tags.md.

    from siyu.tags import lang
    cat = lang.STANDARD_CATALOGUE            # or EventCatalogue.from_registry(registry)
    facts = lang.facts_from_lake(engine, brand.id, identity_map)
    table = lang.compile_rules({"vip": "sum(order_paid.paid_fen, last 365d) >= ¥3000"},
                               cat, facts, as_of, "Asia/Shanghai")
    members = lang.members(engine.execute(table))      # {"vip": [customer ids]}
    print(lang.to_sql("count(order_paid, last 90d) >= 3", cat, as_of, tz, "clickhouse"))
"""

from siyu.tags.lang.ast import Node
from siyu.tags.lang.catalogue import EventCatalogue, Prop
from siyu.tags.lang.compiler import (
    Checked,
    Rule,
    check_rule,
    check_rules,
    compile_rule,
    compile_rules,
    compile_value,
    members,
    to_sql,
    window_days,
)
from siyu.tags.lang.facts import (
    Facts,
    facts_from_arrow,
    facts_from_lake,
    facts_from_parquet,
    unbound_facts,
)
from siyu.tags.lang.functions import FUNCTIONS, WINDOWS
from siyu.tags.lang.pack import STANDARD_CATALOGUE, STANDARD_PACK, pack_rules
from siyu.tags.lang.parser import from_json, normalise, parse, to_json, to_text

__all__ = [
    "FUNCTIONS",
    "STANDARD_CATALOGUE",
    "STANDARD_PACK",
    "WINDOWS",
    "Checked",
    "EventCatalogue",
    "Facts",
    "Node",
    "Prop",
    "Rule",
    "check_rule",
    "check_rules",
    "compile_rule",
    "compile_rules",
    "compile_value",
    "facts_from_arrow",
    "facts_from_lake",
    "facts_from_parquet",
    "from_json",
    "members",
    "normalise",
    "pack_rules",
    "parse",
    "to_json",
    "to_sql",
    "to_text",
    "unbound_facts",
    "window_days",
]
