"""From staged rows to OneID and the lake: the one write path every intake shares.

1. Identities are resolved once per *distinct* identifier set (plus source, owner and
   profile), not per event: 1,000,000 events of 50,000 customers make about 50,000
   observations for ``customers.actions.observe_batch``.
2. Facts go to the lake with identity keys only: events first, then orders and their
   items, then identity observations. Each append is one Delta commit and drops ids that
   are already stored, so a batch retried after a crash between two appends completes the
   missing tables and duplicates nothing.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from siyu.analytics import lake
from siyu.analytics.hashing import digests, fact_keys
from siyu.core.clock import utcnow
from siyu.core.tenancy import Actor
from siyu.customers import actions as customer_actions
from siyu.customers import queries as customer_queries
from siyu.customers import vault
from siyu.customers.schemas import ObservationIn, ObserveResult, ProfileIn
from siyu.ingest.columns import const, flat
from siyu.ingest.staging import Staged, order_key

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from siyu.org.models import Brand

_US, _RS, _GS = "\x1f", "\x1e", "\x1d"


@dataclass
class CommitResult:
    accepted: int = 0
    duplicates: int = 0
    # per staged row: its _row (line or item index) and whether it was a duplicate
    rows: Any = None
    duplicate: Any = None
    observations: int = 0

    def status(self) -> dict[int, Literal["accepted", "duplicate"]]:
        """_row → outcome (for answering per item; built only when asked)."""
        if self.rows is None:
            return {}
        return {
            int(r): ("duplicate" if d else "accepted")
            for r, d in zip(self.rows.tolist(), self.duplicate.tolist(), strict=True)
        }

    # seconds spent in OneID and in lake appends (operators and benchmarks read them)
    seconds: dict[str, float] = field(default_factory=dict)


def local_days(ts: Any, tz: str) -> pa.Array:
    """Brand-local calendar day of each UTC timestamp (the ``dt`` partition)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    local = pc.local_timestamp(pc.cast(ts, pa.timestamp("us", tz=tz)))
    return pc.cast(local, pa.date32())


@dataclass
class _Identity:
    """Identity columns per row, derived locally (no OneID needed): the strongest
    identifier's key names the fact, exactly as OneID would name it."""

    identity_key: pa.Array
    identity_keys: pa.Array
    group: np.ndarray  # per row: observation group, -1 for rows naming nobody
    group_keys: list[list[str]]
    group_source: list[str]
    group_hashed: list[list[tuple[str, str, str]]]  # (type, normalised value, match hash)
    group_text: list[str]  # source, owner, unit and profile of the group, joined
    first_seen: np.ndarray  # per group, microseconds


def _set_strings(ev: pa.Table) -> Any:
    """Per row: ``type US value RS …`` over its identifiers in column order ("" if none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name in ev.column_names:
        if name.startswith("id_"):
            member = pc.binary_join_element_wise(name[3:] + _US, ev.column(name), _RS, "")
            parts.append(pc.fill_null(member, ""))
    if not parts:
        return pa.array([""] * ev.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def _primary(keys: list[tuple[str, str]], types: dict[str, dict[str, Any]]) -> str | None:
    """The key OneID names a fact by: the strongest identifier (priority, then hash)."""
    strong = [(types[t]["priority"], h, t) for t, h in keys if types.get(t, {}).get("strong")]
    pool = strong or [(types.get(t, {}).get("priority", 1000), h, t) for t, h in keys]
    if not pool:
        return None
    _, h, t = min(pool)
    return f"{t}:{h}"


def _identities(db: Session, brand: Brand, ev: pa.Table) -> _Identity:
    """Group rows by identifier set (plus source, owner, unit and profile) and derive each
    group's keys once: 1,000,000 events of 50,000 customers hash about 50,000 values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    sets = _set_strings(ev)
    extras = [pc.fill_null(ev.column(c), "") for c in ("source", "_owner", "_unit", "_profile")]
    group_key = pc.binary_join_element_wise(sets, *extras, _GS)
    encoded = flat(group_key).dictionary_encode()
    idx = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct = encoded.dictionary.to_pylist()
    micros = pc.cast(ev.column("occurred_at"), pa.int64()).to_numpy(zero_copy_only=False)
    first_seen = np.full(len(distinct), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, idx, micros)
    types = customer_queries.id_types(db, brand)
    k = vault.keys()
    key_cache: dict[tuple[str, str], str] = {}
    local_key: list[str | None] = []
    group_keys: list[list[str]] = []
    group_source: list[str] = []
    group_hashed: list[list[tuple[str, str, str]]] = []
    group_text: list[str] = []
    for text in distinct:
        set_text, rest = text.split(_GS, 1)
        hashed = []
        for p in set_text.split(_RS):
            if not p:
                continue
            t, v = p.split(_US, 1)
            h = key_cache.get((t, v))
            if h is None:
                h = key_cache[(t, v)] = vault.match_hash(brand.id, t, v, k)
            hashed.append((t, v, h))
        pairs = [(t, h) for t, _, h in hashed]
        group_keys.append(sorted(f"{t}:{h}" for t, h in pairs))
        group_source.append(rest.split(_GS, 1)[0])
        group_hashed.append(hashed)
        group_text.append(rest)
        local_key.append(_primary(pairs, types))
    take = pa.array(idx)
    named = np.array([bool(keys) for keys in group_keys], dtype=bool)[idx]
    return _Identity(
        identity_key=pa.array(local_key, pa.string()).take(take),
        identity_keys=pa.array(group_keys, pa.list_(pa.string())).take(take),
        group=np.where(named, idx, -1),
        group_keys=group_keys,
        group_source=group_source,
        group_hashed=group_hashed,
        group_text=group_text,
        first_seen=first_seen,
    )


