"""``siyu bench demo`` at a tiny size: phases, totals and the side-by-side reference."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from siyu.cli.main import app


def test_bench_demo_prints_phases_and_ratios_as_json_last() -> None:
    before = os.environ.get("SIYU_DATA_DIR")
    args = ["bench", "demo", "--customers", "400", "--days", "60", "--chunk-rows", "3000"]
    r = CliRunner().invoke(app, [*args, "--reference", "300", "--reference-events", "500"])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output.strip().splitlines()[-1])
    assert figures["customers"] == 400 and figures["facts_per_customer"] >= 20
    assert set(figures["phases"]) >= {"generate_s", "export_s", "import_s", "oneid_full_s"}
    files = [f for b in figures["brands"] for f in b["files"]]
    # the coffee brand's activity export came in parts, each imported on its own
    names = [f["file"] for f in figures["brands"][0]["files"]]
    assert "events-001.csv" in names and "events-002.csv" in names
    assert all(f["rejected"] == 0 for f in files)
    assert sum(f["accepted"] for f in files) == figures["facts"]
    # a full OneID recompute after the imports changes nothing
    assert all(b["oneid_full"]["components_rewritten"] == 0 for b in figures["brands"])
    assert figures["ratio_generate"] > 0 and figures["ratio_import"] > 0
    assert figures["reference_import_rows"] == 500
    assert figures["target_seconds"] == 180 and isinstance(figures["met"], bool)
    assert os.environ.get("SIYU_DATA_DIR") == before  # the throw-away data dir is forgotten
