"""KOC notes on the demo brand (acceptance 4 on the demo): the approved note carries the
``xhs_note_latte`` channel code the demo's customers came through, so it shows those
customers, their orders and GMV; building the notes twice changes nothing.

SQLite only, on the small demo brand built by ``tests/test_content_demo.py``'s fixture.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from siyu.analytics import lake
from siyu.content import ugc
from siyu.content.models import KocNote, RewardLedger
from siyu.core.db import open_session
from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Identity
from siyu.org import queries as org_queries
from tests.test_content_demo import at_demo, demo  # noqa: F401 - fixtures


def test_demo_koc_note_shows_the_customers_its_channel_code_brought(
    at_demo: Any,  # noqa: F811 - the imported fixture
) -> None:
    from siyu.demo import koc as demo_koc

    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        made = demo_koc.setup(db, brand)
        again = demo_koc.setup(db, brand)
        assert made == again and made["notes"] == 3
        notes = {
            n.status: n for n in db.scalars(select(KocNote).where(KocNote.brand_id == brand.id))
        }
        assert set(notes) == {"approved", "submitted", "rejected"}
        approved = notes["approved"]
        assert approved.channel_state == "xhs_note_latte" and approved.link_id
        assert notes["rejected"].reject_reason
        ledger = list(
            db.scalars(select(RewardLedger).where(RewardLedger.koc_note_id == approved.id))
        )
        assert [(r.unit, r.amount) for r in ledger] == [("points", demo_koc.REWARD_POINTS)]

        # the customers who added a guide with the note's state, counted from the lake itself
        events = lake.read("events", brand.id, ["event_type", "identity_key", "properties"])
        keys = {
            row["identity_key"]
            for row in events.to_pylist()
            if row["event_type"] == "wecom_contact_added"
            and json.loads(row["properties"] or "{}").get("state") == "xhs_note_latte"
        }
        owners = {
            cid
            for t, h, cid in db.execute(
                select(Identity.id_type, Identity.value_hash, Identity.customer_id).where(
                    Identity.brand_id == brand.id
                )
            )
            if f"{t}:{h}" in keys and cid
        }
        stats = ugc.attribution(db, SYSTEM, brand, [approved])[approved.id]
        assert stats.customers == len(owners) > 0
        assert {r.customer_id for r in stats.rows} <= owners
        assert stats.orders > 0 and stats.gmv_fen == sum(r.gmv_fen for r in stats.rows)
        assert stats.clicks == demo_koc.CLICKS
        assert (made["customers"], made["orders"], made["gmv_fen"]) == (
            stats.customers,
            stats.orders,
            stats.gmv_fen,
        )


def test_demo_console_shows_ab_results_and_the_note(at_demo: Any) -> None:  # noqa: F811
    """The console on the demo: a variant's performance page carries the A/B table with the
    lift and p-value the query computes; the approved note's page its totals."""
    from fastapi.testclient import TestClient

    from siyu.content import queries
    from siyu.demo import koc as demo_koc
    from siyu.demo.content import AB_SOP
    from siyu.demo.org import PASSWORD
    from siyu.server import create_app
    from siyu.sop.models import Sop

    with open_session() as db:
        brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
        demo_koc.setup(db, brand)
        sop = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == AB_SOP))
        assert sop is not None
        step = next(i for i, s in enumerate(sop.steps) if s.get("variants"))
        material = sop.steps[step]["variants"][1]["content"]["content_id"]
        expected = queries.variant_results(db, SYSTEM, brand, AB_SOP, step, metric="click")
        note = db.scalar(
            select(KocNote).where(KocNote.brand_id == brand.id, KocNote.status == "approved")
        )
        assert note is not None
        stats = ugc.attribution(db, SYSTEM, brand, [note], rows=False)[note.id]
    with TestClient(create_app()) as client:
        r = client.post("/login", data={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text[:500]
        page = client.get(f"/b/demo-coffee/content/{material}/stats?metric=click").text
        table = page[page.index(f'data-sop="{AB_SOP}"') :]
        table = table[: table.index("</table>")]
        b = expected.rows[1]
        assert b.p_value is not None and b.lift is not None
        row = table[table.index(f'data-variant="{b.variant}"') :]
        assert f"{b.p_value:.4f}" in row and f"{b.lift * 100:+.1f}%" in row
        assert 'data-variant="A"' in table
        note_page = client.get(f"/b/demo-coffee/content/koc/{note.id}").text
        assert f'data-stat="customers">{stats.customers}<' in note_page
        assert f'data-fen="{stats.gmv_fen}"' in note_page
