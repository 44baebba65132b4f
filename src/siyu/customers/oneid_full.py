"""Full OneID recompute for a brand: every component from its observations, at once.

Vectorised: identities become integer node ids, observations become star edges, scipy
labels the components, and a numpy pass finds the few components that need the full rule
(two values of a unique type, or a forced link). Only components whose result differs from
the store are written, through the same writer as the incremental path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.customers.identifiers import TypeConfig
from siyu.customers.models import Customer, Identity, Observation, ObservationMember
from siyu.customers.oneid import write_outcome
from siyu.customers.oneid_core import Obs, components, conflicted_labels, resolve

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def partition(
    n: int,
    src: NDArray[np.int64],
    dst: NDArray[np.int64],
    unique_type: NDArray[np.int8],
    forced: NDArray[np.bool_],
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Component labels and the labels that need :func:`oneid_core.resolve`."""
    labels = components(n, src, dst)
    return labels, conflicted_labels(labels, unique_type, forced)


def full_resolution(db: Session, brand_id: str, cfg: TypeConfig, actor: Actor) -> dict[str, int]:
    import numpy as np

    ident_rows = db.execute(
        select(Identity.id, Identity.id_type, Identity.customer_id).where(
            Identity.brand_id == brand_id, Identity.weak.is_(False)
        )
    ).all()
    index = {row.id: i for i, row in enumerate(ident_rows)}
    n = len(ident_rows)
    unique_codes = {t: k for k, t in enumerate(sorted(cfg.unique))}
    unique_type = np.array([unique_codes.get(r.id_type, -1) for r in ident_rows], dtype=np.int8)
    obs_rows = {
        r.id: r
        for r in db.execute(
            select(
                Observation.id, Observation.observed_at, Observation.set_hash, Observation.status
            ).where(Observation.brand_id == brand_id, Observation.status != "weak_only")
        )
    }
    members: dict[str, list[str]] = defaultdict(list)
    for oid, iid in db.execute(
        select(ObservationMember.observation_id, ObservationMember.identity_id)
        .join(Observation, Observation.id == ObservationMember.observation_id)
        .where(Observation.brand_id == brand_id, ObservationMember.weak.is_(False))
    ):
        members[oid].append(iid)
    src: list[int] = []
    dst: list[int] = []
    forced = np.zeros(n, dtype=bool)
    for oid, orow in obs_rows.items():
        nums = [index[i] for i in members.get(oid, []) if i in index]
        if orow.status == "rejected" or len(nums) < 2:
            continue
        for other in nums[1:]:
            src.append(nums[0])
            dst.append(other)
        if orow.status == "forced":
            forced[nums] = True
    labels, special = partition(
        n, np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), unique_type, forced
    )
    special_set = set(int(x) for x in special)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels.tolist()):
        by_label[label].append(i)
    obs_by_label: dict[int, list[str]] = defaultdict(list)
    for oid in obs_rows:
        ids = members.get(oid, [])
        if ids and ids[0] in index:
            obs_by_label[int(labels[index[ids[0]]])].append(oid)
    conflicted_customers = set(
        db.scalars(select(Customer.id).where(Customer.brand_id == brand_id, Customer.conflicted))
    )
    size_of: dict[str | None, int] = defaultdict(int)
    for irow in ident_rows:
        size_of[irow.customer_id] += 1
    stats = {
        "identities": n,
        "observations": len(obs_rows),
        "components": len(by_label),
        "resolved_by_rule": len(special_set),
        "components_rewritten": 0,
    }
    for label, nodes in by_label.items():
        ids = [ident_rows[i].id for i in nodes]
        current = {ident_rows[i].id: ident_rows[i].customer_id for i in nodes}
        obs = [
            Obs(
                o,
                obs_rows[o].observed_at,
                obs_rows[o].set_hash,
                tuple(sorted(members[o])),
                obs_rows[o].status,
            )
            for o in obs_by_label.get(label, [])
        ]
        if label in special_set:
            unique_type_of = {
                ident_rows[i].id: (ident_rows[i].id_type if unique_type[i] >= 0 else None)
                for i in nodes
            }
            outcome = resolve(obs, ids, unique_type_of)
            groups, blocked = outcome.groups, outcome.blocked
        else:
            groups, blocked = [set(ids)], set()
        if _unchanged(groups, blocked, obs, current, size_of, conflicted_customers):
            continue
        write_outcome(db, brand_id, obs, groups, blocked, actor)
        stats["components_rewritten"] += 1
    db.flush()
    return stats


def _unchanged(
    groups: list[set[str]],
    blocked: set[str],
    obs: list[Obs],
    current: dict[str, str | None],
    size_of: dict[str | None, int],
    conflicted_customers: set[str],
) -> bool:
    for group in groups:
        owners = {current[i] for i in group}
        if len(owners) != 1:
            return False
        owner = owners.pop()
        if owner is None or size_of[owner] != len(group):
            return False
        should_flag = bool(blocked) or any(o.status == "forced" for o in obs)
        if (owner in conflicted_customers) != should_flag:
            return False
    statuses = {o.id: o.status for o in obs}
    return all(
        (statuses[o] == "blocked") == (o in blocked)
        for o in statuses
        if statuses[o] in ("applied", "blocked")
    )
