"""OneID in the operational store: incremental resolution on every ingest, and recompute.

:class:`Resolver` takes a batch of observations and keeps the store equal to what the rule
in :mod:`siyu.customers.oneid_core` gives for all observations seen so far:

- *Fast path* (nearly every observation): the identities are new or belong to customers
  whose components hold no blocked or forced observation, and joining them breaks no unique
  type. Then the rule is plain union: customers merge, the oldest id survives.
- *Slow path*: anything else. The whole component (closed over every observation touching
  it) is recomputed with :func:`oneid_core.resolve` and written back.

Work is batched: identities and observations of the batch are fetched with a few ``IN``
queries, new rows are inserted with executemany, and merges are single ``UPDATE``s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from siyu.core.clock import as_utc, utcnow
from siyu.core.db import bulk_insert, table_of
from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.customers import vault
from siyu.customers.identifiers import TypeConfig
from siyu.customers.models import (
    Customer,
    Identity,
    Observation,
    ObservationMember,
    OneIdLog,
    Review,
)
from siyu.customers.oneid_core import Obs, resolve
from siyu.customers.schemas import ObservationIn, ObserveResult

CHUNK = 500


def chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class Ident:
    """Cached view of an identity row (existing or about to be inserted)."""

    id: str
    id_type: str
    value_hash: str
    customer_id: str | None
    weak: bool


@dataclass
class Parsed:
    """An observation with its identifiers normalised and hashed."""

    item: ObservationIn
    observed_at: datetime
    keys: list[tuple[str, str, str]]  # (type, normalised value, hash), strongest first
    weak_keys: list[tuple[str, str, str]]
    set_hash: str


def identities_by_key(
    db: Session, brand_id: str, pairs: Iterable[tuple[str, str]], columns: tuple[Any, ...]
) -> list[Any]:
    """Rows of ``columns`` for the identities named by (type, match hash) pairs.

    Queried per type, ``id_type = ? AND value_hash IN (…)``, so the unique index
    (brand, type, hash) answers each chunk; a ``value_hash IN`` without the type would scan
    every identity of the brand per chunk (quadratic in the brand's size). Chunks of 2,000
    values stay far below the drivers' parameter limits."""
    by_type: dict[str, list[str]] = {}
    for t, h in pairs:
        by_type.setdefault(t, []).append(h)
    out: list[Any] = []
    for t, hashes in sorted(by_type.items()):
        for part in chunks(sorted(set(hashes)), 2000):
            out.extend(
                db.execute(
                    select(*columns).where(
                        Identity.brand_id == brand_id,
                        Identity.id_type == t,
                        Identity.value_hash.in_(part),
                    )
                ).all()
            )
    return out


def set_hash(keys: Iterable[tuple[str, str]]) -> str:
    text = "|".join(sorted(f"{t}:{h}" for t, h in keys))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def parse_observations(
    brand_id: str, cfg: TypeConfig, items: list[ObservationIn]
) -> tuple[list[Parsed], list[FieldError]]:
    """Normalise and hash every identifier; report malformed ones by item index."""
    k = vault.keys()
    parsed: list[Parsed] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        strong: dict[tuple[str, str], tuple[str, str, str]] = {}
        weak: dict[tuple[str, str], tuple[str, str, str]] = {}
        bad = False
        for pos, ident in enumerate(item.identifiers):
            spec = cfg.get(ident.type)
            if spec is None:
                errors.append(
                    FieldError(
                        code="customers.unknown_identifier_type",
                        field=f"identifiers.{pos}.type",
                        row=index,
                        reason=f"unknown identifier type {ident.type!r}",
                    )
                )
                bad = True
                continue
            try:
                norm = vault.normalise(ident.type, ident.value)
            except SiyuError as exc:
                errors.append(
                    FieldError(
                        code=exc.code,
                        field=f"identifiers.{pos}.value",
                        row=index,
                        reason=exc.message("en"),
                    )
                )
                bad = True
                continue
            h = vault.match_hash(brand_id, ident.type, norm, k)
            (strong if spec.strong else weak)[(ident.type, h)] = (ident.type, norm, h)
        if bad:
            continue
        parsed.append(_parsed(cfg, item, strong, weak))
    return parsed, errors


def prepare(cfg: TypeConfig, item: ObservationIn, hashed: list[tuple[str, str, str]]) -> Parsed:
    """An observation whose identifiers the caller has already normalised and hashed as
    (type, normalised value, match hash) — the ingest pipeline does that once per distinct
    value, so ``item.identifiers`` is not read. Every type must be one of the brand's."""
    strong: dict[tuple[str, str], tuple[str, str, str]] = {}
    weak: dict[tuple[str, str], tuple[str, str, str]] = {}
    for t, norm, h in hashed:
        spec = cfg.get(t)
        if spec is None:
            raise ValueError(f"unknown identifier type {t!r}")
        (strong if spec.strong else weak)[(t, h)] = (t, norm, h)
    return _parsed(cfg, item, strong, weak)


def _parsed(
    cfg: TypeConfig,
    item: ObservationIn,
    strong: dict[tuple[str, str], tuple[str, str, str]],
    weak: dict[tuple[str, str], tuple[str, str, str]],
) -> Parsed:
    ordered = sorted(strong.values(), key=lambda x: (cfg.priority(x[0]), x[2]))
    return Parsed(
        item=item,
        observed_at=as_utc(item.observed_at),
        keys=ordered,
        weak_keys=sorted(weak.values()),
        set_hash=set_hash([(t, h) for t, _, h in ordered + list(weak.values())]),
    )


@dataclass
class Resolver:
    db: Session
    brand_id: str
    actor: Actor
    cfg: TypeConfig
    idents: dict[tuple[str, str], Ident] = field(default_factory=dict)
    # customer id -> unique type -> identity ids; and the conflicted flag
    unique_of: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    conflicted: dict[str, bool] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    new_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_idents: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_obs: list[dict[str, Any]] = field(default_factory=list)
    new_members: list[dict[str, Any]] = field(default_factory=list)
    merges: list[tuple[str, str, str]] = field(default_factory=list)  # (old, target, obs)
    seen_obs: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)
    obs_touch: dict[str, tuple[datetime, datetime, int]] = field(default_factory=dict)
    cust_touch: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    keys: vault.Keys = field(default_factory=vault.keys)

    # ------------------------------------------------------------------ cache loading

    def prefetch(self, parsed: list[Parsed]) -> None:
        pairs = {(t, h) for p in parsed for t, _, h in p.keys + p.weak_keys}
        columns = (
            Identity.id,
            Identity.id_type,
            Identity.value_hash,
            Identity.customer_id,
            Identity.weak,
        )
        for r in identities_by_key(self.db, self.brand_id, pairs, columns):
            self.idents[(r.id_type, r.value_hash)] = Ident(*r)
        sets = sorted({p.set_hash for p in parsed})
        for part in chunks(sets):
            for oid, sh, status, at in self.db.execute(
                select(
                    Observation.id,
                    Observation.set_hash,
                    Observation.status,
                    Observation.observed_at,
                ).where(Observation.brand_id == self.brand_id, Observation.set_hash.in_(part))
            ):
                self.seen_obs[sh] = (oid, status, at)
        self.load_customers({i.customer_id for i in self.idents.values() if i.customer_id})

    def load_customers(self, ids: set[str]) -> None:
        todo = sorted(c for c in ids if c not in self.conflicted)
        unique = sorted(self.cfg.unique)
        for part in chunks(todo):
            for cid, flag in self.db.execute(
                select(Customer.id, Customer.conflicted).where(Customer.id.in_(part))
            ):
                self.conflicted[cid] = flag
                self.unique_of.setdefault(cid, {})
            for iid, itype, owner in self.db.execute(
                select(Identity.id, Identity.id_type, Identity.customer_id).where(
                    Identity.brand_id == self.brand_id,
                    Identity.customer_id.in_(part),
                    Identity.id_type.in_(unique),
                )
            ):
                if owner is not None:
                    self.unique_of.setdefault(owner, {}).setdefault(itype, set()).add(iid)

    def customer_of(self, ident: Ident) -> str | None:
        cid = ident.customer_id
        if cid is None:
            return None
        while cid in self.redirect:
            cid = self.redirect[cid]
        return cid

    # ------------------------------------------------------------------ the batch

    def observe(self, parsed: list[Parsed]) -> list[ObserveResult]:
        self.prefetch(parsed)
        slots: list[ObserveResult | None] = [None] * len(parsed)
        self.observe_fresh(parsed, slots)
        results = [
            r if r is not None else self.observe_one(p) for p, r in zip(parsed, slots, strict=True)
        ]
        self.flush()
        # A later item may have recomputed a component an earlier item resolved into: report
        # where each observation's strongest identity ended up after the whole batch.
        final = []
        for p, result in zip(parsed, results, strict=True):
            if p.keys:
                t, _, h = p.keys[0]
                cid = self.customer_of(self.idents[(t, h)])
                if cid != result.customer_id:
                    result = result.model_copy(update={"customer_id": cid})
            final.append(result)
        return final

    def observe_fresh(self, parsed: list[Parsed], slots: list[ObserveResult | None]) -> None:
        """The bulk path for the common case of an import: observations whose identities are
        all new to the store. Their strong identifiers are grouped into connected components
        over the batch; a component that touches no stored identity or observation and holds
        at most one identity of each unique type is exactly one new customer (what a union of
        its observations in any order gives), so it is written in bulk. Everything else —
        weak-only observations, components touching stored identities or breaking a unique
        type — is left in ``slots`` as None for :meth:`observe_one`."""
        candidates = [
            i
            for i, p in enumerate(parsed)
            if p.keys
            and p.set_hash not in self.seen_obs
            and not any((t, h) in self.idents for t, _, h in p.keys + p.weak_keys)
        ]
        if not candidates:
            return
        # union-find over the strong identifiers of the candidates
        parent: dict[tuple[str, str], tuple[str, str]] = {}

        def find(x: tuple[str, str]) -> tuple[str, str]:
            root = x
            while parent[root] != root:
                root = parent[root]
            while parent[x] != root:
                parent[x], x = root, parent[x]
            return root

        for i in candidates:
            keys = [(t, h) for t, _, h in parsed[i].keys]
            for k in keys:
                parent.setdefault(k, k)
            first = find(keys[0])
            for k in keys[1:]:
                other = find(k)
                if other != first:
                    parent[other] = first
        # a component is fresh unless one of its identifiers also appears in an observation
        # of the batch that is not a candidate (that one touches the store)
        members: dict[tuple[str, str], list[int]] = {}
        for i in candidates:
            members.setdefault(find((parsed[i].keys[0][0], parsed[i].keys[0][2])), []).append(i)
        taken = set(candidates)
        blocked: set[tuple[str, str]] = set()
        for i, p in enumerate(parsed):
            if i in taken:
                continue
            for t, _, h in p.keys:
                if (t, h) in parent:
                    blocked.add(find((t, h)))
        unique = self.cfg.unique
        for root, rows in members.items():
            if root in blocked:
                continue
            strong: dict[tuple[str, str], tuple[str, Parsed]] = {}
            for i in rows:
                for t, norm, h in parsed[i].keys:
                    strong.setdefault((t, h), (norm, parsed[i]))
            per_type: dict[str, int] = {}
            for t, _ in strong:
                if t in unique:
                    per_type[t] = per_type.get(t, 0) + 1
            if any(n > 1 for n in per_type.values()):
                continue  # a unique type would hold two values: the slow path queues a review
            self._write_fresh(parsed, rows, strong, slots)

    def _write_fresh(
        self,
        parsed: list[Parsed],
        rows: list[int],
        strong: dict[tuple[str, str], tuple[str, Parsed]],
        slots: list[ObserveResult | None],
    ) -> None:
        times = [parsed[i].observed_at for i in rows]
        first, last = min(times), max(times)
        cid = self.create_customer(parsed[rows[0]])
        self.cust_touch[cid] = (first, last)
        seen_at: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for i in rows:
            p = parsed[i]
            for t, _, h in p.keys + p.weak_keys:
                lo, hi = seen_at.get((t, h), (p.observed_at, p.observed_at))
                seen_at[(t, h)] = (min(lo, p.observed_at), max(hi, p.observed_at))
        for (t, h), (norm, p) in strong.items():
            ident = self.ident_for(p, t, norm, h, False)
            ident.customer_id = cid
            row = self.new_idents[ident.id]
            row["customer_id"] = cid
            row["first_seen_at"], row["last_seen_at"] = seen_at[(t, h)]
            if t in self.cfg.unique:
                self.unique_of[cid].setdefault(t, set()).add(ident.id)
        created = False
        for i in rows:
            p = parsed[i]
            weak = [self.ident_for(p, t, n, h, True) for t, n, h in p.weak_keys]
            seen = self.seen_obs.get(p.set_hash)
            if seen is None:
                self.add_observation(
                    p, "applied", [self.idents[(t, h)] for t, _, h in p.keys] + weak
                )
            else:  # the same identifier set earlier in this batch
                oid, _, at = seen
                lo, hi, n = self.obs_touch.get(oid, (at, at, 0))
                self.obs_touch[oid] = (min(lo, p.observed_at), max(hi, p.observed_at), n + 1)
            t, _, h = p.keys[0]
            slots[i] = ObserveResult.model_construct(
                customer_id=cid, identity_key=f"{t}:{h}", status="linked" if created else "created"
            )
            created = True

    def add_observation(self, p: Parsed, status: str, idents: list[Ident]) -> str:
        """A new observation row with its members; returns its id."""
        oid = new_id()
        self.new_obs.append(
            {
                "id": oid,
                "brand_id": self.brand_id,
                "set_hash": p.set_hash,
                "source": p.item.source,
                "ref": p.item.ref,
                "observed_at": p.observed_at,
                "last_seen_at": p.observed_at,
                "seen_count": 1,
                "status": status,
                "manual": False,
                "note": None,
                "profile": None,
            }
        )
        self.seen_obs[p.set_hash] = (oid, "applied", p.observed_at)
        self.new_members.extend(
            {"observation_id": oid, "identity_id": i.id, "weak": i.weak} for i in idents
        )
        return oid

    def ident_for(self, p: Parsed, t: str, norm: str, h: str, weak: bool) -> Ident:
        ident = self.idents.get((t, h))
        if ident is None:
            ident = Ident(new_id(), t, h, None, weak)
            self.idents[(t, h)] = ident
            pii = t in vault.PII_TYPES
            self.new_idents[ident.id] = {
                "id": ident.id,
                "brand_id": self.brand_id,
                "customer_id": None,
                "id_type": t,
                "value_hash": h,
                "value": None if pii else norm,
                "value_enc": vault.encrypt(norm, self.keys) if pii else None,
                "masked": vault.mask(t, norm),
                "weak": weak,
                "source": p.item.source,
                "first_seen_at": p.observed_at,
                "last_seen_at": p.observed_at,
            }
        return ident

    def observe_one(self, p: Parsed) -> ObserveResult:
        strong = [self.ident_for(p, t, n, h, False) for t, n, h in p.keys]
        weak = [self.ident_for(p, t, n, h, True) for t, n, h in p.weak_keys]
        primary = strong[0] if strong else weak[0]
        key = f"{primary.id_type}:{primary.value_hash}"
        seen = self.seen_obs.get(p.set_hash)
        if seen is not None:
            oid, status, at = seen
            first, last, n = self.obs_touch.get(oid, (at, at, 0))
            self.obs_touch[oid] = (min(first, p.observed_at), max(last, p.observed_at), n + 1)
            cid = self.customer_of(primary) if strong else None
            if p.observed_at < at and cid and self.conflicted.get(cid):
                # Earlier evidence can change the canonical order inside a conflict.
                self.seen_obs[p.set_hash] = (oid, status, p.observed_at)
                self.recompute({i.id for i in strong})
                cid = self.customer_of(primary)
            self.touch(cid, p.observed_at)
            return ObserveResult(
                customer_id=cid, identity_key=key, status="weak_only" if not strong else "linked"
            )
        oid = self.add_observation(p, "applied" if strong else "weak_only", strong + weak)
        if not strong:
            return ObserveResult(customer_id=None, identity_key=key, status="weak_only")
        involved = {c for c in (self.customer_of(i) for i in strong) if c is not None}
        self.load_customers(involved)
        if any(self.conflicted.get(c) for c in involved) or self.clashes(involved, strong):
            self.recompute({i.id for i in strong})
            cid = self.customer_of(primary)
            self.touch(cid, p.observed_at)
            if cid and self.conflicted.get(cid):
                return ObserveResult(customer_id=cid, identity_key=key, status="conflict")
            return ObserveResult(customer_id=cid, identity_key=key, status="linked")
        created = not involved
        target = min(involved) if involved else self.create_customer(p)
        for other in sorted(involved - {target}):
            self.merge(other, target, oid)
        for ident in strong:
            if ident.customer_id is None:
                ident.customer_id = target
                self.set_new_ident_customer(ident.id, target)
                if ident.id_type in self.cfg.unique:
                    self.unique_of[target].setdefault(ident.id_type, set()).add(ident.id)
        self.touch(target, p.observed_at)
        return ObserveResult(
            customer_id=target, identity_key=key, status="created" if created else "linked"
        )

    def clashes(self, involved: set[str], strong: list[Ident]) -> bool:
        seen: dict[str, set[str]] = {}
        for cid in involved:
            for t, ids in self.unique_of.get(cid, {}).items():
                seen.setdefault(t, set()).update(ids)
        for ident in strong:
            if ident.id_type in self.cfg.unique:
                seen.setdefault(ident.id_type, set()).add(ident.id)
        return any(len(v) > 1 for v in seen.values())

    def create_customer(self, p: Parsed) -> str:
        cid = new_id()
        self.new_customers[cid] = {
            "id": cid,
            "brand_id": self.brand_id,
            "status": "active",
            "merged_into": None,
            "conflicted": False,
            "attributes": {},
            "first_seen_at": p.observed_at,
            "last_seen_at": p.observed_at,
            "created_at": utcnow(),
            "name_enc": None,
            "name_masked": None,
            "nickname": None,
            "gender": None,
            "birthday": None,
            "city": None,
            "owner_staff_id": None,
            "home_unit_id": None,
        }
        self.conflicted[cid] = False
        self.unique_of[cid] = {}
        return cid

    def merge(self, old: str, target: str, obs_id: str) -> None:
        self.redirect[old] = target
        for t, ids in self.unique_of.pop(old, {}).items():
            self.unique_of[target].setdefault(t, set()).update(ids)
        self.merges.append((old, target, obs_id))

    def set_new_ident_customer(self, ident_id: str, cid: str) -> None:
        # New identities are still in ``new_idents``; existing strong ones always had one.
        row = self.new_idents.get(ident_id)
        if row is not None:
            row["customer_id"] = cid

    def touch(self, cid: str | None, at: datetime) -> None:
        if cid is None:
            return
        first, last = self.cust_touch.get(cid, (at, at))
        self.cust_touch[cid] = (min(first, at), max(last, at))

    # ------------------------------------------------------------------ writing

    def flush(self) -> None:
        db = self.db
        for cid, (first, last) in self.cust_touch.items():
            row = self.new_customers.get(cid)
            if row is not None:
                row["first_seen_at"], row["last_seen_at"] = first, last
        # Core inserts and executemany updates: no ORM bookkeeping for thousands of rows.
        bulk_insert(db, table_of(Customer), list(self.new_customers.values()))
        bulk_insert(db, table_of(Identity), list(self.new_idents.values()))
        bulk_insert(db, table_of(Observation), self.new_obs)
        bulk_insert(db, table_of(ObservationMember), self.new_members)
        if self.merges:
            i, c = table_of(Identity), table_of(Customer)
            # Order matters for chains (A→B, then B→C): executemany keeps it.
            db.execute(
                update(i)
                .where(i.c.brand_id == self.brand_id, i.c.customer_id == bindparam("p_old"))
                .values(customer_id=bindparam("p_target")),
                [{"p_old": old, "p_target": target} for old, target, _ in self.merges],
            )
            db.execute(
                update(c)
                .where(c.c.id == bindparam("p_old"))
                .values(status="merged", merged_into=bindparam("p_target")),
                [{"p_old": old, "p_target": target} for old, target, _ in self.merges],
            )
            db.execute(
                insert(table_of(OneIdLog)),
                [
                    {
                        "id": new_id(),
                        "brand_id": self.brand_id,
                        "at": utcnow(),
                        "kind": "merge",
                        "customer_ids": [old, target],
                        "result_ids": [target],
                        "observation_ids": [obs_id],
                        "actor_label": self.actor.label,
                    }
                    for old, target, obs_id in self.merges
                ],
            )
        if self.obs_touch:
            # One compiled statement, executemany: thousands of rows in one round of I/O.
            o = table_of(Observation)
            first_p: BindParameter[datetime] = bindparam("p_first")
            last_p: BindParameter[datetime] = bindparam("p_last")
            db.execute(
                update(o)
                .where(o.c.id == bindparam("p_id"))
                .values(
                    observed_at=case((o.c.observed_at > first_p, first_p), else_=o.c.observed_at),
                    last_seen_at=case((o.c.last_seen_at < last_p, last_p), else_=o.c.last_seen_at),
                    seen_count=o.c.seen_count + bindparam("p_n"),
                ),
                [
                    {"p_id": oid, "p_first": first, "p_last": last, "p_n": n}
                    for oid, (first, last, n) in self.obs_touch.items()
                ],
            )
        if self.cust_touch:
            existing = [
                {"p_id": cid, "p_first": first, "p_last": last}
                for cid, (first, last) in self.cust_touch.items()
                if cid not in self.new_customers
            ]
            if existing:
                c = table_of(Customer)
                first_p = bindparam("p_first")
                last_p = bindparam("p_last")
                seen = func.coalesce(c.c.last_seen_at, last_p)
                db.execute(
                    update(c)
                    .where(c.c.id == bindparam("p_id"))
                    .values(
                        last_seen_at=case((seen < last_p, last_p), else_=seen),
                        first_seen_at=func.coalesce(c.c.first_seen_at, first_p),
                    ),
                    existing,
                )
        db.flush()
        self.new_customers.clear()
        self.new_idents.clear()
        self.new_obs.clear()
        self.new_members.clear()
        self.merges.clear()
        self.obs_touch.clear()
        self.cust_touch.clear()

    # ------------------------------------------------------------------ slow path

    def recompute(self, seeds: set[str]) -> None:
        """Flush, then recompute the whole component around ``seeds`` and refresh caches."""
        self.flush()
        changed = recompute_component(self.db, self.brand_id, self.cfg, seeds, self.actor)
        # Refresh the cache for every identity the recompute touched.
        by_id = {i.id: i for i in self.idents.values()}
        for ident_id, cid in changed.identity_customer.items():
            if ident_id in by_id:
                by_id[ident_id].customer_id = cid
        for cid in changed.customers:
            self.conflicted.pop(cid, None)
            self.unique_of.pop(cid, None)
            self.redirect.pop(cid, None)
        self.load_customers(changed.customers)


