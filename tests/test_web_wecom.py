"""The WeCom console page: connect the app (secrets write-only), sync, channel codes with the
friends they brought, inheritance from the console with WeCom's limits — against the local
WeCom server over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.org.models import Membership
from siyu.org.queries import access_brand
from siyu.wecom.fake import FakeServer
from siyu.wecom.fake_state import FakeWeCom
from siyu.wecom.models import WecomApp, WecomContact, WecomTransfer
from tests.factories import login

AES = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def csrf(client: Any) -> str:
    return client.cookies.get("siyu_csrf") or ""


def test_connect_sync_channel_code_and_inheritance_from_the_console(
    client: Any, db: Session, world: Any
) -> None:
    fake = FakeWeCom()
    fake.configure(corp_id="wwconsole0001", secret="console-secret", token="Tok1", aes_key=AES)
    fake.add_department(1, "总部")
    fake.add_user("aguide", "导购A")
    fake.add_user("aguide2", "导购B")
    for i in range(3):
        fake.add_customer(f"客户{i}", external_userid=f"wmc{i}")
        fake.follow("aguide", f"wmc{i}", state="store_qr")
    brand = access_brand(db, SYSTEM, "a-coffee")
    m = db.scalar(
        select(Membership).where(Membership.brand_id == brand.id, Membership.wecom_userid.is_(None))
    )
    assert m is not None
    m.wecom_userid = "aguide2"
    db.commit()
    with FakeServer(fake) as server:
        login(client, "a.admin")
        page = client.get("/b/a-coffee/wecom")
        assert page.status_code == 200 and 'id="no-app"' in page.text
        # a bad AES key is refused on its field; nothing is stored
        form = {
            "csrf_token": csrf(client),
            "corp_id": "wwconsole0001",
            "secret": "console-secret",
            "token": "Tok1",
            "aes_key": "short",
            "base_url": server.base_url,
        }
        bad = client.post("/b/a-coffee/wecom/app", data=form)
        assert bad.status_code == 422 and "aes_key" in bad.text
        assert db.get(WecomApp, brand.id) is None
        ok = client.post(
            "/b/a-coffee/wecom/app", data={**form, "aes_key": AES}, follow_redirects=False
        )
        assert ok.status_code == 303
        page = client.get("/b/a-coffee/wecom").text
        assert "console-secret" not in page and "con****et" in page
        # sync from the console
        assert (
            client.post(
                "/b/a-coffee/wecom/sync", data={"csrf_token": csrf(client)}, follow_redirects=False
            ).status_code
            == 303
        )
        db.rollback()
        assert len(list(db.scalars(select(WecomContact)))) == 3
        # a channel code; its state must be short and unique
        way = {
            "csrf_token": csrf(client),
            "name": "门店码",
            "state": "store_qr",
            "staff_userids": "aguide",
            "cost_yuan": "30",
        }
        created = client.post("/b/a-coffee/wecom/contact-ways", data=way, follow_redirects=False)
        assert created.status_code == 303
        page = client.get("/b/a-coffee/wecom").text
        start = page.index('data-state="store_qr"')
        assert '<td class="num friends">3</td>' in page[start : page.index("</tr>", start)]
        dup = client.post("/b/a-coffee/wecom/contact-ways", data=way)
        assert dup.status_code == 409
        # inheritance: a guide leaves, aguide2 takes the customers over
        same = {
            "csrf_token": csrf(client),
            "mode": "resigned",
            "handover_userid": "aguide",
            "takeover_userid": "aguide",
        }
        assert client.post("/b/a-coffee/wecom/transfers", data=same).status_code == 422
        done = client.post(
            "/b/a-coffee/wecom/transfers",
            data={**same, "takeover_userid": "aguide2"},
            follow_redirects=False,
        )
        assert done.status_code == 303 and "requested=3" in done.headers["location"]
        db.rollback()
        assert {t.status for t in db.scalars(select(WecomTransfer))} == {"waiting"}
        assert 'data-status="waiting"' in client.get("/b/a-coffee/wecom").text

    # a guide sees no WeCom page and cannot post to it
    client.cookies.clear()
    login(client, "a.guide")
    assert client.get("/b/a-coffee/wecom").status_code == 403
    r = client.post("/b/a-coffee/wecom/transfers", data={**same, "csrf_token": csrf(client)})
    assert r.status_code == 403