def _observe(
    db: Session, actor: Actor, brand: Brand, ident: _Identity, groups: np.ndarray
) -> dict[int, ObserveResult]:
    """OneID for the given groups (each one observation: first seen at, identifiers,
    owner, unit and profile); group → result."""
    items = []
    for g in groups.tolist():
        source, owner, unit, profile = ident.group_text[g].split(_GS)
        observed = datetime.fromtimestamp(int(ident.first_seen[g]) / 1e6, tz=UTC)
        item = ObservationIn.model_construct(
            source=source,
            ref=None,
            observed_at=observed,
            identifiers=[],
            profile=ProfileIn.model_validate(json.loads(profile)) if profile else None,
            consents=[],
            owner_wecom_userid=owner or None,
            unit_code=unit or None,
        )
        items.append((item, ident.group_hashed[g]))
    if not items:
        return {}
    results = customer_actions.observe_hashed(db, actor, brand, items)
    return dict(zip(groups.tolist(), results, strict=True))


def commit(
    db: Session,
    actor: Actor,
    brand: Brand,
    staged: Staged,
    *,
    ingest_id: str,
    dry_run: bool = False,
    skip_known: bool = True,
) -> CommitResult:
    """Append the staged facts and resolve their identities; per-row outcome in ``status``.

    Facts carry identity keys derived here, not customer ids, so the lake appends (Rust and
    Arrow, which release the GIL) run on a second thread while OneID writes the operational
    store on this one. Identity observations — OneID's evidence in the lake — are appended
    last, once OneID has succeeded: a crash in between leaves them missing, and the next
    import of the same rows sends those groups to OneID again (OneID is idempotent).

    ``skip_known=False`` sends every group to OneID even when its events and observations
    are stored already (the inbox worker: its OneID writes and lake append are not one
    transaction).
    """
    import numpy as np
    import pyarrow as pa

    ev = staged.events
    result = CommitResult()
    if ev.num_rows == 0:
        return result
    n = ev.num_rows
    days = local_days(ev.column("occurred_at"), brand.timezone)
    keys = fact_keys(brand.id, ev.column("event_id"))
    started = time.perf_counter()
    ident = _identities(db, brand, ev)
    obs, obs_group = _observation_rows(ident, ev, days, ingest_id)
    groups = np.unique(ident.group[ident.group >= 0])
    if skip_known and groups.size:
        # Groups whose events and observations are all stored were resolved before.
        probe = pa.table({"dt": days, "event_id": ev.column("event_id")})
        new_rows = ~lake.append("events", brand.id, probe, dry_run=True, keys=keys).duplicate
        wanted = np.zeros(len(ident.group_keys), dtype=bool)
        wanted[ident.group[new_rows & (ident.group >= 0)]] = True
        # Observations of the other groups: missing ones mean OneID failed after the facts
        # landed (see above). Usually every group has new events and nothing is probed.
        rest = ~wanted[obs_group] if obs.num_rows else np.zeros(0, dtype=bool)
        if rest.any():
            probe_obs = obs.filter(pa.array(rest))
            stored = lake.append("identity_observations", brand.id, probe_obs, dry_run=True)
            wanted[obs_group[rest][~stored.duplicate]] = True
        groups = np.flatnonzero(wanted)
    result.seconds["identities"] = round(time.perf_counter() - started, 3)

    def facts() -> tuple[np.ndarray, float]:
        begun = time.perf_counter()
        duplicate = _append_facts(brand, staged, ev, days, keys, ident, ingest_id, dry_run)
        return duplicate, time.perf_counter() - begun

    started = time.perf_counter()
    resolved: dict[int, ObserveResult] = {}
    if dry_run or groups.size == 0:
        duplicate, lake_s = facts()
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="siyu-lake") as pool:
            pending = pool.submit(facts)
            try:
                resolved = _observe(db, actor, brand, ident, groups)
            finally:
                # Never leave the lake write running behind a failed OneID.
                duplicate, lake_s = pending.result()
    result.seconds["oneid"] = round(time.perf_counter() - started, 3)
    result.seconds["lake"] = round(lake_s, 3)
    result.rows = ev.column("_row").to_numpy(zero_copy_only=False)
    result.duplicate = duplicate
    result.duplicates = int(duplicate.sum())
    result.accepted = n - result.duplicates
    if obs.num_rows:
        started = time.perf_counter()
        status: list[str | None] = [None] * len(ident.group_keys)
        customer: list[str | None] = [None] * len(ident.group_keys)
        for g, res in resolved.items():
            status[g], customer[g] = res.status, res.customer_id
        take = pa.array(obs_group)
        obs = obs.append_column("status", pa.array(status, pa.string()).take(take))
        obs = obs.append_column("customer_id", pa.array(customer, pa.string()).take(take))
        lake.append("identity_observations", brand.id, obs, dry_run=dry_run)
        result.observations = obs.num_rows
        result.seconds["observations"] = round(time.perf_counter() - started, 3)
    return result


