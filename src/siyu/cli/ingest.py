"""``siyu ingest …``, ``siyu events …``, ``siyu lake …`` and ``siyu worker``.

siyu ingest orders.csv --brand acme-tea --kind orders --source pos --mapping pos.json
siyu ingest mapping list --brand acme-tea
siyu events catalogue
siyu lake compact --brand acme-tea
siyu worker --once
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session, use_data_dir
from siyu.cli.org import CLI
from siyu.core.errors import Invalid
from siyu.core.validation import parse
from siyu.org import queries as org_queries


class _FileFirst(TyperGroup):
    """``siyu ingest FILE …`` runs the ``file`` command; ``siyu ingest mapping …`` the group."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().parse_args(ctx, args)


ingest_app = typer.Typer(
    cls=_FileFirst,
    help="Import events, orders or customers: siyu ingest FILE --brand B --kind K.",
    no_args_is_help=True,
)
mapping_app = typer.Typer(help="Saved column mappings, one per source.", no_args_is_help=True)
events_app = typer.Typer(help="The event catalogue and brand event types.", no_args_is_help=True)
lake_app = typer.Typer(help="The fact lake (Delta tables).", no_args_is_help=True)
ingest_app.add_typer(mapping_app, name="mapping")

KindOpt = Annotated[str, typer.Option("--kind", help="events | orders | customers")]
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="Source name; its saved mapping is used")
]


def _load_mapping(path: Path | None) -> dict[str, Any] | None:
    from siyu.ingest.mapping import load_mapping_file

    return load_mapping_file(path) if path is not None else None


@ingest_app.command("file")
@handled
def ingest_file(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8/BOM/GB18030), XLSX or JSONL")],
    brand: BrandOpt,
    kind: KindOpt = "events",
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="JSON/YAML column mapping (saved for --source)")
    ] = None,
    source: SourceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row, write nothing")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report path (default FILE.errors.json)")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a file. Exit 0 when every row is good, 3 when rows were rejected (the good
    rows are kept; the report names each bad row: line, column, reason, code)."""
    from siyu.ingest import actions

    if not file.exists():
        raise Invalid("import.missing_file", path=str(file))
    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "events.write")
        out = actions.import_file(
            db,
            CLI,
            b,
            file,
            kind=kind,
            source=source,
            mapping=_load_mapping(mapping),
            dry_run=dry_run,
        )
    result = out.model_dump()
    if report is not None or out.errors:
        path = report or file.with_name(file.name + ".errors.json")
        path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
        result["report"] = str(path)
    if as_json:
        emit({k: v for k, v in result.items() if k != "errors"}, True)
    else:
        typer.echo(
            f"{'[dry run] ' if dry_run else ''}{out.kind} rows {out.total}: accepted "
            f"{out.accepted}, duplicates {out.duplicates}, rejected {out.rejected} "
            f"({out.seconds:.2f} s)"
        )
        for err in out.errors[:20]:
            field = f" {err['field']}" if err.get("field") else ""
            typer.echo(f"  line {err['line']}{field}: {err['reason']} [{err['code']}]")
        if len(out.errors) > 20:
            typer.echo(f"  … {len(out.errors) - 20} more")
        if out.ignored_columns:
            typer.echo(f"ignored columns: {', '.join(out.ignored_columns)}")
        if "report" in result:
            typer.echo(f"report: {result['report']}")
    if out.rejected:
        raise typer.Exit(3)


@mapping_app.command("save")
@handled
def mapping_save(
    file: Annotated[Path, typer.Argument(help="JSON or YAML mapping")],
    brand: BrandOpt,
    source: Annotated[str, typer.Option("--source")],
    kind: KindOpt = "events",
    data_dir: DataDir = None,
) -> None:
    """Save a column mapping for a source; later imports with --source use it."""
    from siyu.ingest import actions
    from siyu.ingest.schemas import MappingIn

    data = _load_mapping(file) or {}
    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "events.write")
        actions.save_mapping(db, CLI, b, parse(MappingIn, {**data, "source": source, "kind": kind}))
    typer.echo(f"mapping for {source} saved")


@mapping_app.command("list")
@handled
def mapping_list(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Saved mappings of a brand."""
    from siyu.ingest import queries
    from siyu.ingest.schemas import MappingOut

    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "events.write")
        rows = [
            MappingOut.model_validate(m).model_dump(mode="json")
            for m in queries.list_mappings(db, CLI, b)
        ]
    if as_json:
        emit(rows, True)
        return
    emit(
        [
            {
                "source": r["source"],
                "kind": r["kind"],
                "columns": len(r["mapping"]["columns"]),
                "updated_at": r["updated_at"],
            }
            for r in rows
        ],
        False,
    )