@dataclass
class Recomputed:
    identity_customer: dict[str, str]
    customers: set[str]


def _closure(db: Session, brand_id: str, seeds: set[str]) -> tuple[set[str], set[str]]:
    """All identities and observations of the graph component(s) containing ``seeds``."""
    idents = set(seeds)
    obs: set[str] = set()
    frontier = set(seeds)
    while frontier:
        customers = {
            c
            for part in chunks(sorted(frontier))
            for (c,) in db.execute(
                select(Identity.customer_id).where(
                    Identity.id.in_(part), Identity.customer_id.is_not(None)
                )
            )
        }
        more = {
            i
            for part in chunks(sorted(customers))
            for (i,) in db.execute(
                select(Identity.id).where(
                    Identity.brand_id == brand_id, Identity.customer_id.in_(part)
                )
            )
        }
        new_obs = {
            o
            for part in chunks(sorted(frontier | more))
            for (o,) in db.execute(
                select(ObservationMember.observation_id).where(
                    ObservationMember.identity_id.in_(part), ObservationMember.weak.is_(False)
                )
            )
        } - obs
        obs |= new_obs
        members = {
            i
            for part in chunks(sorted(new_obs))
            for (i,) in db.execute(
                select(ObservationMember.identity_id).where(
                    ObservationMember.observation_id.in_(part),
                    ObservationMember.weak.is_(False),
                )
            )
        }
        frontier = (more | members) - idents
        idents |= more | members
    return idents, obs