def _append_facts(
    brand: Brand,
    staged: Staged,
    ev: pa.Table,
    days: pa.Array,
    keys: pa.Array,
    ident: _Identity,
    ingest_id: str,
    dry_run: bool,
) -> np.ndarray:
    """Events, then orders and their items; per event row, whether it was a duplicate."""
    import numpy as np
    import pyarrow as pa

    n = ev.num_rows
    now = pa.repeat(pa.scalar(utcnow(), pa.timestamp("us", tz="UTC")), n)
    # Orders first as a dry run: an order already stored under another event id makes this
    # event a duplicate too (one payment per order), without writing anything yet.
    order_rows = _order_rows(staged, ev, days, ident, ingest_id)
    excluded = np.zeros(n, dtype=bool)
    if order_rows.num_rows:
        pre = lake.append("orders", brand.id, order_rows, dry_run=True)
        positions = staged.orders.column("_pos").to_numpy(zero_copy_only=False)
        excluded[positions[pre.duplicate]] = True
    events = pa.table(
        {
            "dt": days,
            "event_id": ev.column("event_id"),
            "event_type": ev.column("event_type"),
            "schema_version": ev.column("schema_version"),
            "occurred_at": ev.column("occurred_at"),
            "received_at": now,
            "source": ev.column("source"),
            "identity_key": ident.identity_key,
            "identity_keys": ident.identity_keys,
            "properties": ev.column("properties"),
            "ingest_id": const(ingest_id, n),
        }
    )
    appended = lake.append("events", brand.id, events, dry_run=dry_run, keys=keys, drop=excluded)
    if order_rows.num_rows:
        lake.append("orders", brand.id, order_rows, dry_run=dry_run)
        items = _item_rows(staged, order_rows)
        if items.num_rows:
            lake.append("order_items", brand.id, items, dry_run=dry_run)
    duplicate: np.ndarray = appended.duplicate
    return duplicate


