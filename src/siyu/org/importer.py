"""Import org units and staff from CSV/XLSX with per-row errors.

Good rows are kept and bad rows are named (line, column, reason). Each row is written in its
own savepoint, so a row is either whole or absent. ``dry_run`` validates everything and
writes nothing. Headers may be English or Chinese (``code``/``编码``, ``name``/``姓名`` …).
Re-importing the same file changes nothing: rows that already exist count as unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.db import atomic
from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.core.tabular import read_rows
from siyu.core.tenancy import Actor
from siyu.core.validation import parse
from siyu.org import actions, queries
from siyu.org.models import Brand, Membership, Staff
from siyu.org.permissions import authorize
from siyu.org.schemas import MembershipIn, StaffIn, UnitIn

UNIT_HEADERS = {
    "code": ("code", "编码", "门店编码", "组织编码"),
    "name": ("name", "名称", "门店名称", "组织名称"),
    "kind": ("kind", "type", "类型"),
    "parent": ("parent", "parent_code", "上级", "上级编码"),
    "city": ("city", "城市"),
    "address": ("address", "地址"),
}
STAFF_HEADERS = {
    "name": ("name", "姓名"),
    "username": ("username", "账号", "登录名"),
    "role": ("role", "角色"),
    "scope": ("scope", "数据范围"),
    "unit": ("unit", "unit_code", "门店编码", "组织编码", "所属组织"),
    "email": ("email", "邮箱"),
    "employee_no": ("employee_no", "工号"),
    "wecom_userid": ("wecom_userid", "企微账号", "企业微信账号"),
    "guide_kind": ("guide_kind", "导购类型"),
    "category": ("category", "品类"),
}
KIND_ZH = {
    "总部": "hq",
    "大区": "region",
    "区域": "region",
    "城市": "city",
    "门店": "store",
    "其他": "other",
}
ROLE_ZH = {
    "管理员": "admin",
    "总部运营": "hq_operator",
    "区域经理": "regional_manager",
    "店长": "store_manager",
    "导购": "guide",
    "社群运营": "community_operator",
    "内容运营": "content_operator",
    "分析师": "analyst",
    "代运营客户经理": "agency_manager",
}
SCOPE_ZH = {"本人": "own", "本组织": "unit", "本品牌": "brand", "本机构": "agency"}
GUIDE_KIND_ZH = {"通用": "general", "品类": "category", "品牌": "brand"}


@dataclass
class ImportReport:
    total: int = 0
    created: int = 0
    unchanged: int = 0
    dry_run: bool = False
    errors: list[FieldError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len({e.row for e in self.errors})

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "created": self.created,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "dry_run": self.dry_run,
            "errors": [e.as_dict() for e in self.errors],
        }


def _map(row: dict[str, str], headers: dict[str, tuple[str, ...]]) -> dict[str, str | None]:
    lowered = {k.strip().lower(): v for k, v in row.items()}
    out: dict[str, str | None] = {}
    for key, names in headers.items():
        for name in names:
            if name.lower() in lowered:
                value = lowered[name.lower()].strip()
                out[key] = value or None
                break
    return out


def _translate(values: dict[str, str | None], key: str, table: dict[str, str]) -> None:
    value = values.get(key)
    if value is not None:
        values[key] = table.get(value, value.lower())


def _row_errors(exc: SiyuError, line: int, locale: str = "en") -> list[FieldError]:
    if exc.errors:
        return [
            FieldError(code=e.code, field=e.field, row=line, reason=e.reason) for e in exc.errors
        ]
    return [FieldError(code=exc.code, row=line, reason=exc.message(locale))]


class _DryRun(Exception):
    """Raised at the end of a dry run so the whole transaction rolls back."""


def _in_transaction(db: Session, dry_run: bool, body: Callable[[], None]) -> None:
    """One transaction for the file, one savepoint per row; a dry run rolls everything back."""
    try:
        with atomic(db):
            body()
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass


def _rows(path: Path, data: bytes | None) -> list[tuple[int, dict[str, str]]]:
    return list(read_rows(path, data))


def import_units(
    db: Session,
    actor: Actor,
    brand: Brand,
    path: Path,
    *,
    data: bytes | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Units may name parents that come later in the file: rows are retried until no progress."""
    authorize(actor, "org.write", queries.brand_ref(brand))
    report = ImportReport(dry_run=dry_run)
    pending: list[tuple[int, UnitIn]] = []
    for line, raw in _rows(path, data):
        report.total += 1
        values = _map(raw, UNIT_HEADERS)
        _translate(values, "kind", KIND_ZH)
        values = {k: v for k, v in values.items() if v is not None}
        try:
            pending.append((line, parse(UnitIn, values, row=line)))
        except SiyuError as exc:
            report.errors.extend(_row_errors(exc, line))
    failures: dict[int, SiyuError] = {}

    def body() -> None:
        nonlocal pending
        progress = True
        while pending and progress:
            progress = False
            waiting: list[tuple[int, UnitIn]] = []
            for line, unit in pending:
                existing = queries.resolve_unit(db, brand, unit.code)
                if existing is not None:
                    report.unchanged += 1
                    progress = True
                    continue
                try:
                    with db.begin_nested():
                        actions.create_unit(db, actor, brand, unit)
                    report.created += 1
                    progress = True
                except Invalid as exc:
                    if exc.code == "org.parent_not_found":
                        waiting.append((line, unit))
                        failures[line] = exc
                    else:
                        report.errors.extend(_row_errors(exc, line))
                except SiyuError as exc:
                    report.errors.extend(_row_errors(exc, line))
            pending = waiting
        for line, _unit in pending:
            report.errors.extend(_row_errors(failures[line], line))

    _in_transaction(db, dry_run, body)
    report.errors.sort(key=lambda e: (e.row or 0, e.field or ""))
    return report


def import_staff(
    db: Session,
    actor: Actor,
    brand: Brand,
    path: Path,
    *,
    data: bytes | None = None,
    dry_run: bool = False,
) -> ImportReport:
    authorize(actor, "staff.write", queries.brand_ref(brand))
    report = ImportReport(dry_run=dry_run)
    rows = _rows(path, data)

    def body() -> None:
        for line, raw in rows:
            report.total += 1
            values = _map(raw, STAFF_HEADERS)
            _translate(values, "role", ROLE_ZH)
            _translate(values, "scope", SCOPE_ZH)
            _translate(values, "guide_kind", GUIDE_KIND_ZH)
            clean = {k: v for k, v in values.items() if v is not None}
            try:
                item = parse(StaffIn, clean, row=line)
                _import_one_staff(db, actor, brand, item, report)
            except SiyuError as exc:
                report.errors.extend(_row_errors(exc, line))

    _in_transaction(db, dry_run, body)
    return report


def _import_one_staff(
    db: Session, actor: Actor, brand: Brand, item: StaffIn, report: ImportReport
) -> None:
    staff = db.scalar(select(Staff).where(Staff.username == item.username))
    if staff is None:
        with db.begin_nested():
            actions.create_staff(db, actor, brand, item)
        report.created += 1
        return
    member = db.scalar(
        select(Membership.id).where(
            Membership.staff_id == staff.id, Membership.brand_id == brand.id
        )
    )
    if member is not None:
        report.unchanged += 1
        return
    # Known person of the same agency: this row makes them serve this brand too.
    with db.begin_nested():
        actions.add_membership(
            db,
            actor,
            brand,
            MembershipIn(
                username=item.username,
                role=item.role,
                scope=item.scope,
                unit=item.unit,
                wecom_userid=item.wecom_userid,
            ),
        )
    report.created += 1
