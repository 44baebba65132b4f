"""``siyu tags …``, ``siyu segments …`` and ``siyu value …``: the tag library and its health,
rule tags, computation, the SQL a rule compiles to, segments and their exports, and the value
model fit.

    siyu tags list --brand demo-coffee
    siyu tags add repeat_buyer --brand demo-coffee --name 复购 \
        --rule "count(order_paid, last 90d) >= 2"
    siyu tags compute --brand demo-coffee --mode full
    siyu tags sql "count(order_paid, last 90d) >= 3" --brand demo-coffee --dialect clickhouse
    siyu segments add vip --brand demo-coffee --name 高价值 --definition "tag_rfm_important_value"
    siyu segments export vip --brand demo-coffee --format audience --output vip.csv
    siyu value fit --brand demo-coffee --until 2026-06-30 --json
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.cli.org import CLI
from siyu.org.queries import access_brand

app = typer.Typer(help="Tags: library, health, rule tags, computation, SQL.", no_args_is_help=True)
segments_app = typer.Typer(help="Segments: definitions, counts, exports.", no_args_is_help=True)
value_app = typer.Typer(help="Customer value models (BG/NBD + Gamma-Gamma).", no_args_is_help=True)

AsOfOpt = Annotated[
    datetime | None,
    typer.Option("--as-of", help="Evaluate as of this time (default now, UTC if no zone)."),
]


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@app.command("list")
@handled
def list_tags(
    brand: BrandOpt,
    problems: Annotated[
        bool, typer.Option("--problems", help="Only failing, stale or never computed tags.")
    ] = False,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """The tag library by group, with each tag's health and member count."""
    from siyu.tags import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        if problems:
            rows = [t.model_dump(mode="json") for t in queries.problems(db, CLI, b)]
        else:
            rows = [
                t.model_dump(mode="json") for g in queries.tag_library(db, CLI, b) for t in g.tags
            ]
        emit(
            rows,
            as_json,
            ["group", "key", "name", "kind", "health", "members", "last_ok_at", "last_error"],
        )


