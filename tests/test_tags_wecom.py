"""WeCom corporate tags mirrored into the library and onto customers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.tags import queries, wecom_tags
from siyu.tags.models import CustomerTag, Tag, TagChange
from tests.test_tags_compute import PHONE, STORY, customer_of


def corp_list(*groups: dict[str, Any]) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", "tag_group": list(groups)}


def group(gid: str, name: str, *tags: tuple[str, str], deleted: bool = False) -> dict[str, Any]:
    return {
        "group_id": gid,
        "group_name": name,
        "create_time": 1557838797,
        "order": 1,
        "deleted": deleted,
        "tag": [
            {"id": i, "name": n, "create_time": 1557838797, "order": 1, "deleted": False}
            for i, n in tags
        ],
    }


def test_corp_tags_are_mirrored_and_kept_in_sync(db: Session, world: object) -> None:
    from siyu.ingest import actions as ingest

    brand = access_brand(db, SYSTEM, "a-coffee")
    ingest.ingest_batch(db, SYSTEM, brand, STORY)
    # given WeCom's tag list
    body = corp_list(
        group("etG1", "客户等级", ("etT1", "一般"), ("etT2", "重要")),
        group("etG2", "兴趣", ("etT3", "拿铁")),
    )
    assert wecom_tags.mirror_corp_tags(db, SYSTEM, brand, body) == {
        "groups": 2,
        "tags": 3,
        "deleted": 0,
    }
    lib = {g.name: [t.name for t in g.tags] for g in queries.tag_library(db, SYSTEM, brand)}
    assert lib["客户等级"] == ["一般", "重要"] and lib["兴趣"] == ["拿铁"]
    # a customer's corporate tags (follow_user.tags of type 1) are set exactly
    a = customer_of(db, PHONE["A"])
    assert wecom_tags.set_customer_corp_tags(db, SYSTEM, brand, a, ["etT2", "etT3"]) == {
        "added": 2,
        "removed": 0,
    }
    assert wecom_tags.set_customer_corp_tags(db, SYSTEM, brand, a, ["etT3", "unknown"]) == {
        "added": 0,
        "removed": 1,
    }
    held = {t.name for t in queries.customer_tags(db, SYSTEM, brand, a)}
    assert held == {"拿铁"}
    changes = db.scalars(select(TagChange.change).where(TagChange.customer_id == a)).all()
    assert sorted(changes) == ["entered", "entered", "exited"]
    # when a tag is renamed and another deleted in WeCom
    wecom_tags.mirror_corp_tags(
        db,
        SYSTEM,
        brand,
        corp_list(
            group("etG1", "客户等级", ("etT1", "普通"), ("etT2", "重要")), group("etG2", "兴趣")
        ),
    )
    # then the rename keeps the key and the deleted tag leaves its customers
    names = {t.external_id: t for t in db.scalars(select(Tag).where(Tag.kind == "wecom"))}
    assert names["etT1"].name == "普通" and names["etT1"].key == wecom_tags.key_of("etT1")
    assert names["etT3"].status == "deleted"
    assert not db.scalars(select(CustomerTag).where(CustomerTag.tag_id == names["etT3"].id)).all()
