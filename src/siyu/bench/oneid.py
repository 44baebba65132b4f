"""``siyu bench oneid``: the full OneID resolution against scipy and networkx.

The graph looks like a brand's identity graph: people with 1–5 identifiers (about three on
average) joined by star-shaped observations, one unique-typed identifier (a phone) per
person, and a small share of bad links that join two people with different phones — the
components the OneID rule has to untangle. All three contenders get the same edge arrays.
"""

from __future__ import annotations

import gc
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def make_graph(identifiers: int, seed: int, bad_link_share: float = 0.001) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 2, 3, 4, 5], p=[0.15, 0.2, 0.3, 0.2, 0.15], size=identifiers // 2)
    sizes = sizes[np.cumsum(sizes) <= identifiers]
    n = int(sizes.sum())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group = np.repeat(np.arange(len(sizes)), sizes)
    centre = starts[group]
    is_edge = np.arange(n) != centre
    src = centre[is_edge].astype(np.int64)
    dst = np.arange(n)[is_edge].astype(np.int64)
    # Each person's first identifier is a phone (unique type 0); the rest are not unique.
    unique_type = np.full(n, -1, dtype=np.int8)
    unique_type[starts] = 0
    bad = int(len(sizes) * bad_link_share)
    a = rng.choice(starts, size=bad)
    b = rng.choice(starts, size=bad)
    src = np.concatenate([src, a])
    dst = np.concatenate([dst, b])
    # Shuffle node numbering so components are not contiguous ranges.
    perm = rng.permutation(n)
    return {
        "n": n,
        "src": perm[src],
        "dst": perm[dst],
        "unique_type": unique_type[np.argsort(perm)],
        "links": len(src),
        "bad_links": bad,
    }


def ours(g: dict[str, Any]) -> int:
    """Full resolution: components, conflict detection, the OneID rule where needed."""
    import numpy as np

    from siyu.customers.oneid_core import Obs, resolve
    from siyu.customers.oneid_full import partition

    n = g["n"]
    forced = np.zeros(n, dtype=bool)
    labels, special = partition(n, g["src"], g["dst"], g["unique_type"], forced)
    customers = int(labels.max()) + 1 if n else 0
    if len(special):
        # Untangle the conflicted components with the exact rule, edge by edge.
        in_special = np.isin(labels[g["src"]], special)
        src, dst = g["src"][in_special], g["dst"][in_special]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        by_label: dict[int, list[Obs]] = {}
        for k, (s, d) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
            obs = Obs(str(k), t0 + timedelta(seconds=k), f"{k:012d}", (str(s), str(d)), "applied")
            by_label.setdefault(int(labels[s]), []).append(obs)
        for observations in by_label.values():
            ids = sorted({m for o in observations for m in o.members})
            types = {i: ("phone" if g["unique_type"][int(i)] == 0 else None) for i in ids}
            outcome = resolve(observations, ids, types)
            customers += len(outcome.groups) - 1
    return customers


def reference_scipy(g: dict[str, Any]) -> int:
    import numpy as np
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
    from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

    n = g["n"]
    graph = csr_matrix((np.ones(len(g["src"]), dtype=np.int8), (g["src"], g["dst"])), (n, n))
    count, _ = connected_components(graph, directed=False)
    return int(count)


def reference_networkx(g: dict[str, Any]) -> int:
    import networkx as nx  # type: ignore[import-untyped]

    graph = nx.Graph()
    graph.add_nodes_from(range(g["n"]))
    graph.add_edges_from(zip(g["src"].tolist(), g["dst"].tolist(), strict=True))
    return sum(1 for _ in nx.connected_components(graph))


def timed(fn: Any, g: dict[str, Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn(g)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(identifiers: int, seed: int = 7, repeat: int = 3, networkx: bool = True) -> dict[str, Any]:
    g = make_graph(identifiers, seed)
    ours_s, ours_customers = timed(ours, g, repeat)
    scipy_s, scipy_components = timed(reference_scipy, g, repeat)
    out: dict[str, Any] = {
        "benchmark": "oneid",
        "identifiers": g["n"],
        "links": g["links"],
        "bad_links": g["bad_links"],
        "repeat": repeat,
        "ours_s": round(ours_s, 4),
        "scipy_s": round(scipy_s, 4),
        "ratio_vs_scipy": round(ours_s / scipy_s, 3),
        "customers": ours_customers,
        "components": scipy_components,
    }
    if networkx:
        nx_s, nx_components = timed(reference_networkx, g, 1)
        out.update(
            networkx_s=round(nx_s, 3),
            ratio_vs_networkx=round(ours_s / nx_s, 4),
        )
        assert nx_components == scipy_components
    # The rule only ever splits what plain components would join.
    assert ours_customers >= scipy_components
    return out
