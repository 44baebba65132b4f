"""``siyu bench …``: benchmarks that compare ours with a reference in one run.

Each prints its figures as one JSON object on its last line (ratios: our time ÷ theirs).
"""

from __future__ import annotations

import json
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
