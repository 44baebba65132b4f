"""``siyu org …``: agencies, brands, org units, staff and imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.core.errors import Invalid
from siyu.core.tenancy import Actor
from siyu.core.validation import parse
from siyu.org import actions, importer, queries
from siyu.org.schemas import (
    AgencyIn,
    AgencyOut,
    BrandIn,
    BrandOut,
    MembershipIn,
    StaffIn,
    UnitIn,
    UnitNode,
    UnitOut,
)

# The CLI is run by whoever operates the installation (like a database console): full rights,
# and every write is still audited under this name.
CLI = Actor(kind="system", id="cli", label="cli", superadmin=True)

app = typer.Typer(help="Agencies, brands, org units, staff and imports.", no_args_is_help=True)
agency_app = typer.Typer(help="Agencies (代运营机构).", no_args_is_help=True)
brand_app = typer.Typer(help="Brands.", no_args_is_help=True)
unit_app = typer.Typer(
    help="Org units: HQ, regions, cities, stores (any depth).", no_args_is_help=True
)
staff_app = typer.Typer(help="Staff, their roles and data scopes per brand.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import org units or staff from CSV (UTF-8/GB18030) or XLSX.", no_args_is_help=True
)
app.add_typer(agency_app, name="agency")
app.add_typer(brand_app, name="brand")
app.add_typer(unit_app, name="unit")
app.add_typer(staff_app, name="staff")
app.add_typer(import_app, name="import")


@agency_app.command("create")
@handled
def agency_create(
    slug: str,
    name: Annotated[str, typer.Option("--name")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an agency: siyu org agency create SLUG --name NAME."""
    with session(data_dir) as db:
        agency = actions.create_agency(db, CLI, parse(AgencyIn, {"slug": slug, "name": name}))
        emit(AgencyOut.model_validate(agency).model_dump(), as_json)


@agency_app.command("list")
@handled
def agency_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List agencies."""
    with session(data_dir) as db:
        emit(
            [AgencyOut.model_validate(a).model_dump() for a in queries.list_agencies(db, CLI)],
            as_json,
        )


@brand_app.command("create")
@handled
def brand_create(
    slug: str,
    name: Annotated[str, typer.Option("--name")],
    agency: Annotated[str | None, typer.Option("--agency", help="Agency slug")] = None,
    timezone: Annotated[str, typer.Option("--timezone")] = "Asia/Shanghai",
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a brand: siyu org brand create SLUG --name NAME [--agency SLUG] [--timezone TZ]."""
    with session(data_dir) as db:
        data = parse(BrandIn, {"slug": slug, "name": name, "agency": agency, "timezone": timezone})
        brand = actions.create_brand(db, CLI, data)
        emit(BrandOut.model_validate(brand).model_dump(), as_json)


