"""OneID merge reviews: ``/b/{brand}/oneid/reviews``.

Lists the merges OneID refused to make on its own (two values of a unique identifier type
would have joined), with the customers involved, and lets someone holding
``customers.merge`` approve or reject each one (``customers.actions.decide_review``) or run
the full recompute of the brand (``customers.actions.run_full``) and see its statistics.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.customers import actions, queries
from siyu.org.models import Brand
from siyu.web.customers import labeller
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import page

router = APIRouter(include_in_schema=False)

# The statistics of a full run, in the order they are shown.
STATS = ("identities", "observations", "components", "resolved_by_rule", "components_rewritten")


def reviews_page(
    con: Console,
    b: Brand,
    status: int = 200,
    stats: dict[str, int] | None = None,
    error: SiyuError | None = None,
    decided: str = "",
    approved: bool = False,
) -> Response:
    open_reviews = queries.reviews(con.db, con.actor, b, "open")
    ids = sorted({cid for r in open_reviews for cid in r.customer_ids})
    rows = queries.rows_by_id(con.db, con.actor, b, ids)
    items: list[dict[str, Any]] = [
        {"review": r, "customers": [(cid, rows.get(cid)) for cid in r.customer_ids]}
        for r in open_reviews
    ]
    ordered = [(k, stats[k]) for k in STATS if k in stats] if stats else []
    ordered += [(k, v) for k, v in (stats or {}).items() if k not in STATS]
    return page(
        con,
        "oneid_reviews.html",
        b,
        "oneid_reviews",
        status,
        items=items,
        stats=ordered,
        label=labeller(con.locale),
        error=error.message(con.locale) if error else "",
        error_code=error.code if error else "",
        decided=decided,
        approved=approved,
    )


@router.get("/b/{brand}/oneid/reviews")
def list_reviews(brand: str, con: Con, decided: str = "", approved: str = "") -> Response:
    b = con.brand(brand, "customers.merge")
    return reviews_page(con, b, decided=decided, approved=approved == "1")


@router.post("/b/{brand}/oneid/reviews/{review}/decide")
def decide(brand: str, review: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "customers.merge")
    decision = text_field(form, "decision")
    note = text_field(form, "note")[:400] or None
    try:
        if decision not in ("approve", "reject"):
            raise Invalid(
                "validation.failed",
                errors=[FieldError(code="invalid.literal_error", field="decision")],
            )
        actions.decide_review(con.db, con.actor, b, review, decision == "approve", note)
    except SiyuError as exc:
        return reviews_page(con, b, exc.status, error=exc)
    approved = "1" if decision == "approve" else "0"
    target = f"/b/{b.slug}/oneid/reviews?decided={quote(review)}&approved={approved}"
    return RedirectResponse(target, status_code=303)


@router.post("/b/{brand}/oneid/run")
def run_full(brand: str, con: Con) -> Response:
    b = con.brand(brand, "customers.merge")
    stats = actions.run_full(con.db, con.actor, b)
    # Rendered directly (no redirect): the statistics belong to this run only.
    return reviews_page(con, b, stats=stats)
