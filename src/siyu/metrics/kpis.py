"""KPIs for any period, grouped by brand, region, store, guide, group, channel code or SOP.

The entry points (the contracts, dashboards and reports call these):

    table = compute_kpis(db, actor, brand, start=date(2026, 11, 1), end=date(2026, 11, 30),
                         group_by="store")
    table.rows[0].group, table.rows[0].values["diversion_rate"].value
    page = customers_behind(db, actor, brand, "diversion_rate", start=…, end=…,
                            group_by="store", group="SH01")

- ``start``/``end`` are brand-local days, both included.
- ``group_by``: ``None`` (one row, group ``"all"``) or one of
  :data:`~siyu.metrics.definitions.GROUP_BYS`.
- ``kpis``: keys of :data:`~siyu.metrics.definitions.KPIS` (``None``: all of them).
- the actor's data scope applies: a store manager's table only counts their customers, and
  ``customers_behind`` only lists them (PII masked by ``customers.queries``).

:func:`compute` is the same computation on an already loaded dimension (no operational
store: the benchmark uses it on a snapshot). Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.metrics import scope as dim_scope
from siyu.metrics import sql
from siyu.metrics.definitions import BY_KEY, GROUP_BYS, KPI_KEYS, Params
from siyu.metrics.errors import MetricsInvalid

if TYPE_CHECKING:
    import pyarrow as pa

    from siyu.customers.queries import CustomerRow
    from siyu.org.models import Brand

MAX_DAYS = 3660


@dataclass
class KpiValue:
    """One KPI in one group: ``value`` (None when there is no denominator or the KPI is
    pending), and the two sides of its formula (``numerator`` ÷ ``denominator``)."""

    value: float | int | None
    numerator: float | int | None = None
    denominator: int | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "note": self.note,
        }


@dataclass
class KpiRow:
    group: str
    label: str
    customers: int
    values: dict[str, KpiValue]


@dataclass
class KpiTable:
    brand_id: str
    start: date
    end: date
    group_by: str | None
    kpis: list[str]
    rows: list[KpiRow]
    params: Params
    scoped: bool
    as_of: datetime
    seconds: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)

    def row(self, group: str) -> KpiRow:
        for r in self.rows:
            if r.group == group:
                return r
        raise KeyError(group)

    def value(self, kpi: str, group: str = "all") -> float | int | None:
        return self.row(group).values[kpi].value


# ---------------------------------------------------------------- inputs


@dataclass
class Window:
    """A period turned into the parameters of the SQL."""

    start: date
    end: date
    tz: str
    params: Params
    as_of: datetime

    def bind(self) -> dict[str, Any]:
        zone = ZoneInfo(self.tz)
        s = datetime.combine(self.start, datetime.min.time(), zone).astimezone(UTC)
        e = datetime.combine(self.end + timedelta(days=1), datetime.min.time(), zone).astimezone(
            UTC
        )
        silent_from = e - timedelta(days=self.params.silent_days)
        as_of = self.as_of.astimezone(UTC)
        lo_day = min(self.start, silent_from.astimezone(zone).date())
        value_from_day = self.end - timedelta(days=self.params.value_days - 1)

        def midnight(day: date) -> datetime:
            return datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)

        def us(moment: datetime) -> int:
            return int(moment.timestamp() * 1_000_000)

        return {
            "s_us": us(s),
            "e_us": us(e),
            "asof_us": us(as_of),
            "silent_from_us": us(silent_from),
            "lo_us": us(midnight(lo_day)),
            "value_from_us": us(midnight(value_from_day)),
            "retention_us": self.params.retention_days * 86_400_000_000,
            "within_us": self.params.response_within_hours * 3_600_000_000,
            "s": s,
            "e": e,
            "start_day": self.start,
            "end_day": self.end,
            "reply_day": self.end + timedelta(days=1 + self.params.response_within_hours // 24),
            "value_from_day": value_from_day,
            "value_from": midnight(value_from_day),
            "orders_from_day": min(self.start, value_from_day),
            "lo_day": lo_day,
            "lo": midnight(lo_day),
            "silent_from": silent_from,
            "asof": as_of,
            "asof_day": as_of.astimezone(zone).date() + timedelta(days=1),
            "retention_days": self.params.retention_days,
            "within_hours": self.params.response_within_hours,
        }


def used(text: str, bind: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``text`` names (DuckDB refuses parameters a statement does not use)."""
    import re

    names = set(re.findall(r"\$([a-z_]+)", text))
    return {k: v for k, v in bind.items() if k in names}


