"""Importing stores and staff: encodings Chinese brands use, per-row errors, dry runs,
re-imports that change nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli.main import app as cli
from siyu.core.tenancy import SYSTEM
from siyu.org import importer, queries
from siyu.org.models import OrgUnit, Staff

UNITS_CSV = (
    "编码,名称,类型,上级编码,城市\n"
    "A-NORTH,华北,大区,A-HQ,\n"
    "A-BJ01,国贸店,门店,A-BJ,北京\n"  # parent defined on the next line
    "A-BJ,北京,城市,A-NORTH,北京\n"
    "A-BAD1,坏类型,城堡,A-HQ,\n"  # unknown kind
    ",没有编码,门店,A-HQ,\n"  # missing code
    "A-ORPHAN,孤儿店,门店,NOPE,\n"  # unknown parent
)


def count_units(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(OrgUnit)) or 0


def test_units_csv_in_gb18030_keeps_good_rows_and_names_bad_ones(
    db: Session, world: object
) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    data = UNITS_CSV.encode("gb18030")
    report = importer.import_units(db, SYSTEM, brand, Path("stores.csv"), data=data)
    assert (report.total, report.created, report.rejected) == (6, 3, 3)
    by_line = {e.row: e for e in report.errors}
    assert by_line[5].field == "kind"
    assert by_line[6].field == "code"
    assert by_line[7].code == "org.parent_not_found"
    bj01 = queries.resolve_unit(db, brand, "A-BJ01")
    bj = queries.resolve_unit(db, brand, "A-BJ")
    assert bj01 is not None and bj is not None and bj01.parent_id == bj.id
    assert bj01.name == "国贸店" and bj01.kind == "store"
    # a second import adds nothing
    before = count_units(db)
    again = importer.import_units(db, SYSTEM, brand, Path("stores.csv"), data=data)
    assert (again.created, again.unchanged) == (0, 3)
    assert count_units(db) == before


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_encodings(db: Session, world: object, encoding: str) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    data = "code,name,kind,parent\nA-X1,虹桥店,store,A-EAST\n".encode(encoding)
    report = importer.import_units(db, SYSTEM, brand, Path("u.csv"), data=data)
    assert report.errors == []
    unit = queries.resolve_unit(db, brand, "A-X1")
    assert unit is not None and unit.name == "虹桥店"


def test_dry_run_writes_nothing(db: Session, world: object) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    before = count_units(db)
    report = importer.import_units(
        db, SYSTEM, brand, Path("s.csv"), data=UNITS_CSV.encode(), dry_run=True
    )
    assert (report.created, report.rejected, report.dry_run) == (3, 3, True)
    assert count_units(db) == before


def staff_xlsx() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["姓名", "账号", "角色", "门店编码", "企微账号", "导购类型"])
    sheet.append(["刘一", "liu.yi", "导购", "A-SH01", "liuyi", "通用"])
    sheet.append(["陈二", "chen.er", "店长", "A-SH02", "chener", None])
    sheet.append(["张三", "zhang.san", "魔法师", "A-SH01", None, None])  # unknown role
    sheet.append(["李四", "li.si", "导购", "NOPE", None, None])  # unknown store
    sheet.append(["王五", "wang.wu", "导购", "A-SH01", "aguide", None])  # WeCom id taken
    sheet.append(["共享", "shared", "导购", "A-SH02", None, None])  # already serves a-coffee
    sheet.append(["茶饮", "t.admin", "导购", "A-GZ01", "tadmin", None])  # same agency: joins
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_staff_xlsx_import(db: Session, world: object) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    report = importer.import_staff(db, SYSTEM, brand, Path("staff.xlsx"), data=staff_xlsx())
    assert (report.total, report.created, report.unchanged, report.rejected) == (7, 3, 1, 3)
    codes = {e.row: e.code for e in report.errors}
    assert codes[4].startswith("invalid.")
    assert codes[5] == "org.unit_not_found"
    assert codes[6] == "org.wecom_userid_taken"
    # nothing half-written: the rejected people do not exist at all
    names = set(db.scalars(select(Staff.username)))
    assert {"liu.yi", "chen.er"} <= names
    assert not {"zhang.san", "li.si", "wang.wu"} & names
    listed = {s.username: s for s in queries.list_staff(db, SYSTEM, brand)}
    assert listed["liu.yi"].guide_kind == "general"
    assert listed["chen.er"].role == "store_manager"
    assert listed["t.admin"].brands == ["a-coffee", "a-tea"]


def test_cli_import_exit_codes_and_report(
    tmp_path: Path, db: Session, world: object, db_url: str
) -> None:
    runner = CliRunner()
    bad = tmp_path / "stores.csv"
    bad.write_bytes(UNITS_CSV.encode("gb18030"))
    r = runner.invoke(cli, ["org", "import", "units", str(bad), "--brand", "a-coffee"])
    assert r.exit_code == 3, r.output
    report = json.loads((tmp_path / "stores.errors.json").read_text(encoding="utf-8"))
    assert report["rejected"] == 3
    good = tmp_path / "good.csv"
    good.write_text("code,name,parent\nA-Y1,y,A-EAST\n", encoding="utf-8")
    r = runner.invoke(cli, ["org", "import", "units", str(good), "--brand", "a-coffee"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["org", "import", "units", str(tmp_path / "none.csv"), "--brand", "a-coffee"]
    )
    assert r.exit_code == 2
    assert "import.missing_file" in r.output


def test_garbage_file_is_refused_with_a_code(db: Session, world: object) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    with pytest.raises(Exception) as exc:
        importer.import_units(db, SYSTEM, brand, Path("x.xlsx"), data=b"not a zip")
    assert getattr(exc.value, "code", None) == "import.bad_xlsx"