@events_app.command("catalogue")
@handled
def events_catalogue(
    brand: Annotated[
        str | None, typer.Option("--brand", help="Include a brand's own types")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the event catalogue: every type, version and field."""
    from siyu.ingest import queries

    if brand is None:
        rows = queries.catalogue()
    else:
        with session(data_dir) as db:
            b = org_queries.access_brand(db, CLI, brand)
            rows = queries.catalogue(db, b)
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        typer.echo(f"{row['event_type']} v{row['version']}  {row['description']}")
        for f in row["fields"]:
            star = "*" if f["required"] else " "
            typer.echo(f"    {star} {f['name']}: {f['type']}")
    typer.echo(
        "(* required; every event also has event_id, event_type, schema_version, "
        "occurred_at, identifiers, source)"
    )


@events_app.command("declare")
@handled
def events_declare(
    file: Annotated[Path, typer.Argument(help="JSON: {event_type, version, fields: [...]}")],
    brand: BrandOpt,
    data_dir: DataDir = None,
) -> None:
    """Declare a brand's own event type from a JSON field list."""
    from siyu.ingest import actions
    from siyu.ingest.schemas import CustomEventIn

    data = json.loads(file.read_text(encoding="utf-8"))
    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "events.write")
        row = actions.declare_event_type(db, CLI, b, parse(CustomEventIn, data))
    typer.echo(f"event type {row.event_type} v{row.version} declared")


@lake_app.command("compact")
@handled
def lake_compact(
    brand: Annotated[str | None, typer.Option("--brand", help="Only this brand")] = None,
    retention_hours: Annotated[
        int, typer.Option("--retention-hours", help="Keep replaced files this long")
    ] = 168,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge small files (optimize) and vacuum replaced ones."""
    from siyu.ingest import actions

    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "events.write") if brand else None
        out = actions.compact_lake(db, CLI, b, retention_hours)
    emit([{"table": t, **m} for t, m in out.items()], as_json)


@lake_app.command("stats")
@handled
def lake_stats(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Rows and files per lake table for a brand."""
    from siyu.ingest import queries

    with session(data_dir) as db:
        b = org_queries.access_brand(db, CLI, brand, "customers.read")
        out = queries.lake_stats(db, CLI, b)
    emit([{"table": t, **m} for t, m in out.items()], as_json)


def worker(
    once: Annotated[bool, typer.Option("--once", help="Drain the queues once and exit")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls")] = 1.0,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only this job kind (repeatable), e.g. channels.outbox"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run background jobs (the event inbox → lake, tags, SOP triggers, the outbox) until
    stopped. SIGTERM or Ctrl-C finishes the batch in hand, then exits."""
    import signal
    import threading

    from siyu import jobs

    use_data_dir(data_dir)
    names = [k.name for k in jobs.kinds()]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise typer.BadParameter(f"unknown job kind {', '.join(unknown)}; known: {names}")
    selected = frozenset(only) if only else None
    if once:
        done = jobs.run_once(only=selected)
        typer.echo(json.dumps(done))
        return
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    running = [n for n in names if selected is None or n in selected]
    typer.echo(f"worker: {', '.join(running)} (Ctrl-C to stop)", err=True)
    jobs.run_forever(interval, stop, only=selected)
    typer.echo("stopped", err=True)
