"""The CLI as a user runs it: ``--data-dir``, brands by slug, coded errors, --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siyu.cli.main import app

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    path = str(tmp_path / "cli-data")
    run("db", "upgrade", "--data-dir", path)
    return path


def test_help_lists_the_commands() -> None:
    out = run("--help")
    for name in ("serve", "demo", "db", "org", "user", "apikey", "audit"):
        assert name in out
    assert "--brand" in run("org", "unit", "create", "--help")


def test_org_from_the_command_line(data_dir: str, tmp_path: Path) -> None:
    d = ["--data-dir", data_dir]
    run("org", "agency", "create", "acme", "--name", "Acme 代运营", *d)
    out = run(
        "org",
        "brand",
        "create",
        "tea",
        "--name",
        "思屿茶饮",
        "--agency",
        "acme",
        "--timezone",
        "Asia/Urumqi",
        "--json",
        *d,
    )
    assert json.loads(out)["timezone"] == "Asia/Urumqi"
    run("org", "unit", "create", "HQ", "--brand", "tea", "--name", "总部", "--kind", "hq", *d)
    run("org", "unit", "create", "S1", "--brand", "tea", "--name", "一店", "--parent", "HQ", *d)
    run(
        "org",
        "staff",
        "create",
        "li.lei",
        "--brand",
        "tea",
        "--name",
        "李雷",
        "--role",
        "guide",
        "--unit",
        "S1",
        "--wecom-userid",
        "lilei",
        *d,
    )
    tree = run("org", "unit", "tree", "--brand", "tea", *d)
    assert "总部 [HQ, hq]" in tree and "  一店 [S1, store]" in tree
    staff = json.loads(run("org", "staff", "list", "--brand", "tea", "--json", *d))
    assert staff[0]["username"] == "li.lei" and staff[0]["unit_name"] == "一店"
    key = json.loads(
        run(
            "apikey",
            "create",
            "--brand",
            "tea",
            "--name",
            "crm",
            "--scope",
            "org.read",
            "--json",
            *d,
        )
    )
    assert key["key"].startswith("sk_")
    listed = run("apikey", "list", "--brand", "tea", *d)
    assert key["key"] not in listed
    audit = json.loads(run("audit", "list", "--brand", "tea", "--json", *d))
    assert {"unit.create", "staff.create", "api_key.create"} <= {a["action"] for a in audit}
    # the data really lives in the data dir
    assert (Path(data_dir) / "siyu.db").exists()


def test_errors_are_coded_not_tracebacks(data_dir: str) -> None:
    d = ["--data-dir", data_dir]
    out = run("org", "unit", "create", "X", "--brand", "nope", "--name", "x", *d, code=2)
    assert "[org.brand_not_found]" in out
    out = run("org", "brand", "create", "Bad Slug!", "--name", "x", *d, code=2)
    assert "[validation.failed]" in out and "slug" in out
    out = run(
        "org", "brand", "create", "ok-slug", "--name", "x", "--timezone", "Nowhere/X", *d, code=2
    )
    assert "timezone" in out


def test_create_admin_and_set_password(data_dir: str) -> None:
    d = ["--data-dir", data_dir]
    run("user", "create-admin", "--username", "boss", "--password", "correct-horse", *d)
    out = run(
        "user", "create-admin", "--username", "boss", "--password", "correct-horse", *d, code=2
    )
    assert "org.username_taken" in out
    out = run("user", "set-password", "boss", "--password", "short", *d, code=2)
    assert "auth.password_too_short" in out
    run("user", "set-password", "boss", "--password", "longer-password", *d)


def test_demo_builds_agency_brands_tree_and_staff(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "demo")]
    small = ["--customers", "400", "--days", "60"]
    out = run("demo", "--no-serve", *small, *d)
    assert "0 rejected" in out and " rejected" in out
    assert all(" 0 rejected" in line for line in out.splitlines() if "rejected" in line)
    assert "demo-coffee" in out and "demo-beauty" in out
    # every kind of handed-over file went through the real import: CSV (GB18030, UTF-8 BOM,
    # UTF-8), XLSX and JSONL
    for name in ("crm_members.csv", "orders.csv", "events.csv", "csat_survey.xlsx"):
        assert f"  {name}: " in out and f"  {name}: 0 stored" not in out
    assert "wecom_contacts.jsonl" in out and "referrals.jsonl" in out
    brands = {b["slug"] for b in json.loads(run("org", "brand", "list", "--json", *d))}
    assert brands == {"demo-coffee", "demo-beauty"}
    # the demo runs the tags too: the standard pack and the built-ins computed, none failing
    assert out.count("  tags: ok") == 2
    # and its SOPs: enabled from templates, today planned, every decision with a reason
    assert out.count("  sops: ok") == 2
    sops = json.loads(run("sop", "list", "--brand", "demo-coffee", "--json", *d))
    assert {s["key"] for s in sops} >= {"welcome_journey", "post_purchase_care", "winback_now"}
    tags = json.loads(run("tags", "list", "--brand", "demo-coffee", "--json", *d))
    keys = {t["key"] for t in tags}
    assert {"repeat_buyer", "lifecycle_active", "rfm_r_5", "p_alive", "home_store"} <= keys
    assert all(t["health"] in ("ok", "paused") for t in tags)
    shown = json.loads(
        run("tags", "settings", "--brand", "demo-coffee", "--group", "rfm_segment", *d)
    )
    assert shown["params"]["recency"] == [30, 60, 90, 180]
    assert len(shown["derived"]["monetary"]) == 4  # derived from the data by the full run
    fitted = json.loads(run("value", "fit", "--brand", "demo-coffee", "--json", *d))
    assert set(fitted["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(fitted["gamma_gamma"]) == {"p", "q", "gamma"}
    sql = run(
        "tags",
        "sql",
        "repeat_buyer",
        "--tag",
        "--brand",
        "demo-coffee",
        "--dialect",
        "clickhouse",
        *d,
    )
    assert "SELECT" in sql and "orders" in sql
    pack = tmp_path / "pack.csv"
    run(
        "segments",
        "export",
        "vip_active",
        "--brand",
        "demo-coffee",
        "--format",
        "audience",
        "--output",
        str(pack),
        *d,
    )
    lines = pack.read_text().splitlines()
    assert lines[0] == "md5,sha256"
    assert all(len(m) == 32 and len(s) == 64 for m, s in (x.split(",") for x in lines[1:]))
    staff = json.loads(run("org", "staff", "list", "--brand", "demo-beauty", "--json", *d))
    shared = next(s for s in staff if s["username"] == "guide.shared")
    assert shared["brands"] == ["demo-beauty", "demo-coffee"]
    # idempotent: a second run adds nothing
    before = len(staff)
    again = run("demo", "--no-serve", *small, *d)
    # re-importing the same exported files stores nothing new
    assert all(
        line.strip().split(": ")[1].startswith("0 stored")
        for line in again.splitlines()
        if "stored" in line
    )
    found = json.loads(run("customers", "search", "--brand", "demo-beauty", "--json", *d))
    assert found and all("****" in c["phone"] for c in found if c["phone"])
    assert (
        len(json.loads(run("org", "staff", "list", "--brand", "demo-beauty", "--json", *d)))
        == before
    )


def test_bench_sop_prints_its_figures_as_json_last() -> None:
    out = run("bench", "sop", "--customers", "3000", "--sops", "4")
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["customers"] == 3000 and figures["agree"] == 1.0
    assert figures["status"]["sent"] > 0 and "ratio_per_candidate" in figures
