"""The content console over real HTTP, on SQLite and PostgreSQL: the library with its
filters, the editor's live preview (masked PII) and save-time template errors, "send test"
writing an outbox row, the performance page, and the KOC queue and note pages — with their
permissions and data scope (a guide can neither submit nor approve and sees only the notes
of their own customers; another tenant sees nothing)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.content import actions as content_actions
from siyu.content import ugc
from siyu.content.models import KocNote, Material, RewardLedger
from siyu.content.schemas import MaterialIn
from siyu.core.audit import AuditEntry
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox
from tests.customer_factories import ZHANG_MASKED, ZHANG_NAME, ZHANG_PHONE, seed_customers
from tests.factories import login

XHS = "https://www.xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"


def csrf(client: Any) -> str:
    return client.cookies.get("siyu_csrf") or ""


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


@pytest.fixture
def material(db: Session, world: Any) -> Material:
    brand = access_brand(db, SYSTEM, "a-coffee")
    body = MaterialIn.model_validate(
        {
            "kind": "text",
            "name": "新品拿铁",
            "body": {"text": "{{ nickname }}，{{ store }}的新品拿铁到了"},
            "fallbacks": {"nickname": "亲"},
            "tags": ["新品", "咖啡"],
        }
    )
    return content_actions.create_material(db, SYSTEM, brand, body)


# ---------------------------------------------------------------- pages and languages


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_pages_render_in_both_languages(
    client: Any, db: Session, material: Material, lang: str
) -> None:
    note = ugc.submit_note(
        db, SYSTEM, access_brand(db, SYSTEM, "a-coffee"), ugc.KocNoteIn(url=XHS, title="测评")
    )
    login(client, "a.admin")
    client.get(f"/b/a-coffee?lang={lang}")
    for path in (
        "/content",
        f"/content/{material.id}",
        f"/content/{material.id}/stats",
        "/content/koc",
        f"/content/koc/{note.id}",
    ):
        r = client.get(f"/b/a-coffee{path}")
        assert r.status_code == 200, (path, r.text[:2000])
        assert 'class="nav-content active"' in r.text
        assert ("内容中心" if lang == "zh-CN" else "Content") in r.text


def test_library_filters(client: Any, db: Session, material: Material) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    link = MaterialIn.model_validate(
        {
            "kind": "link",
            "name": "会员日",
            "body": {"title": "会员日", "url": "https://mall.example.cn/d"},
        }
    )
    other = content_actions.create_material(db, SYSTEM, brand, link)
    login(client, "a.analyst")  # reads the library, cannot write
    page = client.get("/b/a-coffee/content").text
    assert f'data-material="{material.id}"' in page and f'data-material="{other.id}"' in page
    assert 'id="new-material"' not in page
    by_kind = client.get("/b/a-coffee/content?kind=link").text
    assert (
        f'data-material="{other.id}"' in by_kind and f'data-material="{material.id}"' not in by_kind
    )
    by_tag = client.get("/b/a-coffee/content?tag=新品").text
    assert (
        f'data-material="{material.id}"' in by_tag and f'data-material="{other.id}"' not in by_tag
    )
    by_name = client.get("/b/a-coffee/content?q=拿铁").text
    assert (
        f'data-material="{material.id}"' in by_name and f'data-material="{other.id}"' not in by_name
    )
    valid = client.get("/b/a-coffee/content?validity=expired").text
    assert 'data-material="' not in valid
    bad = client.get("/b/a-coffee/content?validity=someday")
    assert bad.status_code == 422 and 'data-code="content.bad_filter"' in bad.text


def test_create_preview_save_and_send_test(client: Any, db: Session, world: Any) -> None:
    cast = seed_customers(db)
    login(client, "a.admin")
    # create from the library form
    form = {
        "csrf_token": csrf(client),
        "kind": "text",
        "name": "欢迎语",
        "text": "{{ nickname }}你好，我是{{ guide_name }}",
        "tags": "欢迎, 新客",
        "fallbacks": "nickname=亲",
    }
    r = client.post("/b/a-coffee/content", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:3000]
    mid = r.headers["location"].split("/")[-1].split("?")[0]
    page = client.get(r.headers["location"]).text
    assert 'data-done="created"' in page
    # the live preview for a real customer: rendered, PII masked
    r = client.get(
        f"/b/a-coffee/content/{mid}/preview",
        params={"text": "{{ nickname }}，{{ store }}见", "customer_id": cast.zhang},
    )
    assert r.status_code == 200 and 'data-preview="ok"' in r.text
    shown = unescape(
        re.search(r'<pre class="preview-text" id="preview-text">(.*?)</pre>', r.text, re.S).group(1)
    )  # type: ignore[union-attr]
    assert shown.endswith("见") and ZHANG_NAME not in r.text and ZHANG_PHONE not in r.text
    # an unknown variable: the preview says where
    r = client.get(f"/b/a-coffee/content/{mid}/preview", params={"text": "你好\n{{ nick }}"})
    assert 'data-code="content.template_unknown_variable"' in r.text and 'data-line="2"' in r.text
    # saving it is refused next to the text field, the version unchanged
    save = {**form, "csrf_token": csrf(client), "text": "{{ nickname }}{{ coupon.__class__ }}"}
    r = client.post(f"/b/a-coffee/content/{mid}", data=save)
    assert r.status_code == 422
    assert (
        'data-code="content.template_forbidden_attribute"' in r.text
        and 'id="ed-text-error"' in r.text
    )
    assert db.get(Material, mid).version == 1  # type: ignore[union-attr]
    # a good edit makes version 2
    save["text"] = "{{ nickname }}，本周会员日"
    r = client.post(f"/b/a-coffee/content/{mid}", data=save, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("done=saved")
    db.rollback()
    assert db.get(Material, mid).version == 2  # type: ignore[union-attr]
    # send test: one outbox row for the console channel, audited, shown on the page
    r = client.post(
        f"/b/a-coffee/content/{mid}/send-test",
        data={"csrf_token": csrf(client), "channel": "console", "customer_id": cast.zhang},
        follow_redirects=False,
    )
    assert r.status_code == 303
    db.rollback()
    rows = list(
        db.scalars(select(Outbox).where(Outbox.idem_key.startswith(f"content-test:{mid}:")))
    )
    assert len(rows) == 1 and rows[0].channel == "console" and rows[0].status == "pending"
    assert rows[0].customer_id is None and rows[0].payload["content"]["text"].endswith("本周会员日")
    assert ZHANG_NAME not in str(rows[0].payload)
    page = client.get(r.headers["location"]).text
    assert f'data-outbox="{rows[0].id}"' in section(page, "send-test")
    # the worker's dispatcher delivers it through the console adapter
    from siyu.channels.dispatcher import dispatch_outbox

    assert dispatch_outbox(db, 10) == 1
    db.expire_all()
    assert db.get(Outbox, rows[0].id).status == "sent"  # type: ignore[union-attr]
    page = client.get(f"/b/a-coffee/content/{mid}").text
    assert 'data-status="sent"' in section(page, "send-test")
    # e-mail needs the staff member's address (the test cast has none)
    r = client.post(
        f"/b/a-coffee/content/{mid}/send-test",
        data={"csrf_token": csrf(client), "channel": "email"},
    )
    assert r.status_code == 422 and 'data-code="test"' in r.text
    assert (
        db.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "content.test_send")
        )
        == 1
    )
    # the performance page answers (nothing sent yet)
    stats = client.get(f"/b/a-coffee/content/{mid}/stats").text
    assert 'data-stat="sends">0<' in stats and 'id="ab-results"' in stats


def test_guide_cannot_write_content(client: Any, db: Session, material: Material) -> None:
    login(client, "a.guide")
    page = client.get(f"/b/a-coffee/content/{material.id}").text
    assert 'id="send-test"' not in page and "只读" in section(page, "content-editor")
    for path, data in (
        ("/content", {"kind": "text", "name": "x", "text": "hi"}),
        (f"/content/{material.id}", {"name": "x", "text": "hi"}),
        (f"/content/{material.id}/send-test", {"channel": "console"}),
    ):
        r = client.post(f"/b/a-coffee{path}", data={**data, "csrf_token": csrf(client)})
        assert r.status_code == 403, path
    assert db.scalar(select(func.count()).select_from(Outbox)) == 0


# ---------------------------------------------------------------- KOC notes


def test_koc_submit_review_and_reward(client: Any, db: Session, world: Any) -> None:
    form = {"url": XHS, "title": "拿铁测评", "author": "latte_lover"}
    # a guide can neither submit nor approve
    login(client, "a.guide")
    queue = client.get("/b/a-coffee/content/koc").text
    assert 'id="koc-submit"' not in queue
    r = client.post("/b/a-coffee/content/koc", data={**form, "csrf_token": csrf(client)})
    assert r.status_code == 403
    client.post("/logout", data={"csrf_token": csrf(client)})
    # the admin submits; the same post again is refused next to the link field
    login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/content/koc", data={**form, "csrf_token": csrf(client)}, follow_redirects=False
    )
    assert r.status_code == 303, r.text[:2000]
    note_id = r.headers["location"].split("/")[-1].split("?")[0]
    page = client.get(r.headers["location"]).text
    assert 'data-done="submitted"' in page and 'id="koc-review"' in page
    again = client.post("/b/a-coffee/content/koc", data={**form, "csrf_token": csrf(client)})
    assert again.status_code == 409 and 'id="koc-url-error"' in again.text
    client.post("/logout", data={"csrf_token": csrf(client)})
    login(client, "a.guide")
    r = client.post(
        f"/b/a-coffee/content/koc/{note_id}/approve",
        data={"csrf_token": csrf(client), "reward_yuan": "15"},
    )
    assert r.status_code in (403, 404)  # the note is not of the guide's customers either
    client.post("/logout", data={"csrf_token": csrf(client)})
    # the admin's review: reject needs a reason, then approve with a reward
    login(client, "a.admin")
    r = client.post(
        f"/b/a-coffee/content/koc/{note_id}/reject",
        data={"csrf_token": csrf(client), "reason": " "},
    )
    assert r.status_code == 422 and "content.koc_reason_required" in r.text
    approve = {
        "csrf_token": csrf(client),
        "reward_yuan": "15.50",
        "reward_points": "200",
        "state": "koc_latte_1",
    }
    r = client.post(
        f"/b/a-coffee/content/koc/{note_id}/approve", data=approve, follow_redirects=False
    )
    assert r.status_code == 303
    again = client.post(
        f"/b/a-coffee/content/koc/{note_id}/approve", data=approve, follow_redirects=False
    )
    assert again.status_code == 303
    db.rollback()
    ledger = {
        (row.unit, row.amount)
        for row in db.scalars(select(RewardLedger).where(RewardLedger.koc_note_id == note_id))
    }
    assert ledger == {("fen", 1550), ("points", 200)}
    page = client.get(f"/b/a-coffee/content/koc/{note_id}").text
    assert 'data-status="approved"' in page and 'id="koc-state">koc_latte_1<' in page
    assert 'data-amount="1550"' in page
    queue = client.get("/b/a-coffee/content/koc?status=approved").text
    assert f'data-note="{note_id}"' in queue and 'data-count="approved">1<' in queue
    # a bad reward amount is shown next to its field
    other = ugc.submit_note(
        db,
        SYSTEM,
        access_brand(db, SYSTEM, "a-coffee"),
        ugc.KocNoteIn(url="https://weibo.com/1/a", title="微博"),
    )
    r = client.post(
        f"/b/a-coffee/content/koc/{other.id}/approve",
        data={"csrf_token": csrf(client), "reward_yuan": "1.234"},
    )
    assert r.status_code == 422 and 'id="koc-reward_yuan-error"' in r.text


def test_koc_data_scope(client: Any, db: Session, world: Any) -> None:
    cast = seed_customers(db)  # zhang is a.guide's customer, li is not
    brand = access_brand(db, SYSTEM, "a-coffee")
    mine = ugc.submit_note(
        db, SYSTEM, brand, ugc.KocNoteIn(url=XHS, title="我的", customer_id=cast.zhang)
    )
    theirs = ugc.submit_note(
        db,
        SYSTEM,
        brand,
        ugc.KocNoteIn(url="https://www.douyin.com/video/9", title="别人的", customer_id=cast.li),
    )
    login(client, "a.guide")
    queue = client.get("/b/a-coffee/content/koc").text
    assert f'data-note="{mine.id}"' in queue and f'data-note="{theirs.id}"' not in queue
    assert client.get(f"/b/a-coffee/content/koc/{theirs.id}").status_code == 404
    # another tenant's admin: the brand does not exist for them
    client.post("/logout", data={"csrf_token": csrf(client)})
    login(client, "b.admin")
    assert client.get("/b/a-coffee/content/koc").status_code == 404
    assert client.get(f"/b/a-coffee/content/koc/{mine.id}").status_code == 404
    r = client.post(f"/b/a-coffee/content/koc/{mine.id}/approve", data={"csrf_token": csrf(client)})
    assert r.status_code == 404
    db.rollback()
    assert db.scalar(select(KocNote.status).where(KocNote.id == mine.id)) == "submitted"


def test_note_page_shows_attributed_customers(client: Any, db: Session, world: Any) -> None:
    """Acceptance 4 on the page: the customer a note's channel code brought, with orders and
    GMV, masked."""
    from siyu.ingest import actions as ingest
    from tests.test_content_ugc import ev, order

    brand = access_brand(db, SYSTEM, "a-coffee")
    note = ugc.submit_note(db, SYSTEM, brand, ugc.KocNoteIn(url=XHS, title="测评"))
    ugc.approve_note(db, SYSTEM, brand, note.id, ugc.KocApproval(state="koc_page"))
    items = [
        ev("p-add", "wecom_contact_added", "2026-06-01T10:00:00+08:00", ZHANG_PHONE,
           staff_userid="aguide", external_userid="wmP", state="koc_page"),
        order("p-o1", "2026-06-02T12:00:00+08:00", ZHANG_PHONE, 4200),
        order("p-o2", "2026-06-03T12:00:00+08:00", ZHANG_PHONE, 1800),
    ]  # fmt: skip
    assert ingest.ingest_batch(db, SYSTEM, brand, items).accepted == 3
    login(client, "a.admin")
    page = client.get(f"/b/a-coffee/content/koc/{note.id}").text
    assert 'data-stat="customers">1<' in page and 'data-stat="orders">2<' in page
    assert 'data-fen="6000"' in page
    attributed = section(page, "koc-attributed")
    assert 'data-via="state"' in attributed and ZHANG_MASKED in attributed
    assert ZHANG_PHONE not in page
    queue = client.get("/b/a-coffee/content/koc").text
    row = queue[queue.index(f'data-note="{note.id}"') :]
    assert 'data-count="orders">2<' in row[: row.index("</tr>")]


def test_koc_import_from_a_file(client: Any, db: Session, world: Any) -> None:
    csv = (
        "链接,标题,作者\n"
        f"{XHS},好喝,阿鱼\n"
        "https://xiaohongshu.com/discovery/item/6650a1b2c3d4e5f6a7b8c9d0,同一篇,阿鱼\n"
        "https://127.0.0.1/x,坏链接,\n"
        "https://www.douyin.com/video/5,探店,王\n"
    ).encode()
    login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/content/koc/import",
        data={"csrf_token": csrf(client)},
        files={"file": ("notes.csv", csv, "text/csv")},
    )
    assert r.status_code == 200, r.text[:2000]
    report = section(r.text, "koc-import")
    assert "<b>4</b>" in report and "<b>2</b>" in report  # total 4, created 2
    assert "<td>4</td><td>url</td>" in report.replace("\n", "").replace(" ", "")
    db.rollback()
    titles = set(db.scalars(select(KocNote.title)))
    assert titles == {"好喝", "探店"}
    assert {n.meta["source"] for n in db.scalars(select(KocNote))} == {"import"}
    # no file: a clear message, nothing stored
    r = client.post("/b/a-coffee/content/koc/import", data={"csrf_token": csrf(client)})
    assert r.status_code == 422