def load_obs(db: Session, obs_ids: set[str]) -> list[Obs]:
    members: dict[str, list[str]] = {}
    for part in chunks(sorted(obs_ids)):
        for oid, iid in db.execute(
            select(ObservationMember.observation_id, ObservationMember.identity_id).where(
                ObservationMember.observation_id.in_(part), ObservationMember.weak.is_(False)
            )
        ):
            members.setdefault(oid, []).append(iid)
    out = []
    for part in chunks(sorted(obs_ids)):
        for row in db.execute(
            select(
                Observation.id, Observation.observed_at, Observation.set_hash, Observation.status
            ).where(Observation.id.in_(part))
        ):
            out.append(
                Obs(
                    row.id,
                    row.observed_at,
                    row.set_hash,
                    tuple(sorted(members.get(row.id, []))),
                    row.status,
                )
            )
    return out


def recompute_component(
    db: Session, brand_id: str, cfg: TypeConfig, seeds: set[str], actor: Actor
) -> Recomputed:
    idents, obs_ids = _closure(db, brand_id, seeds)
    observations = load_obs(db, obs_ids)
    types = {
        i: t
        for part in chunks(sorted(idents))
        for i, t in db.execute(select(Identity.id, Identity.id_type).where(Identity.id.in_(part)))
    }
    unique_type_of = {i: (t if t in cfg.unique else None) for i, t in types.items()}
    outcome = resolve(observations, idents, unique_type_of)
    return write_outcome(db, brand_id, observations, outcome.groups, outcome.blocked, actor)