@app.command("add")
@handled
def add(
    key: Annotated[str, typer.Argument(help="Stable key, e.g. repeat_buyer.")],
    brand: BrandOpt,
    name: Annotated[str, typer.Option("--name")],
    rule: Annotated[str | None, typer.Option("--rule", help="Rule text (rule tags).")] = None,
    group: Annotated[str, typer.Option("--group", help="Group key.")] = "rules",
    manual: Annotated[bool, typer.Option("--manual", help="A manual tag (no rule).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Define a rule tag (checked now: errors point at the position) or a manual tag."""
    from siyu.tags import actions
    from siyu.tags.schemas import TagIn

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "tags.write")
        body = TagIn(
            key=key,
            name=name,
            group="manual" if manual and group == "rules" else group,
            kind="manual" if manual else "rule",
            rule=rule,
        )
        tag = actions.create_tag(db, CLI, b, body)
        typer.echo(f"{tag.key}  {tag.rule or '(manual)'}")


@app.command("compute")
@handled
def compute(
    brand: BrandOpt,
    mode: Annotated[str, typer.Option("--mode", help="auto, full or incremental.")] = "auto",
    as_of: AsOfOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute the brand's tags now; exit 1 if any tag failed (the run says which)."""
    from siyu.tags import actions
    from siyu.tags.schemas import RunIn, RunOut

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "tags.write")
        run = actions.compute(
            db, CLI, b, RunIn.model_validate({"mode": mode, "as_of": _aware(as_of)})
        )
        out = RunOut.model_validate(run, from_attributes=True).model_dump(mode="json")
    failed = {k: v["error"] for k, v in out["tags"].items() if v.get("error")}
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        typer.echo(
            f"{out['mode']} run {out['status']}: {out['customers']} customers, "
            f"{out['changes']} changes in {out['duration_ms']} ms"
        )
        for key, error in sorted(failed.items()):
            typer.echo(f"  failed {key}: {error}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("sql")
@handled
def sql(
    rule: Annotated[str, typer.Argument(help="A rule, or a tag key with --tag.")],
    brand: BrandOpt,
    dialect: Annotated[
        str, typer.Option("--dialect", help="duckdb, spark, trino or clickhouse.")
    ] = "duckdb",
    tag: Annotated[bool, typer.Option("--tag", help="RULE is a tag key.")] = False,
    as_of: AsOfOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Print the SQL a rule compiles to (tables: events, orders, customers)."""
    from siyu.core.clock import utcnow
    from siyu.tags import actions, lang, rules

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        text = (actions.tag_by_key(db, b, rule).rule or "") if tag else rule
        cat = rules.catalogue(db, b)
        typer.echo(lang.to_sql(text, cat, _aware(as_of) or utcnow(), b.timezone, dialect))


@app.command("check")
@handled
def check(
    rule: Annotated[str, typer.Argument(help="A rule in the tag language.")],
    brand: BrandOpt,
    data_dir: DataDir = None,
) -> None:
    """Check a rule: its canonical form and how many customers it selects now."""
    from siyu.tags import rules, segments

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        text = rules.normalise(db, b, rule, None)
        typer.echo(f"{text}\n{segments.count(db, CLI, b, text)} customers")


@app.command("settings")
@handled
def settings(
    brand: BrandOpt,
    group: Annotated[str, typer.Option("--group", help="rfm_segment, lifecycle or value_model.")],
    params: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="JSON of the parameters to change, e.g. '{\"recency\": [30, 60, 90, 180]}'.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Show or change a computed group's brand-set parameters (RFM cut points in days,
    purchase days and fen; lifecycle days; value model horizon). Changed groups are
    recomputed for everybody on the next run."""
    from siyu.tags import actions
    from siyu.tags.builtin import DEFAULT_SETTINGS
    from siyu.tags.schemas import SettingsIn

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        if params is not None:
            try:
                values = json.loads(params)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"--set is not JSON: {exc.msg}") from exc
            body = SettingsIn.model_validate({"group": group, "params": values})
            saved = actions.update_settings(db, CLI, b, body)
        else:
            saved = actions.group_by_key(db, b, group)
        section = {"rfm_segment": "rfm", "lifecycle": "lifecycle", "value_model": "value"}
        if group not in section:
            raise typer.BadParameter(f"unknown group {group!r}")
        current = {**DEFAULT_SETTINGS[section[group]], **(saved.settings or {}).get("params", {})}
        derived = (saved.settings or {}).get("derived", {})
    typer.echo(json.dumps({"params": current, "derived": derived}, ensure_ascii=False, indent=2))


@segments_app.command("list")
@handled
def list_segments(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    from siyu.tags import segments
    from siyu.tags.schemas import SegmentOut

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        rows = [
            SegmentOut.model_validate(s, from_attributes=True).model_dump(mode="json")
            for s in segments.list_segments(db, CLI, b)
        ]
        emit(rows, as_json, ["key", "name", "definition", "last_count", "last_counted_at"])


@segments_app.command("add")
@handled
def add_segment(
    key: Annotated[str, typer.Argument()],
    brand: BrandOpt,
    name: Annotated[str, typer.Option("--name")],
    definition: Annotated[
        str, typer.Option("--definition", help="Tags (tag_<key>) and conditions.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Define a segment; prints its live count."""
    from siyu.tags import segments
    from siyu.tags.schemas import SegmentIn

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "tags.write")
        seg = segments.create(db, CLI, b, SegmentIn(key=key, name=name, definition=definition))
        typer.echo(f"{seg.key}: {segments.count(db, CLI, b, seg.definition)} customers")


@segments_app.command("export")
@handled
def export(
    key: Annotated[str, typer.Argument()],
    brand: BrandOpt,
    fmt: Annotated[str, typer.Option("--format", help="csv, xlsx or audience.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", help="File (default: its name).")
    ] = None,
    fresh: Annotated[bool, typer.Option("--snapshot", help="Take a new snapshot first.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Export the segment's latest snapshot (audited)."""
    from siyu.tags import segments

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "segments.export")
        if fresh:
            segments.snapshot(db, CLI, b, key)
        name, data, _ = segments.export(db, CLI, b, key, fmt)
    target = output or Path(name)
    target.write_bytes(data)
    typer.echo(str(target))


@value_app.command("fit")
@handled
def fit(
    brand: BrandOpt,
    until: Annotated[
        datetime | None,
        typer.Option("--until", formats=["%Y-%m-%d"], help="Calibration end (brand-local day)."),
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit BG/NBD and Gamma-Gamma on the brand's order history."""
    from siyu.tags import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        day: date | None = until.date() if until else None
        model = queries.fit_value_model(db, CLI, b, day)
    if as_json:
        typer.echo(json.dumps(model, ensure_ascii=False))
        return
    bg, gg = model["bgnbd"], model["gamma_gamma"]
    typer.echo("BG/NBD       " + "  ".join(f"{k}={v:.4f}" for k, v in bg.items()))
    typer.echo("Gamma-Gamma  " + "  ".join(f"{k}={v:.4f}" for k, v in gg.items()))
    typer.echo(f"customers={model['meta']['customers']} repeaters={model['meta']['repeaters']}")
