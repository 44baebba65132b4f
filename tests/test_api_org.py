"""The organisation API: brands, units, staff, keys and audit, with tenancy and data scope."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tests.factories import api_key


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_health(client: Any) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_api_key_reads_its_brand_and_creates_a_store(client: Any, db: Session, world: Any) -> None:
    # given a key of a-coffee with org scopes
    key = api_key(db, "a-coffee", "org.read", "org.write")
    # when it creates a store under the east region
    r = client.post(
        "/api/v1/brands/a-coffee/units",
        headers=bearer(key),
        json={
            "code": "A-SH03",
            "name": "新天地店",
            "kind": "store",
            "parent": "A-EAST",
            "city": "上海",
        },
    )
    # then the store is in the tree under 华东
    assert r.status_code == 201, r.text
    tree = client.get("/api/v1/brands/a-coffee/units:tree", headers=bearer(key)).json()
    east = next(c for c in tree[0]["children"] if c["code"] == "A-EAST")
    assert "A-SH03" in [c["code"] for c in east["children"]]
    # and the write is audited with the key as actor
    audit = client.get(
        "/api/v1/brands/a-coffee/audit", headers=bearer(api_key(db, "a-coffee", "audit.read"))
    ).json()
    entry = next(
        e for e in audit if e["action"] == "unit.create" and e["after"]["code"] == "A-SH03"
    )
    assert entry["actor_kind"] == "api_key"
    assert entry["before"] is None


def test_missing_scope_is_403_with_code(client: Any, db: Session, world: Any) -> None:
    key = api_key(db, "a-coffee", "org.read")
    r = client.post(
        "/api/v1/brands/a-coffee/units",
        headers=bearer(key),
        json={"code": "X1", "name": "x", "kind": "store", "parent": "A-HQ"},
    )
    assert r.status_code == 403
    body = r.json()
    assert body["code"] == "auth.missing_scope"
    assert r.headers["content-type"].startswith("application/problem+json")


def test_problem_titles_follow_accept_language(client: Any, db: Session, world: Any) -> None:
    key = api_key(db, "a-coffee", "org.read")
    zh = client.get("/api/v1/brands/b-shop", headers=bearer(key))
    en = client.get("/api/v1/brands/b-shop", headers={**bearer(key), "Accept-Language": "en"})
    assert zh.status_code == en.status_code == 404
    assert zh.json()["title"] == "品牌不存在"
    assert en.json()["title"] == "Brand not found"


def test_bad_keys_are_401_with_specific_codes(client: Any, db: Session, world: Any) -> None:
    assert client.get("/api/v1/brands").json()["code"] == "auth.api_key_missing"
    r = client.get("/api/v1/brands", headers=bearer("sk_nope"))
    assert (r.status_code, r.json()["code"]) == (401, "auth.api_key_invalid")


def test_revoked_key_is_refused(client: Any, db: Session, world: Any) -> None:
    from siyu.core.tenancy import SYSTEM
    from siyu.org import actions, queries
    from siyu.org.schemas import ApiKeyIn

    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    key, secret = actions.create_api_key(db, SYSTEM, brand, ApiKeyIn(name="k", scopes=["org.read"]))
    assert client.get("/api/v1/brands/a-coffee", headers=bearer(secret)).status_code == 200
    actions.revoke_api_key(db, SYSTEM, brand, key.id)
    r = client.get("/api/v1/brands/a-coffee", headers=bearer(secret))
    assert (r.status_code, r.json()["code"]) == (401, "auth.api_key_revoked")


def test_validation_errors_name_the_field(client: Any, db: Session, world: Any) -> None:
    key = api_key(db, "a-coffee", "org.read", "org.write")
    r = client.post(
        "/api/v1/brands/a-coffee/units",
        headers=bearer(key),
        json={"code": "bad code!", "name": "", "kind": "castle"},
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"code", "name", "kind"} <= fields


def test_malformed_json_is_400(client: Any, db: Session, world: Any) -> None:
    key = api_key(db, "a-coffee", "org.write")
    r = client.post(
        "/api/v1/brands/a-coffee/units",
        headers={**bearer(key), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400
    assert r.json()["code"] == "http.malformed_body"


def test_duplicate_unit_code_is_409(client: Any, db: Session, world: Any) -> None:
    key = api_key(db, "a-coffee", "org.write")
    r = client.post(
        "/api/v1/brands/a-coffee/units",
        headers=bearer(key),
        json={"code": "A-SH01", "name": "again", "parent": "A-EAST"},
    )
    assert (r.status_code, r.json()["code"]) == (409, "org.unit_code_taken")
