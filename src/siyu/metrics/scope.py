"""The customer dimension KPIs are grouped and scoped by, read from the operational store.

:func:`load` returns, for one brand and one actor's data scope, two Arrow tables:

- ``customers``: one row per active customer in scope — ``customer_id``, ``store`` (home
  unit code), ``region`` (the nearest ancestor-or-self unit of kind ``region``), ``guide``
  (owner staff id) and ``first_seen`` (UTC);
- ``idmap``: today's identity map (``identity_key`` → ``customer_id``) of those customers.

Every KPI query inner-joins its facts to ``customers``: a customer outside the actor's data
scope contributes to nothing, and drill-downs can only list customers in scope. The lake holds
identity keys only, so the join with the map is also what attributes facts to customers as
they are today (after OneID merges and splits).

:func:`save` / :func:`read` keep a snapshot of a dimension as Parquet (the benchmark reads
one; a nightly job could too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize, unit_filter

if TYPE_CHECKING:
    import pyarrow as pa

    from siyu.org.models import Brand

PERMISSION = "metrics.read"


@dataclass
class Dimensions:
    brand_id: str
    tz: str
    customers: pa.Table
    idmap: pa.Table
    # restricted to a data scope narrower than the brand
    scoped: bool = False
    # code/id → display name, per dimension ("store", "region", "guide", "sop")
    labels: dict[str, dict[str, str]] = field(default_factory=dict)


def customer_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("customer_id", pa.string()),
            ("store", pa.string()),
            ("region", pa.string()),
            ("guide", pa.string()),
            ("first_seen", pa.timestamp("us", tz="UTC")),
        ]
    )


def _units(db: Session, brand_id: str) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
    """Unit id → (its code, its region's code); and code → name for stores and regions."""
    from siyu.org.models import OrgUnit

    rows = list(
        db.execute(
            select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.kind, OrgUnit.path).where(
                OrgUnit.brand_id == brand_id
            )
        )
    )
    by_id = {r.id: r for r in rows}
    out: dict[str, tuple[str, str | None]] = {}
    for r in rows:
        region = None
        for uid in reversed([p for p in (r.path or "").split("/") if p]):
            unit = by_id.get(uid)
            if unit is not None and unit.kind == "region":
                region = unit.code
                break
        if region is None and r.kind == "region":
            region = r.code
        out[r.id] = (r.code, region)
    names = {r.code: r.name for r in rows}
    return out, names


def load(db: Session, actor: Actor, brand: Brand) -> Dimensions:
    """The dimension of the customers ``actor`` may see (checks ``metrics.read``)."""
    import pyarrow as pa

    from siyu.customers import queries as customer_queries
    from siyu.customers.models import Customer

    ref = org_queries.brand_ref(brand)
    authorize(actor, PERMISSION, ref)
    everything = unit_filter(actor, ref).all
    units, names = _units(db, brand.id)
    stmt = select(
        Customer.id, Customer.owner_staff_id, Customer.home_unit_id, Customer.first_seen_at
    ).where(Customer.brand_id == brand.id, Customer.status == "active")
    if not everything:
        stmt = stmt.where(customer_queries.scope_filter(db, actor, brand))
    rows = list(db.execute(stmt.order_by(Customer.id)))
    ids = [r[0] for r in rows]
    home = [units.get(r[2]) if r[2] else None for r in rows]
    seen = [r[3].replace(tzinfo=UTC) if r[3] and r[3].tzinfo is None else r[3] for r in rows]
    customers = pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            "store": pa.array([h[0] if h else None for h in home], pa.string()),
            "region": pa.array([h[1] if h else None for h in home], pa.string()),
            "guide": pa.array([r[1] for r in rows], pa.string()),
            "first_seen": pa.array(seen, pa.timestamp("us", tz="UTC")),
        },
        schema=customer_schema(),
    )
    idmap = customer_queries.identity_map(db, brand.id, None if everything else ids)
    guides = {g for g in customers.column("guide").to_pylist() if g}
    labels = {
        "store": names,
        "region": names,
        "guide": org_queries.staff_names(db, guides) if guides else {},
    }
    return Dimensions(brand.id, brand.timezone, customers, idmap, not everything, labels)


def restrict(dims: Dimensions, column: str, value: str) -> Dimensions:
    """The same dimension limited to customers whose ``column`` is ``value`` (a drill-down
    into one store or region; a guide's own customers)."""
    import pyarrow.compute as pc

    keep = pc.equal(dims.customers.column(column), value)
    customers = dims.customers.filter(keep)
    ids = customers.column("customer_id")
    idmap = dims.idmap.filter(pc.is_in(dims.idmap.column("customer_id"), value_set=ids))
    return Dimensions(dims.brand_id, dims.tz, customers, idmap, True, dims.labels)


def save(dims: Dimensions, folder: Path) -> None:
    """Write a snapshot (two Parquet files) of a brand-wide dimension."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(dims.customers, folder / "customers.parquet", compression="zstd")
    pq.write_table(dims.idmap, folder / "idmap.parquet", compression="zstd")


def read(folder: Path, brand_id: str, tz: str = "Asia/Shanghai") -> Dimensions:
    """A snapshot written by :func:`save` (brand-wide: no data scope applied)."""
    import pyarrow.parquet as pq

    customers = pq.read_table(folder / "customers.parquet")
    idmap = pq.read_table(folder / "idmap.parquet")
    return Dimensions(brand_id, tz, customers, idmap, False, {})
