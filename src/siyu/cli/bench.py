"""``siyu bench …``: benchmarks that compare ours with a reference in one run.

Each prints its figures as one JSON object on its last line (ratios: our time ÷ theirs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks: ours against a reference, side by side.", no_args_is_help=True)


@app.command("oneid")
def oneid(
    identifiers: Annotated[
        int, typer.Option("--identifiers", help="Identifiers in the graph (links ≈ 2/3 of it).")
    ] = 6_000_000,
    repeat: Annotated[int, typer.Option("--repeat", help="Runs of ours and scipy (median).")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    networkx: Annotated[
        bool, typer.Option("--networkx/--no-networkx", help="Also time networkx (slow).")
    ] = True,
) -> None:
    """Full OneID resolution vs scipy connected_components and networkx on the same graph."""
    from siyu.bench.oneid import run

    typer.echo(json.dumps(run(identifiers, seed=seed, repeat=repeat, networkx=networkx)))


@app.command("ingest")
def ingest(
    events: Annotated[
        int, typer.Option("--events", help="Events in the generated file.")
    ] = 1_000_000,
    customers: Annotated[int, typer.Option("--customers")] = 50_000,
    reference: Annotated[
        int, typer.Option("--reference", help="Rows the naive reference processes.")
    ] = 200_000,
    http_batches: Annotated[
        int, typer.Option("--http-batches", help="Batches of 10,000 sent over HTTP.")
    ] = 10,
    http_singles: Annotated[
        int, typer.Option("--http-singles", help="Events sent one request each (reference).")
    ] = 1_000,
) -> None:
    """File import and HTTP batch intake into the lake, each beside a naive reference."""
    from siyu.bench.ingest import run

    typer.echo(
        json.dumps(
            run(
                "siyu.server:create_app",
                events,
                customers=customers,
                reference=reference,
                http_batches=http_batches,
                http_singles=http_singles,
            )
        )
    )


@app.command("demo")
def demo(
    customers: Annotated[
        int, typer.Option("--customers", help="Customers over both demo brands.")
    ] = 1_000_000,
    days: Annotated[int, typer.Option("--days", help="Days of history.")] = 180,
    activity: Annotated[
        float,
        typer.Option("--activity", help="Engagement per customer (3 gives ≥ 20 facts each)."),
    ] = 3.0,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per exported events file part.")
    ] = 2_000_000,
    reference: Annotated[
        int, typer.Option("--reference", help="Customers the naive generator draws.")
    ] = 20_000,
    reference_events: Annotated[
        int, typer.Option("--reference-events", help="Event rows the naive importer reads.")
    ] = 100_000,
    seed: Annotated[int, typer.Option("--seed")] = 2026,
) -> None:
    """The demo brands at scale: generate, export, import and OneID in a throw-away data dir,
    beside a naive generator and importer; target 3 minutes for 1M customers."""
    from siyu.bench.demo import DemoKit, run
    from siyu.demo import export, generate, org

    kit = DemoKit(
        shapes=generate.SHAPES,
        split=generate.split,
        generate_brand=generate.generate_brand,
        export_brand=export.export_brand,
        import_brand=export.import_brand,
        build_org=org.build_demo_org,
    )
    figures = run(
        kit,
        customers,
        days=days,
        seed=seed,
        activity=activity,
        chunk_rows=chunk_rows,
        reference=reference,
        reference_events=reference_events,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(json.dumps(figures))


@app.command("tags")
def tags(
    customers: Annotated[int, typer.Option("--customers")] = 1_000_000,
    events: Annotated[int, typer.Option("--events")] = 20_000_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    threads: Annotated[int, typer.Option("--threads", help="DuckDB threads.")] = 2,
    pandas_max_events: Annotated[
        int, typer.Option("--pandas-max-events", help="Events the pandas reference reads.")
    ] = 2_000_000,
    repeat: Annotated[int, typer.Option("--repeat", help="Runs of each (median).")] = 2,
) -> None:
    """The standard tag pack (20 rules, RFM, lifecycle, value models) vs hand-written DuckDB
    SQL and a straightforward pandas implementation, on generated facts."""
    from siyu.bench.tags import run

    typer.echo(
        json.dumps(
            run(
                customers,
                events,
                seed,
                threads=threads,
                pandas_max_events=pandas_max_events,
                repeat=repeat,
            )
        )
    )


@app.command("sop")
def sop(
    customers: Annotated[int, typer.Option("--customers")] = 1_000_000,
    sops: Annotated[int, typer.Option("--sops")] = 10,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    realtime: Annotated[
        int,
        typer.Option("--realtime", help="Also time N real-time triggers to the outbox (p99)."),
    ] = 0,
) -> None:
    """Plan one day of touches with the full breathing policy (caps, platform quota, quiet
    hours, minimum gap, back-off, hard stops, holdout, guide capacity, arbitration) vs a
    one-customer-at-a-time reference on a sample; with --realtime, WeCom add events through
    intake and the welcome journey to the outbox (target p99 ≤ 1 s)."""
    from siyu.bench.sop import bench_realtime, run

    figures = run(customers, sops, seed)
    if realtime:
        figures["realtime"] = bench_realtime(realtime, seed=seed)
    typer.echo(json.dumps(figures))


@app.command("kpi")
def kpi(
    customers: Annotated[int, typer.Option("--customers", help="Customers of the brand.")] = (
        1_000_000
    ),
    activity: Annotated[
        float, typer.Option("--activity", help="Engagement per customer (2 gives ≈ 15 facts).")
    ] = 2.0,
    threads: Annotated[int, typer.Option("--threads", help="DuckDB threads.")] = 2,
    repeat: Annotated[int, typer.Option("--repeat", help="Cold runs of each (median).")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    bench_dir: Annotated[
        Path | None,
        typer.Option("--bench-dir", help="Where the lake is built once and reused."),
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build the lake again.")] = False,
) -> None:
    """Brand overview for a month and a store drill-down from cold, beside pandas."""
    from siyu.bench.kpi import Kit, run
    from siyu.demo import generate

    result = run(
        Kit(generate.generate_brand, generate.SHAPES[0]),
        customers,
        seed,
        activity=activity,
        threads=threads,
        repeat=repeat,
        bench_dir=bench_dir,
        rebuild=rebuild,
        progress=lambda m: typer.echo(m, err=True),
    )
    typer.echo(json.dumps(result))
