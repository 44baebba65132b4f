"""Shared CLI plumbing: data-dir handling, the system actor, and printing errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from sqlalchemy.orm import Session

from siyu.core.db import dispose_engines, open_session
from siyu.core.errors import SiyuError
from siyu.core.i18n import normalise_locale
from siyu.core.settings import reset_settings

P = ParamSpec("P")
R = TypeVar("R")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (default ./siyu-data; env SIYU_DATA_DIR).",
        show_default=False,
    ),
]
BrandOpt = Annotated[str, typer.Option("--brand", help="Brand slug (or id).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def use_data_dir(data_dir: Path | None) -> None:
    """Point settings at ``data_dir`` (for this process and the ones it starts)."""
    if data_dir is not None:
        os.environ["SIYU_DATA_DIR"] = str(data_dir)
        reset_settings()
        dispose_engines()


def locale() -> str:
    return normalise_locale(
        os.environ.get("SIYU_LANG") or os.environ.get("LANG", "zh_CN").replace("_", "-")
    )


def fail(exc: SiyuError, exit_code: int = 2) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message(locale())}", err=True, fg="red")
    for err in exc.errors:
        where = " ".join(
            x
            for x in (
                f"row {err.row}" if err.row is not None else "",
                f"field {err.field}" if err.field else "",
            )
            if x
        )
        typer.echo(f"  - {where + ': ' if where else ''}{err.reason} [{err.code}]", err=True)
    raise typer.Exit(exit_code)


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn domain errors into a coded message and exit status 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SiyuError as exc:
            fail(exc)
            raise  # unreachable: fail() exits

    return wrapper


@contextmanager
def session(data_dir: Path | None = None) -> Iterator[Session]:
    use_data_dir(data_dir)
    with open_session() as db:
        yield db


def emit(data: Any, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        typer.echo("(none)")
        return
    cols = columns or list(rows[0].keys())

    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in cols}
    typer.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        typer.echo("  ".join(cell(r.get(c)).ljust(widths[c]) for c in cols))


def isatty() -> bool:
    return sys.stdin.isatty()
