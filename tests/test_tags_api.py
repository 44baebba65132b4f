"""The tags and segments API: library and health, rule checks with positions and a live
count, definitions, computation, segments with masked previews, audited exports and audience
packs; the worker's schedule."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.tags import actions, segments
from siyu.tags.models import Tag, TagRun
from tests.factories import api_key
from tests.test_tags_compute import AS_OF, PHONE, STORY


def headers(db: Session, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'a-coffee', *scopes)}"}


BASE = "/api/v1/brands/a-coffee"


def test_rules_tags_health_and_segments_over_http(client: Any, db: Session, world: object) -> None:
    h = headers(
        db, "events.write", "customers.read", "tags.write", "segments.export", "customers.write"
    )
    r = client.post(f"{BASE}/events:batch", json={"events": STORY}, headers=h)
    assert r.status_code == 200
    # a rule with a mistake is answered with where and why
    bad = client.post(
        f"{BASE}/tags:check", json={"rule": "count(order_paid, last 90x) >= 2"}, headers=h
    )
    assert bad.status_code == 200 and bad.json()["ok"] is False
    err = bad.json()["error"]
    assert err["code"] == "tags.parse_error" and err["position"]["column"] == 26
    # a good one gives its canonical text, its JSON tree and the live count
    good = client.post(
        f"{BASE}/tags:check", json={"rule": "count(order_paid,last 365d)>=2"}, headers=h
    ).json()
    assert good["ok"] and good["rule"] == "count(order_paid, last 365d) >= 2"
    assert good["rule_json"] and good["count"] == 1  # A bought three times in the year
    # the JSON tree is accepted as a definition too
    made = client.post(
        f"{BASE}/tags",
        json={"key": "repeat", "name": "复购", "group": "rules", "rule_json": good["rule_json"]},
        headers=h,
    )
    assert made.status_code == 201, made.text
    assert made.json()["rule"] == good["rule"] and made.json()["health"] == "never"
    refused = client.post(
        f"{BASE}/tags",
        json={"key": "oops", "name": "x", "group": "rules", "rule": "sum(page_viewed.path) > 1"},
        headers=h,
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "tags.type_error" and "line" in refused.json()["params"]
    # compute, then every tag of the library has a health
    run = client.post(
        f"{BASE}/tags:compute", json={"mode": "full", "as_of": AS_OF.isoformat()}, headers=h
    )
    assert run.status_code == 200, run.text
    lib = {t["key"]: t for g in client.get(f"{BASE}/tags", headers=h).json() for t in g["tags"]}
    assert lib["repeat"]["health"] == "ok" and lib["repeat"]["members"] == 1
    # a failing tag is flagged in the library and the health list
    db.execute(update(Tag).where(Tag.key == "repeat").values(rule="count(nope) > 1"))
    db.commit()
    client.post(
        f"{BASE}/tags:compute", json={"mode": "full", "as_of": AS_OF.isoformat()}, headers=h
    )
    flagged = {t["key"]: t for t in client.get(f"{BASE}/tags/health", headers=h).json()}
    assert flagged["repeat"]["health"] == "failing" and "nope" in flagged["repeat"]["last_error"]
    # segments: live preview with masked PII, snapshot, exports
    preview = client.post(
        f"{BASE}/segments:preview",
        json={"definition": "tag_lifecycle_new or tag_lifecycle_active"},
        headers=h,
    ).json()
    assert preview["count"] == 3  # A active; D and E new
    assert all("****" in (row["phone"] or "") for row in preview["rows"])
    seg = client.post(
        f"{BASE}/segments",
        json={"key": "fresh", "name": "新客", "definition": "tag_lifecycle_new"},
        headers=h,
    )
    assert seg.status_code == 201
    snap = client.post(f"{BASE}/segments/fresh:snapshot", headers=h).json()
    assert snap["count"] == 2
    got = client.get(f"{BASE}/segments/fresh/export", params={"format": "csv"}, headers=h)
    assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert len(rows) == 2 and all("****" in r["phone"] for r in rows)
    pack = client.get(f"{BASE}/segments/fresh/export", params={"format": "audience"}, headers=h)
    lines = pack.content.decode().splitlines()
    expected = sorted(
        (hashlib.md5(p.encode()).hexdigest(), hashlib.sha256(p.encode()).hexdigest())
        for p in (PHONE["D"], PHONE["E"])
    )
    assert lines == ["md5,sha256"] + [f"{m},{s}" for m, s in expected]
    xlsx = client.get(f"{BASE}/segments/fresh/export", params={"format": "xlsx"}, headers=h)
    assert xlsx.content[:2] == b"PK"
    db.rollback()
    exports = db.scalars(select(AuditEntry).where(AuditEntry.action == "segment.export")).all()
    assert sorted(e.after["format"] for e in exports) == ["audience", "csv", "xlsx"]
    # exporting needs its own permission
    no_export = headers(db, "customers.read", "tags.write")
    assert client.get(f"{BASE}/segments/fresh/export", headers=no_export).status_code == 403


def test_guides_count_only_their_own_customers(db: Session, world: object) -> None:
    from siyu.org import auth
    from siyu.org.models import Staff

    brand = access_brand(db, SYSTEM, "a-coffee")
    from siyu.ingest import actions as ingest

    ingest.ingest_batch(db, SYSTEM, brand, STORY)
    everyone = segments.count(db, SYSTEM, brand, "exists(order_paid)")
    guide = db.scalar(select(Staff).where(Staff.username == "a.guide"))
    assert guide is not None
    as_guide = auth.actor_for_staff(db, guide)
    assert everyone == 5 and segments.count(db, as_guide, brand, "exists(order_paid)") == 0


def test_the_worker_computes_each_brand_once_per_interval(db: Session, world: object) -> None:
    done = actions.run_scheduled(db, 10)
    assert done >= 3  # a-coffee, a-tea, b-shop
    assert actions.run_scheduled(db, 10) == 0  # nothing is due again yet
    brands = set(db.scalars(select(TagRun.brand_id)))
    assert len(brands) == done