def _order_rows(
    staged: Staged, ev: pa.Table, days: pa.Array, ident: _Identity, ingest_id: str
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    orders = staged.orders
    if orders.num_rows == 0:
        return orders
    pos = orders.column("_pos")

    def take(col: Any) -> Any:
        return pc.take(col, pos)

    keys = [
        order_key("order_paid" if k == "paid" else "order_refunded", o, r, e)
        for k, o, r, e in zip(
            orders.column("kind").to_pylist(),
            orders.column("order_id").to_pylist(),
            orders.column("refund_id").to_pylist(),
            orders.column("event_id").to_pylist(),
            strict=True,
        )
    ]
    cols: dict[str, Any] = {n: orders.column(n) for n in orders.column_names if n != "_pos"}
    cols.update(
        order_key=pa.array(keys, pa.string()),
        dt=take(days),
        occurred_at=take(ev.column("occurred_at")),
        source=take(ev.column("source")),
        identity_key=take(ident.identity_key),
        ingest_id=const(ingest_id, orders.num_rows),
    )
    return pa.table(cols)


def _item_rows(staged: Staged, order_rows: pa.Table) -> pa.Table:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    items = staged.items
    if items.num_rows == 0:
        return items
    # event position → order row; every item belongs to an order event staged with it
    event_pos = staged.orders.column("_pos").to_numpy(zero_copy_only=False)
    to_order = np.full(int(event_pos.max()) + 1, -1, dtype=np.int64)
    to_order[event_pos] = np.arange(event_pos.size)
    pos = pa.array(to_order[items.column("_pos").to_numpy(zero_copy_only=False)])
    order_key_col = pc.take(order_rows.column("order_key"), pos)
    item_key = pc.binary_join_element_wise(
        order_key_col, pc.cast(items.column("line_no"), pa.string()), "#"
    )
    cols: dict[str, Any] = {n: items.column(n) for n in items.column_names if n != "_pos"}
    cols.update(
        item_key=item_key,
        order_key=order_key_col,
        dt=pc.take(order_rows.column("dt"), pos),
        order_id=pc.take(order_rows.column("order_id"), pos),
        kind=pc.take(order_rows.column("kind"), pos),
        identity_key=pc.take(order_rows.column("identity_key"), pos),
        occurred_at=pc.take(order_rows.column("occurred_at"), pos),
    )
    return pa.table(cols)


def _observation_rows(
    ident: _Identity, ev: pa.Table, days: pa.Array, ingest_id: str
) -> tuple[pa.Table, np.ndarray]:
    """One row per (observation group, day): the identifier set seen together, first seen
    at, how many events said so; and each row's group. Deterministic ids make re-imports
    add nothing. OneID's ``status`` and ``customer_id`` are added by the caller."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    named = ident.group >= 0
    if not named.any():
        return pa.table({"observation_id": pa.array([], pa.string())}), np.zeros(0, np.int64)
    rows = np.flatnonzero(named)
    day = pc.cast(days, pa.int32()).to_numpy(zero_copy_only=False)[rows].astype(np.int64)
    combo = ident.group[rows] * 1_000_000 + day
    uniq, first, inverse, counts = np.unique(
        combo, return_index=True, return_inverse=True, return_counts=True
    )
    micros = pc.cast(ev.column("occurred_at"), pa.int64()).to_numpy(zero_copy_only=False)[rows]
    first_seen = np.full(uniq.size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, inverse, micros)
    groups = uniq // 1_000_000
    pick = rows[first]
    texts = [
        "|".join(ident.group_keys[g]) + _US + ident.group_source[g] + _US + str(d)
        for g, d in zip(groups.tolist(), (uniq % 1_000_000).tolist(), strict=True)
    ]
    take = pa.array(pick)
    table = pa.table(
        {
            "observation_id": digests(pa.array(texts, pa.string())),
            "dt": pc.take(days, take),
            "source": pc.take(ev.column("source"), take),
            "observed_at": pa.array(first_seen, pa.timestamp("us", tz="UTC")),
            "identity_key": pc.take(ident.identity_key, take),
            "identity_keys": pc.take(ident.identity_keys, take),
            "event_count": pa.array(counts, pa.int32()),
            "ingest_id": const(ingest_id, uniq.size),
        }
    )
    return table, groups
