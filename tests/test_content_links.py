"""Tracking links (acceptance 2): a click over real HTTP becomes a click tied to customer,
touch and content, queued as a ``link_clicked`` catalogue event; bots, previews, HEAD requests
and too-early clicks are kept but not counted; an open redirect to another domain is refused,
at creation and at click time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.content import actions, links
from siyu.content.models import LinkClick, TrackingLink
from siyu.content.schemas import LinkIn, MaterialIn, SettingsIn
from siyu.core.errors import Invalid
from siyu.core.tenancy import SYSTEM
from siyu.ingest.models import InboxEvent
from siyu.org.queries import access_brand
from tests.factories import login

ALLOWED = ["mall.example.com", "example.cn"]
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.47"

OPEN_REDIRECTS = [
    "//evil.com",
    "//evil.com/https://mall.example.com",
    "https://mall.example.com.evil.com/",
    "https://evil.com/?next=https://mall.example.com",
    "https://mall.example.com@evil.com/",
    "https://user:pw@mall.example.com/",
    "https://mall.example.com%40evil.com/",
    "https://mall.example.com%2F@evil.com/",
    "javascript:alert(1)",
    "JavaScript://mall.example.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:\\\\evil.com",
    "https://mall.example.com\\@evil.com",
    "\\\\evil.com",
    "/\\evil.com",
    "https:/evil.com",
    "https://evil.com\\.mall.example.com",
    " https://evil.com",
    "https://mall.example.com\t.evil.com",
    "ftp://mall.example.com/",
    "https://xn--mall-example-com.evil.com",
    "https://mall.example.com:8443/",
    "https://evilmall.example.com.cn/",
    "https://notexample.cn/",
    "",
]


@pytest.mark.parametrize("url", OPEN_REDIRECTS)
def test_open_redirects_are_refused(url: str) -> None:
    with pytest.raises(Invalid) as exc:
        links.safe_target(url, ALLOWED)
    assert exc.value.code == "content.redirect_refused"


@pytest.mark.parametrize(
    "url",
    [
        "https://mall.example.com/p/1?sku=2",
        "http://mall.example.com",
        "https://shop.mall.example.com/x#top",
        "https://example.cn/a",
        "https://MALL.example.com:443/a",
    ],
)
def test_allowed_targets_pass(url: str) -> None:
    assert links.safe_target(url, ALLOWED) == url


def test_utm_added_without_overwriting_and_signatures_checked() -> None:
    url = links.with_utm(
        "https://mall.example.com/p?utm_source=keep&a=1",
        {"utm_source": "siyu", "utm_medium": "wecom_1to1", "utm_content": "m.v2.B"},
    )
    q = parse_qs(urlsplit(url).query)
    assert q == {
        "utm_source": ["keep"],
        "a": ["1"],
        "utm_medium": ["wecom_1to1"],
        "utm_content": ["m.v2.B"],
    }
    secret = b"k" * 32
    sig = links.signature(secret, "abc", "C1", "T1")
    assert links.verify(secret, "abc", "C1", "T1", sig)
    assert not links.verify(secret, "abc", "C2", "T1", sig)
    assert not links.verify(secret, "abd", "C1", "T1", sig)


def test_bot_reasons() -> None:
    now = datetime(2026, 7, 1, tzinfo=UTC)
    assert links.bot_reason("HEAD", UA, now, None) == "head"
    assert links.bot_reason("GET", None, now, None) == "bot_ua"
    for ua in (
        "Mozilla/5.0 (compatible; Googlebot/2.1)",
        "WechatShareMeta/1.0",
        "Mozilla/5.0 (Linux) HeadlessChrome/120.0",
        "curl/8.4.0",
        "python-requests/2.31",
        "Mozilla/5.0 (compatible; Bytespider)",
    ):
        assert links.bot_reason("GET", ua, now, None) == "bot_ua", ua
    assert links.bot_reason("GET", UA, now, now - timedelta(milliseconds=300)) == "too_soon"
    assert links.bot_reason("GET", UA, now, now - timedelta(seconds=5)) is None


def _setup(db: Session) -> tuple[Any, Any]:
    brand = access_brand(db, SYSTEM, "a-coffee")
    actions.set_settings(
        db,
        SYSTEM,
        brand,
        SettingsIn(allowed_domains=["Mall.Example.com"], utm={"utm_campaign": "c"}),
    )
    m = actions.create_material(
        db,
        SYSTEM,
        brand,
        MaterialIn(
            kind="link",
            name="新品",
            body={"title": "{{ nickname }}的新品", "url": "https://mall.example.com/new"},
        ),
    )
    return brand, m


def test_link_creation_refuses_other_domains(db: Session, world: Any) -> None:
    brand, _m = _setup(db)
    for url in ("https://mall.example.com.evil.com/", "//evil.com", "javascript:alert(1)"):
        with pytest.raises(Invalid) as exc:
            actions.create_link(db, SYSTEM, brand, LinkIn(target_url=url))
        assert exc.value.code == "content.redirect_refused"
    assert db.scalar(select(TrackingLink.id)) is None


def test_click_over_http_is_tied_to_customer_touch_and_content(
    client: Any, db: Session, world: Any
) -> None:
    brand, m = _setup(db)
    sent = datetime.now(UTC) - timedelta(minutes=5)
    link = actions.create_link(
        db,
        SYSTEM,
        brand,
        LinkIn(
            target_url="https://mall.example.com/new?x=1",
            material_id=m.id,
            channel="wecom_1to1",
            variant="B",
        ),
        sent_at=sent,
    )
    url = actions.signed_url(link, "CUST1", "TOUCH1")
    # a person in WeChat
    r = client.get(url, headers={"User-Agent": UA}, follow_redirects=False)
    assert r.status_code == 302, r.text
    target = urlsplit(r.headers["location"])
    assert target.netloc == "mall.example.com" and target.path == "/new"
    q = parse_qs(target.query)
    assert q["x"] == ["1"] and q["utm_campaign"] == ["c"] and q["utm_source"] == ["siyu"]
    assert q["utm_content"] == [f"{m.id}.v1.B"]
    # the link-preview crawler, a HEAD request and a forged signature
    client.get(url, headers={"User-Agent": "WechatShareMeta/1.0"}, follow_redirects=False)
    client.head(url, headers={"User-Agent": UA}, follow_redirects=False)
    forged = url.replace("c=CUST1", "c=CUST2")
    client.get(forged, headers={"User-Agent": UA}, follow_redirects=False)
    db.rollback()
    rows = list(db.scalars(select(LinkClick).order_by(LinkClick.id)))
    assert [(c.bot, c.reason) for c in rows] == [
        (False, None),
        (True, "bot_ua"),
        (True, "head"),
        (False, None),
    ]
    first = rows[0]
    assert (first.customer_id, first.touch_id, first.material_id, first.version) == (
        "CUST1",
        "TOUCH1",
        m.id,
        1,
    )
    assert (first.channel, first.variant) == ("wecom_1to1", "B")
    assert rows[3].customer_id is None  # forged: counted, anonymously
    # counted clicks became link_clicked events in the ingest inbox (→ lake)
    events = list(db.scalars(select(InboxEvent).order_by(InboxEvent.id)))
    assert len(events) == 2
    props = events[0].payload["properties"]
    assert events[0].payload["event_type"] == "link_clicked"
    assert props["customer_id"] == "CUST1" and props["touch_id"] == "TOUCH1"
    assert props["content_id"] == m.id and props["variant"] == "B"
    # and the API shows the counted clicks
    headers = login(client, "a.admin")
    r = client.get(f"/api/v1/brands/a-coffee/content/links/{link.code}", headers=headers)
    assert r.status_code == 200 and r.json()["clicks"] == 2
    r = client.get(f"/api/v1/brands/a-coffee/content/clicks?code={link.code}&bots=true")
    assert len(r.json()) == 4


def test_redirect_refused_when_domain_no_longer_allowed(
    client: Any, db: Session, world: Any
) -> None:
    brand, _m = _setup(db)
    link = actions.create_link(db, SYSTEM, brand, LinkIn(target_url="https://mall.example.com/"))
    actions.set_settings(db, SYSTEM, brand, SettingsIn(allowed_domains=["example.cn"]))
    r = client.get(f"/t/{link.code}", headers={"User-Agent": UA}, follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    assert client.get("/t/nope1234", follow_redirects=False).status_code == 404
    assert client.get("/t/..%2Fx", follow_redirects=False).status_code == 404


def test_api_refuses_open_redirect_links(client: Any, db: Session, world: Any) -> None:
    _setup(db)
    headers = login(client, "a.admin")
    for url in ("https://mall.example.com@evil.com/", "//evil.com", "https://evil.com"):
        r = client.post(
            "/api/v1/brands/a-coffee/content/links", json={"target_url": url}, headers=headers
        )
        assert r.status_code == 422 and r.json()["code"] == "content.redirect_refused", r.text
    r = client.post(
        "/api/v1/brands/a-coffee/content/links",
        json={"target_url": "https://mall.example.com/a"},
        headers=headers,
    )
    assert r.status_code == 201 and r.json()["short_url"].startswith("/t/")
