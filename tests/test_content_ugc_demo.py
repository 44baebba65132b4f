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