def write_outcome(
    db: Session,
    brand_id: str,
    observations: list[Obs],
    groups: list[set[str]],
    blocked: set[str],
    actor: Actor,
) -> Recomputed:
    """Write a component's resolution: customer ids, statuses, reviews, flags, the log."""
    current: dict[str, str | None] = {}
    for part in chunks(sorted({i for g in groups for i in g})):
        for iid, cid in db.execute(
            select(Identity.id, Identity.customer_id).where(Identity.id.in_(part))
        ):
            current[iid] = cid
    old_customers = {c for c in current.values() if c}
    # Each group keeps the existing customer holding most of its identities (ties: oldest);
    # a customer id goes to one group only.
    taken: set[str] = set()
    assignment: list[tuple[set[str], str]] = []
    for group in sorted(groups, key=lambda g: (-len(g), min(g))):
        votes: dict[str, int] = {}
        for ident in group:
            cid = current.get(ident)
            if cid and cid not in taken:
                votes[cid] = votes.get(cid, 0) + 1
        if votes:
            cid = min(votes, key=lambda c: (-votes[c], c))
            taken.add(cid)
        else:
            cid = new_id()
            db.add(
                Customer(
                    id=cid, brand_id=brand_id, status="active", conflicted=False, attributes={}
                )
            )
            db.flush()
        assignment.append((group, cid))
    member_of: dict[str, set[str]] = {}
    for o in observations:
        for m in o.members:
            member_of.setdefault(m, set()).add(o.id)
    special = {o.id for o in observations if o.status == "forced"} | blocked
    identity_customer: dict[str, str] = {}
    log_rows: list[OneIdLog] = []
    for group, cid in assignment:
        moved = sorted(i for i in group if current.get(i) != cid)
        for part in chunks(moved):
            db.execute(update(Identity).where(Identity.id.in_(part)).values(customer_id=cid))
        for i in group:
            identity_customer[i] = cid
        flag = any(member_of.get(i, set()) & special for i in group)
        db.execute(
            update(Customer)
            .where(Customer.id == cid)
            .values(conflicted=flag, status="active", merged_into=None)
        )
        sources = sorted({c for i in group if (c := current.get(i)) and c != cid})
        if sources:
            evidence = sorted({o for i in group for o in member_of.get(i, set())})
            log_rows.append(
                OneIdLog(
                    brand_id=brand_id,
                    kind="merge",
                    customer_ids=[*sources, cid],
                    result_ids=[cid],
                    observation_ids=evidence[:200],
                    actor_label=actor.label,
                )
            )
    result_of: dict[str, set[str]] = {}
    for old in old_customers:
        result_of[old] = {identity_customer[i] for i, c in current.items() if c == old}
    for old, results in result_of.items():
        if len(results) > 1:
            log_rows.append(
                OneIdLog(
                    brand_id=brand_id,
                    kind="split",
                    customer_ids=[old],
                    result_ids=sorted(results),
                    observation_ids=sorted(blocked),
                    actor_label=actor.label,
                )
            )
        if old not in taken:
            # Lost all its identities: it survives only as a pointer to where most went.
            target = max(
                sorted(results),
                key=lambda r: sum(
                    1 for i, c in current.items() if c == old and identity_customer[i] == r
                ),
            )
            db.execute(
                update(Customer)
                .where(Customer.id == old)
                .values(status="merged", merged_into=target, conflicted=False)
            )
    db.add_all(log_rows)
    _update_statuses(db, brand_id, observations, blocked, identity_customer)
    return Recomputed(
        identity_customer=identity_customer,
        customers=old_customers | {cid for _, cid in assignment},
    )