def check_period(start: date, end: date) -> None:
    if end < start:
        raise MetricsInvalid("metrics.bad_period", start=str(start), end=str(end))
    if (end - start).days > MAX_DAYS:
        raise MetricsInvalid("metrics.period_too_long", days=MAX_DAYS)


def check_group_by(group_by: str | None) -> None:
    if group_by is not None and group_by not in GROUP_BYS:
        raise MetricsInvalid(
            "metrics.bad_group_by", group_by=group_by, allowed=", ".join(GROUP_BYS)
        )


def check_kpis(kpis: list[str] | None) -> list[str]:
    if not kpis:
        return list(KPI_KEYS)
    unknown = [k for k in kpis if k not in BY_KEY]
    if unknown:
        raise MetricsInvalid("metrics.unknown_kpi", kpi=", ".join(unknown))
    return list(dict.fromkeys(kpis))


def channel_costs(
    db: Session, brand_id: str, names: dict[str, str] | None = None
) -> dict[str, int]:
    """Channel code → cost per acquired customer (fen): the cost set in the metrics
    (``metrics_channel_codes``), else — for a WeCom channel code (``wecom_contact_ways``)
    created with its total cost — that cost ÷ the friends it brought. Fills ``names`` (code →
    display name) when given."""
    from sqlalchemy import select

    from siyu.metrics.models import ChannelCode
    from siyu.wecom.ways import costs_per_friend

    rows = db.execute(
        select(ChannelCode.code, ChannelCode.cost_per_customer_fen, ChannelCode.name).where(
            ChannelCode.brand_id == brand_id
        )
    )
    out: dict[str, int] = {}
    for code, cost, name in rows:
        out[code] = int(cost or 0)
        if names is not None and name:
            names[code] = name
    for code, (cost, name) in costs_per_friend(db, brand_id).items():
        if code not in out:
            out[code] = cost
            if names is not None and name and code not in names:
                names[code] = name
    return out


def sop_members(db: Session, brand_id: str, before: datetime) -> tuple[Any, dict[str, str]]:
    """(customer_id, sop_id) of customers enrolled (not held out) before ``before``, and
    SOP id → name."""
    import pyarrow as pa
    from sqlalchemy import select

    from siyu.sop.models import Enrolment, Sop

    rows = list(
        db.execute(
            select(Enrolment.customer_id, Enrolment.sop_id).where(
                Enrolment.brand_id == brand_id,
                Enrolment.holdout.is_(False),
                Enrolment.entered_at < before,
            )
        )
    )
    names = dict(db.execute(select(Sop.id, Sop.name).where(Sop.brand_id == brand_id)).all())
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "sop_id": pa.array([r[1] for r in rows], pa.string()),
        }
    )
    return table, {str(k): str(v) for k, v in names.items()}


def koc_facts(
    db: Session, brand: Brand, s: datetime, e: datetime, as_of: datetime
) -> tuple[Any, int]:
    """The KOC sides per customer for the period ``[s, e)``: ``published`` = approved notes
    the customer authored, submitted in the period; ``brought`` = 1 when the customer's first
    touch by any approved note (``content.ugc`` attribution: a WeCom add with the note's
    state, a counted click on its link, a mall click naming it) falls in the period and before
    ``as_of``. Also the number of approved notes staff wrote in the period (no customer)."""
    import pyarrow as pa
    from sqlalchemy import select

    from siyu.content import ugc
    from siyu.content.models import KocNote
    from siyu.core.clock import as_utc

    notes = list(
        db.scalars(
            select(KocNote).where(KocNote.brand_id == brand.id, KocNote.status == "approved")
        )
    )
    end = min(e, as_utc(as_of))
    first: dict[str, datetime] = {}
    for touches in ugc.note_touches(db, brand, notes).values():
        for cid, (at, _via) in touches.items():
            if cid not in first or at < first[cid]:
                first[cid] = at
    authors = ugc.survivors(db, brand, {n.customer_id for n in notes if n.customer_id})
    published: dict[str, int] = {}
    by_staff = 0
    for n in notes:
        if not s <= as_utc(n.created_at) < end:
            continue
        if n.customer_id:
            cid = authors.get(n.customer_id, n.customer_id)
            published[cid] = published.get(cid, 0) + 1
        else:
            by_staff += 1
    brought = {cid for cid, at in first.items() if s <= at < end}
    ids = sorted(set(published) | brought)
    table = pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            "published": pa.array([published.get(i, 0) for i in ids], pa.int64()),
            "brought": pa.array([int(i in brought) for i in ids], pa.int64()),
        }
    )
    return table, by_staff


