"""``siyu content …``: the material library, performance per material and A/B results.

siyu content import --brand demo-coffee materials.jsonl
siyu content list --brand demo-coffee --kind text --q 新品
siyu content stats --brand demo-coffee --days 30 --window 7 [--segment vip_active]
siyu content stats --brand demo-coffee --sop new_menu_ab --step 0 --metric click
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.cli.org import CLI
from siyu.core.errors import Invalid
from siyu.org.queries import access_brand

app = typer.Typer(
    help="Content: the material library, performance per material, A/B results.",
    no_args_is_help=True,
)


def _rows(path: Path) -> list[dict[str, Any]]:
    """Materials from a JSON array or JSON Lines (one material per line)."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        if text.lstrip().startswith("["):
            data = json.loads(text)
            if not isinstance(data, list):
                raise Invalid("validation.failed", reason=f"{path}: expected a list")
            return [r if isinstance(r, dict) else {"_": r} for r in data]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise Invalid("validation.failed", reason=f"{path}: line {exc.lineno}: {exc.msg}") from None


@app.command("import")
@handled
def import_(
    file: Annotated[Path, typer.Argument(help="JSON array or JSON Lines of materials.")],
    brand: BrandOpt,
    data_dir: DataDir = None,
) -> None:
    """Create materials from a file (each like the API's MaterialIn: kind, name, body,
    fallbacks, tags, library, valid_from/valid_until). Bad rows are listed with their
    number, field and code; the good ones are kept."""
    from siyu.content import actions

    rows = _rows(file)
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "content.write")
        result = actions.import_materials(db, CLI, b, rows)
    typer.echo(f"{result.created} created, {len(rows) - result.created} refused")
    for err in result.errors:
        where = " ".join(f"{k} {err[k]}" for k in ("row", "field") if err.get(k) is not None)
        typer.echo(f"  - {where}: {err.get('reason', '')} [{err['code']}]")
    if result.errors:
        raise typer.Exit(1)


@app.command("list")
@handled
def list_(
    brand: BrandOpt,
    q: Annotated[str, typer.Option("--q", help="Search in names.")] = "",
    kind: Annotated[str | None, typer.Option("--kind")] = None,
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Archived ones instead.")] = False,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """The library: the brand's materials and its agency's shared ones."""
    from siyu.content import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand)
        rows = queries.list_materials(
            db, CLI, b, q=q, kind=kind, tag=tag, status="archived" if archived else "active"
        )
    if as_json:
        emit([r.model_dump(mode="json") for r in rows], True)
        return
    emit(
        [
            {
                "id": r.id,
                "kind": r.kind,
                "name": r.name,
                "library": r.library,
                "version": r.version,
                "valid": "yes" if r.valid_now else "no",
                "variables": ",".join(r.variables),
                "tags": ",".join(r.tags),
            }
            for r in rows
        ],
        False,
    )


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.1f}%"


@app.command("stats")
@handled
def stats(
    brand: BrandOpt,
    days: Annotated[int, typer.Option("--days", help="Sends of the last N days.")] = 30,
    window: Annotated[int, typer.Option("--window", help="Attribution window in days.")] = 7,
    segment: Annotated[str | None, typer.Option("--segment", help="Only this segment.")] = None,
    sop: Annotated[
        str | None, typer.Option("--sop", help="A/B results of this SOP's touch step instead.")
    ] = None,
    step: Annotated[int, typer.Option("--step", help="The touch step (with --sop).")] = 0,
    metric: Annotated[
        str, typer.Option("--metric", help="reply | click | order | gmv (with --sop).")
    ] = "click",
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Performance per material (sends, delivered, replies, clicks, orders, GMV in yuan,
    best/worst), or with --sop the A/B/n results of a touch step: per variant, lift against
    the control, confidence interval and p-value."""
    from siyu.content import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        if sop is not None:
            res = queries.variant_results(
                db, CLI, b, sop, step, metric=metric, window_days=window, days=max(days, 90)
            )
            if as_json:
                emit(res.model_dump(mode="json"), True)
                return
            typer.echo(
                f"{res.sop} step {res.step}: {res.metric} within {res.window_days} days, "
                f"{res.test}, confidence {res.confidence:.0%}"
            )
            emit(
                [
                    {
                        "variant": r.variant + (" (control)" if r.control else ""),
                        "customers": r.customers,
                        "successes": r.successes,
                        "rate": _pct(r.rate),
                        "gmv_yuan": f"{r.gmv_fen / 100:.2f}",
                        "lift": _pct(r.lift),
                        "ci": ""
                        if r.ci_low is None or r.ci_high is None
                        else (
                            f"[{r.ci_low / 100:.2f}, {r.ci_high / 100:.2f}] yuan"
                            if res.metric == "gmv"
                            else f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}]"
                        ),
                        "p_value": "" if r.p_value is None else f"{r.p_value:.4f}",
                        "significant": "yes" if r.significant else "",
                    }
                    for r in res.rows
                ],
                False,
            )
            return
        perf = queries.performance(db, CLI, b, days=days, window_days=window, segment=segment)
    if as_json:
        emit(perf.model_dump(mode="json"), True)
        return
    emit(
        [
            {
                "material": r.material_id,
                "name": r.name,
                "kind": r.kind,
                "sends": r.sends,
                "delivered": r.delivered,
                "replies": r.replies,
                "clicks": r.clicks,
                "orders": r.orders,
                "gmv_yuan": f"{r.gmv_fen / 100:.2f}",
                "rank": "best"
                if r.material_id in perf.best
                else ("worst" if r.material_id in perf.worst else ""),
            }
            for r in perf.rows
        ],
        False,
    )
