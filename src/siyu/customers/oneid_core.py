"""The OneID rule, as pure functions over observations (no database).

Both the incremental resolver (on every ingest) and the full recompute use these, which is
why they always agree.

The rule: take a component's observations in canonical order — earliest ``observed_at``
first, ties broken by ``set_hash`` (both independent of arrival order). Each observation
joins all its strong identities into one group, unless that would put two different values
of a unique type into one group: then it is *blocked* as a whole (and queued for review).
Operators' *forced* observations always join; *rejected* ones never do. Weak identities are
not part of the graph at all.

When a component has no blocked or forced observation, the rule reduces to plain connected
components, which :func:`components` computes fast (scipy) for the full recompute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Obs:
    id: str
    observed_at: datetime
    set_hash: str
    members: tuple[str, ...]  # strong identity ids
    status: str  # applied | blocked | forced | rejected


@dataclass
class Outcome:
    groups: list[set[str]]  # identity ids, one set per customer
    blocked: set[str]  # observation ids refused by the unique rule
    applied: set[str]  # observation ids joined normally


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        # per root: unique type -> identity ids of that type in the group
        self.unique: dict[str, dict[str, set[str]]] = {}

    def add(self, node: str, id_type: str | None) -> None:
        if node not in self.parent:
            self.parent[node] = node
            self.unique[node] = {id_type: {node}} if id_type else {}

    def find(self, node: str) -> str:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def would_conflict(self, roots: set[str]) -> bool:
        seen: dict[str, set[str]] = {}
        for root in roots:
            for id_type, ids in self.unique[root].items():
                bucket = seen.setdefault(id_type, set())
                bucket |= ids
                if len(bucket) > 1:
                    return True
        return False

    def union(self, roots: Iterable[str]) -> None:
        ordered = sorted(roots)
        keep = ordered[0]
        for other in ordered[1:]:
            self.parent[other] = keep
            for id_type, ids in self.unique.pop(other).items():
                self.unique[keep].setdefault(id_type, set()).update(ids)


def canonical_order(observations: Iterable[Obs]) -> list[Obs]:
    return sorted(observations, key=lambda o: (o.observed_at, o.set_hash))


def resolve(
    observations: Iterable[Obs],
    identities: Iterable[str],
    unique_type_of: Mapping[str, str | None],
) -> Outcome:
    """Apply the rule to one or more whole components.

    ``identities`` are all strong identity ids involved (also those only seen in rejected
    observations); ``unique_type_of`` maps an identity id to its type when that type is
    unique, else to None.
    """
    uf = _UnionFind()
    for ident in identities:
        uf.add(ident, unique_type_of.get(ident))
    blocked: set[str] = set()
    applied: set[str] = set()
    for obs in canonical_order(observations):
        if obs.status == "rejected" or len(obs.members) == 0:
            continue
        for ident in obs.members:
            uf.add(ident, unique_type_of.get(ident))
        roots = {uf.find(m) for m in obs.members}
        if obs.status != "forced" and len(roots) > 1 and uf.would_conflict(roots):
            blocked.add(obs.id)
            continue
        applied.add(obs.id)
        if len(roots) > 1:
            uf.union(roots)
    groups: dict[str, set[str]] = {}
    for ident in uf.parent:
        groups.setdefault(uf.find(ident), set()).add(ident)
    return Outcome(groups=list(groups.values()), blocked=blocked, applied=applied)


def components(n: int, src: NDArray[np.int64], dst: NDArray[np.int64]) -> NDArray[np.int32]:
    """Connected-component labels of an undirected graph of ``n`` nodes.

    scipy's C implementation does the traversal; ``src``/``dst`` are edge endpoints.
    """
    import numpy as np
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
    from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

    graph = csr_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    out: NDArray[np.int32] = np.asarray(labels, dtype=np.int32)
    return out


def conflicted_labels(
    labels: NDArray[np.int32], unique_type: NDArray[np.int8], forced: NDArray[np.bool_]
) -> NDArray[np.int32]:
    """Components that need :func:`resolve`: two values of a unique type, or a forced link.

    ``unique_type[i]`` is a small code of node i's unique type (-1 when not unique);
    ``forced[i]`` marks nodes of forced observations. Vectorised: one sort, no Python loop.
    """
    import numpy as np

    mask = unique_type >= 0
    lab = labels[mask].astype(np.int64)
    typ = unique_type[mask].astype(np.int64)
    pair = lab * 256 + typ
    uniq, counts = np.unique(pair, return_counts=True)
    clash = np.unique(uniq[counts > 1] // 256)
    return np.union1d(clash, np.unique(labels[forced])).astype(np.int32)