@brand_app.command("list")
@handled
def brand_list(data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List brands."""
    with session(data_dir) as db:
        emit(
            [BrandOut.model_validate(b).model_dump() for b in queries.accessible_brands(db, CLI)],
            as_json,
        )


@unit_app.command("create")
@handled
def unit_create(
    code: str,
    brand: BrandOpt,
    name: Annotated[str, typer.Option("--name")],
    kind: Annotated[str, typer.Option("--kind", help="hq|region|city|store|other")] = "store",
    parent: Annotated[str | None, typer.Option("--parent", help="Parent code or id")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    address: Annotated[str | None, typer.Option("--address")] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an org unit: siyu org unit create CODE --brand B --name N [--parent CODE]."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand, "org.write")
        data = parse(
            UnitIn,
            {
                "code": code,
                "name": name,
                "kind": kind,
                "parent": parent,
                "city": city,
                "address": address,
            },
        )
        unit = actions.create_unit(db, CLI, b, data)
        emit(UnitOut.model_validate(unit).model_dump(), as_json)


@unit_app.command("list")
@handled
def unit_list(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List a brand's org units as a flat table."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand)
        emit(
            [UnitOut.model_validate(u).model_dump() for u in queries.list_units(db, CLI, b)],
            as_json,
            ["code", "name", "kind", "depth", "city", "id"],
        )


@unit_app.command("tree")
@handled
def unit_tree(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Show a brand's org tree."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand)
        roots = queries.unit_tree(db, CLI, b)
        if as_json:
            emit([r.model_dump() for r in roots], True)
            return

        def show(node: UnitNode, indent: int) -> None:
            typer.echo(f"{'  ' * indent}{node.name} [{node.code}, {node.kind}]")
            for child in node.children:
                show(child, indent + 1)

        for root in roots:
            show(root, 0)


@staff_app.command("create")
@handled
def staff_create(
    username: str,
    brand: BrandOpt,
    name: Annotated[str, typer.Option("--name")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="admin|hq_operator|regional_manager|"
            "store_manager|guide|community_operator|"
            "content_operator|analyst|agency_manager",
        ),
    ],
    scope: Annotated[str | None, typer.Option("--scope", help="own|unit|brand|agency")] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="Org unit code or id")] = None,
    wecom_userid: Annotated[str | None, typer.Option("--wecom-userid")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    guide_kind: Annotated[
        str, typer.Option("--guide-kind", help="general|category|brand")
    ] = "brand",
    password: Annotated[
        str | None,
        typer.Option("--password", help="Console password (omit: the person cannot sign in yet)"),
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a staff member with a role and data scope on a brand."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand, "staff.write")
        raw: dict[str, Any] = {
            "username": username,
            "name": name,
            "role": role,
            "scope": scope,
            "unit": unit,
            "wecom_userid": wecom_userid,
            "email": email,
            "guide_kind": guide_kind,
            "password": password,
        }
        staff = actions.create_staff(db, CLI, b, parse(StaffIn, raw))
        emit(queries.get_staff(db, CLI, b, staff.id).model_dump(), as_json)


@staff_app.command("assign")
@handled
def staff_assign(
    username: str,
    brand: BrandOpt,
    role: Annotated[str, typer.Option("--role")],
    scope: Annotated[str | None, typer.Option("--scope")] = None,
    unit: Annotated[str | None, typer.Option("--unit")] = None,
    wecom_userid: Annotated[str | None, typer.Option("--wecom-userid")] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Let an existing staff member (e.g. a shared guide) serve another brand."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand, "staff.write")
        member = actions.add_membership(
            db,
            CLI,
            b,
            parse(
                MembershipIn,
                {
                    "username": username,
                    "role": role,
                    "scope": scope,
                    "unit": unit,
                    "wecom_userid": wecom_userid,
                },
            ),
        )
        emit(queries.get_staff(db, CLI, b, member.staff_id).model_dump(), as_json)


@staff_app.command("list")
@handled
def staff_list(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List the staff serving a brand."""
    with session(data_dir) as db:
        b = queries.access_brand(db, CLI, brand)
        emit(
            [s.model_dump() for s in queries.list_staff(db, CLI, b)],
            as_json,
            ["username", "name", "role", "scope", "unit_name", "wecom_userid", "brands"],
        )


def _run_import(
    kind: str,
    file: Path,
    brand: str,
    dry_run: bool,
    report: Path | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    if not file.exists():
        raise Invalid("import.missing_file", path=str(file))
    with session(data_dir) as db:
        perm = "org.write" if kind == "units" else "staff.write"
        b = queries.access_brand(db, CLI, brand, perm)
        fn = importer.import_units if kind == "units" else importer.import_staff
        result = fn(db, CLI, b, file, dry_run=dry_run)
    out = result.as_dict()
    if report is not None or result.errors:
        path = report or file.with_name(file.stem + ".errors.json")
        path.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
        out["report"] = str(path)
    if as_json:
        emit(out, True)
    else:
        typer.echo(
            f"{'[dry run] ' if dry_run else ''}rows {result.total}: created "
            f"{result.created}, unchanged {result.unchanged}, rejected {result.rejected}"
        )
        for err in result.errors[:20]:
            typer.echo(
                f"  line {err.row}{' ' + err.field if err.field else ''}: {err.reason} [{err.code}]"
            )
        if len(result.errors) > 20:
            typer.echo(f"  … {len(result.errors) - 20} more")
        if "report" in out:
            typer.echo(f"report: {out['report']}")
    if result.errors:
        raise typer.Exit(3)


ImportFile = Annotated[Path, typer.Argument(help="CSV (UTF-8, UTF-8 BOM, GB18030) or XLSX")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Check every row, write nothing.")]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report", help="Where to write the JSON report (default FILE.errors.json when rows fail)"
    ),
]


@import_app.command("units")
@handled
def import_units(
    file: ImportFile,
    brand: BrandOpt,
    dry_run: DryRun = False,
    report: ReportOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Import org units (columns code,name,kind,parent,city,address or 编码,名称,类型,上级编码…).

    Exit 0 when every row is good, 3 when some rows were rejected (good rows are kept).
    """
    _run_import("units", file, brand, dry_run, report, data_dir, as_json)


@import_app.command("staff")
@handled
def import_staff(
    file: ImportFile,
    brand: BrandOpt,
    dry_run: DryRun = False,
    report: ReportOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Import staff (columns name,username,role,scope,unit,email,employee_no,wecom_userid…).

    Exit 0 when every row is good, 3 when some rows were rejected (good rows are kept).
    """
    _run_import("staff", file, brand, dry_run, report, data_dir, as_json)
