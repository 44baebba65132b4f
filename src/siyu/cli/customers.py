"""``siyu customers …`` and ``siyu oneid …``: find customers, their 360, reveal, merge, split,
OneID reviews and the full run.

Values are masked as everywhere else; ``--reveal phone|email|name`` decrypts through
``customers.actions.reveal``, which writes an audit entry under the CLI's name.

    siyu customers search 13512346810 --brand demo-coffee
    siyu customers show 01J… --brand demo-coffee --reveal phone
    siyu oneid decide 01J… --brand demo-coffee --approve --note "same person"
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.cli.org import CLI
from siyu.customers import actions, queries
from siyu.customers.views import Customer360, customer_360, search_rows
from siyu.org.queries import access_brand

app = typer.Typer(
    help="Customers: search, the Customer 360, reveal, merge, split.", no_args_is_help=True
)
oneid_app = typer.Typer(help="OneID: merge reviews and the full recompute.", no_args_is_help=True)

NoteOpt = Annotated[str | None, typer.Option("--note", help="Why (kept with the decision).")]


@app.command("search")
@handled
def search(
    brand: BrandOpt,
    query: Annotated[
        str,
        typer.Argument(
            help="Full phone number, member number, external_userid, any identifier value or "
            "customer id; empty lists the most recently seen customers."
        ),
    ] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Find customers (values masked)."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        rows = [r.model_dump(mode="json") for r in search_rows(db, CLI, b, query, limit)]
        emit(rows, as_json, ["id", "name", "phone", "member_no", "owner", "last_seen_at"])


def _print_360(view: Customer360, revealed: dict[str, str]) -> None:
    profile = {
        "id": view.id,
        "status": view.status,
        "name": view.name,
        "nickname": view.nickname,
        "gender": view.gender,
        "birthday": view.birthday,
        "city": view.city,
        "first_seen_at": view.first_seen_at,
        "last_seen_at": view.last_seen_at,
    }
    width = max(len(k) for k in profile)
    for key, value in profile.items():
        typer.echo(f"{key.ljust(width)}  {'' if value is None else value}")
    for key, value in sorted(view.attributes.items()):
        typer.echo(f"{('attr.' + key).ljust(width)}  {value}")
    for field, value in revealed.items():
        typer.echo(f"{('revealed.' + field).ljust(width)}  {value}")
    sections: list[tuple[str, list[dict[str, Any]], list[str]]] = [
        (
            "identities",
            [i.model_dump(mode="json") for i in view.identities],
            ["type", "value", "weak", "source", "first_seen_at", "last_seen_at", "id"],
        ),
        (
            "owners",
            [o.model_dump(mode="json") for o in view.owners],
            ["name", "username", "since", "until", "source"],
        ),
        (
            "consents",
            [c.model_dump(mode="json") for c in view.consents],
            ["purpose", "granted", "identity_type", "identity", "at", "source"],
        ),
        (
            "history",
            [h.model_dump(mode="json") for h in view.history],
            ["at", "kind", "customer_ids", "result_ids", "actor"],
        ),
        ("orders", view.orders, ["order_id", "channel", "paid_at", "amount_fen", "status"]),
        ("timeline", view.timeline, ["at", "event_type", "channel", "source", "summary"]),
    ]
    for title, rows, columns in sections:
        typer.echo(f"\n{title}:")
        emit(rows, False, columns)


@app.command("show")
@handled
def show(
    customer: Annotated[str, typer.Argument(help="Customer id (a merged id shows its survivor)")],
    brand: BrandOpt,
    reveal: Annotated[
        list[str] | None,
        typer.Option(
            "--reveal",
            help="Also print this field in plain text: phone, email or name (repeatable; "
            "each reveal is written to the audit log).",
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """The Customer 360: profile, identities, owners, consents, OneID history (masked)."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        found = queries.access_customer(db, CLI, b, customer)
        revealed = {f: actions.reveal(db, CLI, b, found.id, f) for f in reveal or []}
        view = customer_360(db, CLI, b, found)
        if as_json:
            out = view.model_dump(mode="json")
            if revealed:
                out["revealed"] = revealed
            emit(out, True)
        else:
            _print_360(view, revealed)


@app.command("merge")
@handled
def merge(
    customers: Annotated[list[str], typer.Argument(help="Two or more customer ids")],
    brand: BrandOpt,
    note: NoteOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge customers into one by hand (audited); prints the surviving customer."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.merge")
        survivor = actions.merge_customers(db, CLI, b, customers, note)
        emit({"survivor": survivor.id, "merged": sorted(set(customers) - {survivor.id})}, as_json)


@app.command("split")
@handled
def split(
    customer: str,
    brand: BrandOpt,
    identity: Annotated[
        list[str],
        typer.Option("--identity", help="Identity id to move out (repeat; see `show`)."),
    ],
    note: NoteOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Move some identities out of a customer into a new customer (audited)."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.merge")
        stayed, moved = actions.split_customer(db, CLI, b, customer, identity, note)
        emit({"stayed": stayed.id, "moved": moved.id}, as_json)


@oneid_app.command("run")
@handled
def run(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Recompute every OneID component of the brand from its evidence."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.merge")
        emit(actions.run_full(db, CLI, b), as_json)


@oneid_app.command("reviews")
@handled
def reviews(
    brand: BrandOpt,
    status: Annotated[str, typer.Option("--status", help="open|approved|rejected")] = "open",
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """List OneID merge reviews (open ones by default)."""
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.merge")
        rows = [
            {
                "id": r.id,
                "kind": r.kind,
                "id_types": r.id_types,
                "customer_ids": r.customer_ids,
                "status": r.status,
                "created_at": r.created_at.isoformat(),
                "decided_by": r.decided_by,
                "note": r.note,
            }
            for r in queries.reviews(db, CLI, b, status)
        ]
        emit(rows, as_json, ["id", "kind", "id_types", "customer_ids", "status", "created_at"])


@oneid_app.command("decide")
@handled
def decide(
    review: str,
    brand: BrandOpt,
    approve: Annotated[
        bool | None,
        typer.Option(
            "--approve/--reject", help="Merge despite the conflict, or keep them apart for good."
        ),
    ] = None,
    note: NoteOpt = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve or reject a OneID merge review."""
    if approve is None:
        raise typer.BadParameter("give --approve or --reject", param_hint="--approve/--reject")
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.merge")
        done = actions.decide_review(db, CLI, b, review, approve, note)
        emit({"id": done.id, "status": done.status, "note": done.note}, as_json)
