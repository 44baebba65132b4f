"""The vectorised full-resolution kernel against plain references on generated graphs."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from siyu.bench.oneid import make_graph, ours, reference_networkx, reference_scipy
from siyu.cli.main import app
from siyu.customers.oneid_core import components, conflicted_labels


def test_kernel_matches_references_without_bad_links() -> None:
    g = make_graph(5000, seed=3, bad_link_share=0.0)
    assert ours(g) == reference_scipy(g) == reference_networkx(g)


def test_bad_links_are_untangled_not_merged() -> None:
    g = make_graph(5000, seed=4, bad_link_share=0.05)
    assert g["bad_links"] > 0
    assert ours(g) > reference_scipy(g)


def test_conflicted_labels_finds_two_values_of_a_unique_type() -> None:
    # nodes 0-1-2 joined; 0 and 2 are phones (type 0): a conflict. 3-4 joined, one phone.
    labels = components(5, np.array([0, 1, 3]), np.array([1, 2, 4]))
    unique = np.array([0, -1, 0, 0, -1], dtype=np.int8)
    forced = np.zeros(5, dtype=bool)
    bad = conflicted_labels(labels, unique, forced)
    assert bad.tolist() == [labels[0]]
    forced[3] = True
    assert sorted(conflicted_labels(labels, unique, forced).tolist()) == sorted(
        {int(labels[0]), int(labels[3])}
    )


def test_bench_command_prints_json_last() -> None:
    result = CliRunner().invoke(app, ["bench", "oneid", "--identifiers", "3000", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["ratio_vs_scipy"] > 0 and figures["ratio_vs_networkx"] > 0
    assert figures["customers"] >= figures["components"]
