"""Rule tags on a brand: the catalogue rules are checked against (the brand's event types,
standard and custom, plus profile columns), normalising a rule for storage, and evaluating
the brand's rule tags in a run.

Profile columns rules may name: ``city``, ``gender`` (text) and ``member_level`` (text, the
CRM's level attribute). Segments add one boolean column per tag, ``tag_<key>`` (see
:mod:`siyu.tags.segments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.tags import lang
from siyu.tags.compute import Context, Members
from siyu.tags.models import Tag

if TYPE_CHECKING:
    import pyarrow as pa

    from siyu.org.models import Brand

PROFILE: dict[str, str] = {"city": "str", "gender": "str", "member_level": "str"}


def catalogue(db: Session, brand: Brand, extra: Mapping[str, str] | None = None) -> Any:
    """The brand's :class:`lang.EventCatalogue` (custom event types included)."""
    from siyu.ingest.registry import brand_registry

    return lang.EventCatalogue.from_registry(
        brand_registry(db, brand.id), {**PROFILE, **(extra or {})}
    )


def normalise(db: Session, brand: Brand, text: str | None, tree: Mapping[str, Any] | None) -> str:
    """The canonical text of a rule given as text or as the builder's JSON tree (when both
    are given they must say the same); raises ``Invalid`` with the position and reason."""
    from siyu.core.errors import Invalid

    if not text and not tree:
        raise Invalid("tags.rule_required")
    cat = catalogue(db, brand)
    checked = lang.check_rule(text if text else dict(tree or {}), cat)
    canonical = str(lang.to_text(checked.tree))
    if text and tree:
        other = str(lang.to_text(lang.check_rule(dict(tree), cat).tree))
        if other != canonical:
            raise Invalid("tags.rule_mismatch", text=canonical, tree=other)
    return canonical


def customers_table(db: Session, brand_id: str, ids: list[str] | None) -> pa.Table:
    """The universe with its profile columns, from the operational store."""
    import pyarrow as pa

    from siyu.customers.models import Customer

    cols: dict[str, list[Any]] = {"customer_id": [], "city": [], "gender": [], "member_level": []}
    base = [Customer.brand_id == brand_id, Customer.status == "active"]
    conds = (
        [base]
        if ids is None
        else [[*base, Customer.id.in_(ids[i : i + 500])] for i in range(0, len(ids), 500)]
    )
    for cond in conds:
        stmt = select(Customer.id, Customer.city, Customer.gender, Customer.attributes).where(*cond)
        for cid, city, gender, attrs in db.execute(stmt):
            cols["customer_id"].append(cid)
            cols["city"].append(city)
            cols["gender"].append(gender)
            level = (attrs or {}).get("level")
            cols["member_level"].append(None if level is None else str(level))
    return pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})


def facts(ctx: Context, customers: pa.Table | None = None) -> Any:
    """``lang.Facts`` of the run's universe on its engine."""
    if customers is None:
        customers = customers_table(ctx.db, ctx.brand.id, ctx.subset)
    return lang.facts_from_lake(ctx.engine, ctx.brand.id, ctx.idmap_arrow, customers)


def evaluate(ctx: Context, tags: list[Tag]) -> dict[str, Members | Exception]:
    """Members of each rule tag. Rules are checked one by one (a bad rule fails alone) and
    the good ones compiled together: one scan per fact table for all of them."""
    cat = catalogue(ctx.db, ctx.brand)
    rules = {t.key: t.rule or "" for t in tags}
    good, bad = lang.check_rules(rules, cat)
    out: dict[str, Members | Exception] = {}
    by_key = {t.key: t for t in tags}
    for key, exc in bad.items():
        out[by_key[key].id] = exc
    if good:
        table = lang.compile_rules(
            {k: c.text for k, c in good.items()},
            cat,
            facts(ctx),
            ctx.as_of,
            ctx.brand.timezone,
        )
        result = ctx.engine.execute(table)
        for key, ids in lang.members(result).items():
            out[by_key[key].id] = Members.of(ids)
    return out


def active_rules(db: Session, brand_id: str) -> dict[str, str]:
    """Key → rule text of the brand's active rule tags."""
    rows = db.execute(
        select(Tag.key, Tag.rule).where(
            Tag.brand_id == brand_id, Tag.kind == "rule", Tag.status == "active"
        )
    )
    return {k: r for k, r in rows if r}