def _update_statuses(
    db: Session,
    brand_id: str,
    observations: list[Obs],
    blocked: set[str],
    identity_customer: dict[str, str],
) -> None:
    auto = [o for o in observations if o.status in ("applied", "blocked")]
    now_blocked = [o.id for o in auto if o.id in blocked and o.status != "blocked"]
    now_applied = [o.id for o in auto if o.id not in blocked and o.status != "applied"]
    for part in chunks(now_blocked):
        db.execute(update(Observation).where(Observation.id.in_(part)).values(status="blocked"))
    for part in chunks(now_applied):
        db.execute(update(Observation).where(Observation.id.in_(part)).values(status="applied"))
        db.execute(
            update(Review)
            .where(Review.observation_id.in_(part), Review.status == "open")
            .values(status="resolved", note="resolved by later evidence")
        )
    open_reviews = {
        r
        for part in chunks(sorted(blocked))
        for (r,) in db.execute(
            select(Review.observation_id).where(
                Review.observation_id.in_(part), Review.status == "open"
            )
        )
    }
    by_id = {o.id: o for o in observations}
    types = {}
    for part in chunks(sorted({m for b in blocked for m in by_id[b].members})):
        for iid, t in db.execute(
            select(Identity.id, Identity.id_type).where(Identity.id.in_(part))
        ):
            types[iid] = t
    for oid in sorted(blocked - open_reviews):
        obs = by_id[oid]
        customers = sorted({identity_customer[m] for m in obs.members if m in identity_customer})
        id_types = sorted({types[m] for m in obs.members if m in types})
        db.add(
            Review(
                brand_id=brand_id,
                observation_id=oid,
                kind="unique_conflict",
                id_types=id_types,
                customer_ids=customers,
                status="open",
            )
        )
    db.flush()


def raise_for(errors: list[FieldError]) -> None:
    if errors:
        raise Invalid("customers.bad_identifiers", errors=errors)