def koc_period(
    db: Session, brand: Brand, start: date, end: date, as_of: datetime | None = None
) -> tuple[Any, int]:
    """:func:`koc_facts` for the brand-local days ``start``…``end``."""
    at = as_of or datetime.now(UTC)
    bound = Window(start, end, brand.timezone, Params(), at).bind()
    return koc_facts(db, brand, bound["s"], bound["e"], at)


def _no_koc() -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "customer_id": pa.array([], pa.string()),
            "published": pa.array([], pa.int64()),
            "brought": pa.array([], pa.int64()),
        }
    )


# ---------------------------------------------------------------- the engine


def connect(
    dims: dim_scope.Dimensions,
    costs: dict[str, int] | None = None,
    sopm: Any = None,
    threads: int | None = None,
    rollup: bool = True,
    koc: Any = None,
) -> Any:
    """See :func:`open_lake` (the connection only)."""
    return open_lake(dims, costs, sopm, threads, rollup, koc)[0]


def open_lake(
    dims: dim_scope.Dimensions,
    costs: dict[str, int] | None = None,
    sopm: Any = None,
    threads: int | None = None,
    rollup: bool = True,
    koc: Any = None,
) -> tuple[Any, Any]:
    """A new DuckDB connection with the brand's lake tables and the dimension registered;
    the fact views (``evh``, ``fh``, ``fw``, ``fo``, ``idk``) come from the maintained facts
    rollup (``rollup``, brought up to date first) or from the raw tables (``rollup=False``:
    the same rows)."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from siyu.metrics import rollup as history

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # customers as dense integers (``cix``): every join and grouping after the identity map
    # runs on them instead of 26-character ids
    customers = dims.customers.append_column(
        "cix", pa.array(np.arange(dims.customers.num_rows, dtype=np.int32))
    )
    con.register("dim", customers)
    # the identity map with each key's customer index, joined in DuckDB (in parallel) and
    # only when a statement reads it
    con.register("idmap", dims.idmap)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW idm AS SELECT m.identity_key, m.customer_id, d.cix "
        "FROM idmap m JOIN dim d ON d.customer_id = m.customer_id"
    )
    # the raw lake views ``ev`` / ``od`` and the fact views over them or the rollup
    found = history.register(con, dims.brand_id, use=rollup)
    costs = costs or {}
    con.register(
        "cost",
        pa.table(
            {
                "code": pa.array(list(costs), pa.string()),
                "cost_fen": pa.array(list(costs.values()), pa.int64()),
            }
        ),
    )
    if sopm is None:
        sopm = pa.table(
            {"customer_id": pa.array([], pa.string()), "sop_id": pa.array([], pa.string())}
        )
    # small per-customer inputs get the customer index by a join in DuckDB (a hash table on
    # the small side, probed by the dimension), only when a statement reads them
    con.register("sopm_in", sopm)
    con.register("koc_in", _no_koc() if koc is None else koc)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW sopm AS SELECT s.customer_id, s.sop_id, d.cix "
        "FROM sopm_in s JOIN dim d ON d.customer_id = s.customer_id"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW kocx AS SELECT k.customer_id, k.published, k.brought, d.cix "
        "FROM koc_in k JOIN dim d ON d.customer_id = k.customer_id"
    )
    return con, found


def load_facts(
    con: Any, bind: dict[str, Any], only: frozenset[str] | None = None, narrow: bool = False
) -> None:
    """Load the query's facts (``sql.LOADS``: ``exh``, ``pfa``, ``exw``, ``oxa``) onto ``con`` as
    temporary tables, after the identity key → customer index table ``idx``. With ``only``,
    the other loads are created empty (same columns): a drill-down condition that reads
    neither orders nor period features does not pay for them. ``narrow`` (a data scope or a
    drill-down, not the whole brand) reads the windowed facts once (``sql.NARROW_LOADS``)."""
    con.execute("CREATE OR REPLACE TEMP TABLE idx AS SELECT ik, cix FROM idk")
    loads = sql.NARROW_LOADS if narrow else sql.LOADS
    if only is not None and narrow and only & {"pfa", "exw"}:
        only = only | {"exs"}
    for name, text in loads.items():
        empty = f"SELECT * FROM ({text}) LIMIT 0"  # noqa: S608 - fixed fragments
        body = text if only is None or name in only else empty
        query = f"CREATE OR REPLACE TEMP TABLE {name} AS {body}"
        con.execute(query, used(query, bind))


# the aggregate record of a group without customers
_EMPTY: dict[str, Any] = {c: 0 for c in sql.SUMS} | {
    "received": 0,
    "answered": 0,
    "median_minutes": None,
}


def _ratio(num: float, den: int) -> float | None:
    return None if den == 0 else num / den


def _values(rec: dict[str, Any], kpis: list[str]) -> dict[str, KpiValue]:
    out: dict[str, KpiValue] = {}
    for key in kpis:
        spec = BY_KEY[key]
        if spec.pending:
            out[key] = KpiValue(None, note=spec.pending)
            continue
        if key == "guide_response_minutes":
            med = rec.get("median_minutes")
            out[key] = KpiValue(
                None if med is None else round(float(med), 2),
                int(rec["answered"]),
                int(rec["received"]),
            )
            continue
        num_col, den_col = sql.SIDES[key]
        num = int(rec[num_col] or 0)
        if den_col is None:
            out[key] = KpiValue(num, num)
            continue
        den = int(rec[den_col] or 0)
        value = _ratio(num, den)
        if value is not None and spec.unit == "fen":
            value = round(value)
        elif value is not None:
            value = round(value, 6)
        out[key] = KpiValue(value, num, den)
    return out


def compute(
    dims: dim_scope.Dimensions,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    kpis: list[str] | None = None,
    params: Params | None = None,
    as_of: datetime | None = None,
    costs: dict[str, int] | None = None,
    sopm: Any = None,
    threads: int | None = None,
    rollup: bool = True,
    koc: Any = None,
) -> KpiTable:
    """The KPI table on a loaded dimension (no permission check here: ``dims`` is already
    the caller's scope)."""
    import time

    check_period(start, end)
    check_group_by(group_by)
    keys = check_kpis(kpis)
    params = params or Params()
    as_of = as_of or datetime.now(UTC)
    t0 = time.perf_counter()
    window = Window(start, end, dims.tz, params, as_of)
    con = connect(dims, costs, sopm, threads, rollup, koc)
    try:
        bind = window.bind()
        load_facts(con, bind, narrow=dims.scoped)
        text = sql.overview_sql(group_by)
        result: pa.Table = con.execute(text, used(text, bind)).fetch_arrow_table()
    finally:
        con.close()
    labels = dims.labels.get(group_by or "", {})
    rows = []
    for rec in result.to_pylist():
        g = str(rec["g"])
        rows.append(KpiRow(g, labels.get(g, g), int(rec["customers"]), _values(rec, keys)))
    if not rows and group_by is None:
        rows.append(KpiRow("all", "all", 0, _values(_EMPTY, keys)))
    notes = {k: BY_KEY[k].pending or "" for k in keys if BY_KEY[k].pending}
    return KpiTable(
        dims.brand_id,
        start,
        end,
        group_by,
        keys,
        rows,
        params,
        dims.scoped,
        as_of,
        round(time.perf_counter() - t0, 4),
        notes,
    )


def compute_kpis(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    kpis: list[str] | None = None,
    params: Params | None = None,
    as_of: datetime | None = None,
    dims: dim_scope.Dimensions | None = None,
) -> KpiTable:
    """The KPIs of ``brand`` for the brand-local days ``start``…``end`` as ``actor`` may
    see them (``metrics.read``; the actor's data scope limits the customers counted)."""
    check_period(start, end)
    check_group_by(group_by)
    keys = check_kpis(kpis)
    dims = dims or dim_scope.load(db, actor, brand)
    sopm = None
    if group_by == "sop":
        before = Window(start, end, brand.timezone, Params(), datetime.now(UTC)).bind()["e"]
        sopm, dims.labels["sop"] = sop_members(db, brand.id, before)
    code_names: dict[str, str] = {}
    costs = channel_costs(db, brand.id, code_names)
    dims.labels["channel_code"] = code_names
    as_of = as_of or datetime.now(UTC)
    koc, by_staff = None, 0
    if any(k.startswith("koc_") for k in keys):
        koc, by_staff = koc_period(db, brand, start, end, as_of)
    table = compute(
        dims,
        start=start,
        end=end,
        group_by=group_by,
        kpis=kpis,
        params=params,
        as_of=as_of,
        costs=costs,
        sopm=sopm,
        koc=koc,
    )
    if by_staff and not dims.scoped and "koc_content_published" in table.kpis:
        _add_staff_notes(table, by_staff)
    return table


def _add_staff_notes(table: KpiTable, n: int) -> None:
    """Notes written by staff belong to no customer: they count in the brand's total (the
    ``all`` row), or in the ``(none)`` group of a grouped table (added when missing)."""
    group = "all" if table.group_by is None else "(none)"
    try:
        row = table.row(group)
    except KeyError:
        row = KpiRow(group, group, 0, _values(_EMPTY, table.kpis))
        table.rows.append(row)
    v = row.values["koc_content_published"]
    total = int(v.value or 0) + n
    row.values["koc_content_published"] = KpiValue(total, total)


# ---------------------------------------------------------------- drill-down


@dataclass
class CustomerPage:
    kpi: str
    group: str
    side: str
    total: int
    page: int
    page_size: int
    customers: list[CustomerRow]


def _condition(kpi: str, side: str) -> str:
    if kpi == "guide_response_minutes":
        return "rs.answered > 0" if side == "numerator" else "rs.received > 0"
    num, den = sql.SIDES[kpi]
    col = num if side == "numerator" or den is None else den
    return f"pc.{col} > 0"


def customer_ids_behind(
    dims: dim_scope.Dimensions,
    kpi: str,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    group: str = "all",
    side: str = "numerator",
    page: int = 1,
    page_size: int = 50,
    params: Params | None = None,
    as_of: datetime | None = None,
    costs: dict[str, int] | None = None,
    sopm: Any = None,
    threads: int | None = None,
    rollup: bool = True,
    koc: Any = None,
) -> tuple[list[str], int]:
    """Customer ids (sorted, one page) counted in ``kpi``'s numerator (or denominator) for
    one group, and how many there are in all."""
    check_period(start, end)
    check_group_by(group_by)
    check_kpis([kpi])
    if BY_KEY[kpi].pending:
        raise MetricsInvalid("metrics.kpi_pending", kpi=kpi)
    if side not in ("numerator", "denominator"):
        raise MetricsInvalid("metrics.bad_side", side=side)
    if page < 1 or not 1 <= page_size <= 500:
        raise MetricsInvalid("metrics.bad_page")
    window = Window(start, end, dims.tz, params or Params(), as_of or datetime.now(UTC))
    bind = window.bind() | {"g": group, "limit": page_size, "offset": (page - 1) * page_size}
    con = connect(dims, costs, sopm, threads, rollup, koc)
    try:
        load_facts(con, bind, sql.loads_for(kpi, group_by), narrow=dims.scoped)
        text = sql.drill_sql(group_by, _condition(kpi, side))
        got = con.execute(text, used(text, bind)).fetchall()
    finally:
        con.close()
    total = int(got[0][1]) if got else 0
    return [str(r[0]) for r in got], total


def customers_behind(
    db: Session,
    actor: Actor,
    brand: Brand,
    kpi: str,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    group: str = "all",
    side: str = "numerator",
    page: int = 1,
    page_size: int = 50,
    params: Params | None = None,
    as_of: datetime | None = None,
) -> CustomerPage:
    """The customers behind one number of the KPI table (masked rows, actor's scope)."""
    from siyu.customers import queries as customer_queries

    dims = dim_scope.load(db, actor, brand)
    sopm = None
    if group_by == "sop":
        before = Window(start, end, brand.timezone, Params(), datetime.now(UTC)).bind()["e"]
        sopm = sop_members(db, brand.id, before)[0]
    koc = None
    if kpi.startswith("koc_"):
        koc = koc_period(db, brand, start, end, as_of)[0]
    ids, total = customer_ids_behind(
        dims,
        kpi,
        start=start,
        end=end,
        group_by=group_by,
        group=group,
        side=side,
        page=page,
        page_size=page_size,
        params=params,
        as_of=as_of,
        costs=channel_costs(db, brand.id),
        sopm=sopm,
        koc=koc,
    )
    rows = customer_queries.rows_by_id(db, actor, brand, ids)
    return CustomerPage(
        kpi, group, side, total, page, page_size, [rows[i] for i in ids if i in rows]
    )
