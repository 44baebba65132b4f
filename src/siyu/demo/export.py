"""The files a demo brand hands over, written from the generated data, and their import.

What a brand's team would export from its own systems, in the encodings they really come in:

- ``crm_members.csv`` — the CRM member list, GB18030 (Excel in China), Chinese headers;
- ``orders.csv`` — all-channel order lines (mall, POS, Tmall, JD, Douyin), UTF-8 with BOM;
- ``wecom_contacts.jsonl`` — WeCom add/delete events with the channel ``state``;
- ``events.jsonl`` — mini-program page views, groups, messages, coupons, check-ins, CSAT
  surveys and referrals.

:func:`import_brand` feeds exactly these files through the real ingestion path.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from siyu.demo.generate import BrandData

CHANNEL_ZH = {
    "mini_mall": "小程序商城",
    "pos": "门店",
    "tmall": "天猫",
    "jd": "京东",
    "douyin": "抖音",
}
GENDER_ZH = {"male": "男", "female": "女", "unknown": "未知"}
FILES = (
    ("crm_members.csv", "customers"),
    ("wecom_contacts.jsonl", "events"),
    ("orders.csv", "orders"),
    ("events.jsonl", "events"),
)


def _iso(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=round(float(seconds)))).isoformat()


def _ids(c: dict[str, Any], i: int, types: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"type": t, "value": str(c[t][i])} for t in types if c[t][i]]


def export_brand(data: BrandData, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    c, o, it, start = data.customers, data.orders, data.items, data.start
    slug = data.shape.slug
    paths = []
    # CRM members: GB18030 with Chinese headers
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        [
            "会员号",
            "手机号",
            "姓名",
            "性别",
            "生日",
            "城市",
            "所属门店",
            "专属导购",
            "unionid",
            "注册时间",
        ]
    )
    for i in range(len(c["idx"])):
        if c["member_no"][i]:
            w.writerow(
                [
                    c["member_no"][i],
                    c["phone"][i],
                    c["name"][i],
                    GENDER_ZH[str(c["gender"][i])],
                    c["birthday"][i],
                    c["city"][i],
                    c["store"][i],
                    c["owner"][i],
                    c["unionid"][i],
                    _iso(start, c["acq_s"][i] + 600),
                ]
            )
    paths.append(folder / "crm_members.csv")
    paths[-1].write_bytes(buf.getvalue().encode("gb18030"))
    # WeCom contacts: add (with state) and deletions
    lines = []
    for i in range(len(c["idx"])):
        ext = str(c["external_userid"][i])
        if not ext:
            continue
        ids = _ids(c, i, ("external_userid", "unionid"))
        props: dict[str, Any] = {
            "staff_userid": str(c["owner"][i]),
            "external_userid": ext,
            "state": str(c["state"][i]),
        }
        if c["unionid"][i]:
            props["unionid"] = str(c["unionid"][i])
        lines.append(
            {
                "event_id": f"{slug}-add-{i}",
                "event_type": "wecom_contact_added",
                "occurred_at": _iso(start, c["acq_s"][i]),
                "source": "wecom",
                "identifiers": ids,
                "properties": props,
            }
        )
        if c["deleted"][i]:
            kind = (
                "wecom_contact_deleted_by_staff"
                if c["deleted_by_staff"][i]
                else "wecom_contact_deleted_by_customer"
            )
            lines.append(
                {
                    "event_id": f"{slug}-del-{i}",
                    "event_type": kind,
                    "occurred_at": _iso(start, c["delete_s"][i]),
                    "source": "wecom",
                    "identifiers": ids[:1],
                    "properties": {"staff_userid": str(c["owner"][i]), "external_userid": ext},
                }
            )
    paths.append(folder / "wecom_contacts.jsonl")
    paths[-1].write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8"
    )
    # Orders: one row per order line, all channels, UTF-8 with BOM
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        [
            "订单号",
            "支付时间",
            "渠道",
            "实付金额",
            "订单金额",
            "优惠金额",
            "门店编码",
            "手机号",
            "小程序openid",
            "POS卡号",
            "天猫买家ID",
            "京东买家ID",
            "抖音买家ID",
            "商品编码",
            "商品名称",
            "品类",
            "数量",
            "单价",
            "商品金额",
        ]
    )
    for line in range(len(it["order"])):
        k = int(it["order"][line])
        i = int(o["cust"][k])
        ch = str(o["channel"][k])
        w.writerow(
            [
                o["order_id"][k],
                _iso(start, o["t_s"][k]),
                CHANNEL_ZH[ch],
                f"{o['paid'][k] / 100:.2f}",
                f"{o['total'][k] / 100:.2f}",
                f"{o['discount'][k] / 100:.2f}",
                o["store"][k] if ch == "pos" else "",
                c["phone"][i] if ch in ("pos", "tmall", "mini_mall") else "",
                c["mini_openid"][i] if ch == "mini_mall" else "",
                c["pos_card"][i] if ch == "pos" else "",
                c["tmall_buyer"][i] if ch == "tmall" else "",
                c["jd_buyer"][i] if ch == "jd" else "",
                c["douyin_buyer"][i] if ch == "douyin" else "",
                it["sku"][line],
                it["name"][line],
                it["category"][line],
                it["qty"][line],
                f"{it['unit_price'][line] / 100:.2f}",
                f"{it['amount'][line] / 100:.2f}",
            ]
        )
    paths.append(folder / "orders.csv")
    paths[-1].write_bytes(buf.getvalue().encode("utf-8-sig"))
    # Engagement events: JSONL in the catalogue's envelope
    paths.append(folder / "events.jsonl")
    paths[-1].write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in _engagement(data)),
        encoding="utf-8",
    )
    return paths


def _engagement(data: BrandData) -> list[dict[str, Any]]:
    c, start, slug, ev = data.customers, data.start, data.shape.slug, data.events
    out: list[dict[str, Any]] = []

    def add(
        kind: str, k: int, i: int, t: float, ids: tuple[str, ...], props: dict[str, Any]
    ) -> None:
        found = _ids(c, i, ids)
        if found:
            out.append(
                {
                    "event_id": f"{slug}-{kind}-{k}",
                    "event_type": kind,
                    "occurred_at": _iso(start, t),
                    "source": "demo",
                    "identifiers": found,
                    "properties": props,
                }
            )

    pv = ev["page_viewed"]
    for k in range(len(pv["cust"])):
        add(
            "page_viewed",
            k,
            int(pv["cust"][k]),
            pv["t_s"][k],
            ("mini_openid", "unionid"),
            {"path": str(pv["path"][k])},
        )
    wecom = ("external_userid",)
    for kind in ("group_joined", "group_left"):
        e = ev[kind]
        for k in range(len(e["cust"])):
            add(kind, k, int(e["cust"][k]), e["t_s"][k], wecom, {"chat_id": str(e["chat_id"][k])})
    for kind in ("message_received", "message_sent"):
        e = ev[kind]
        for k in range(len(e["cust"])):
            i = int(e["cust"][k])
            add(
                kind,
                k,
                i,
                e["t_s"][k],
                wecom,
                {"staff_userid": str(c["owner"][i]), "msg_type": "text"},
            )
    e = ev["coupon_issued"]
    for k in range(len(e["cust"])):
        add(
            "coupon_issued",
            k,
            int(e["cust"][k]),
            e["t_s"][k],
            wecom,
            {"coupon_code": f"WELCOME-{slug}-{k}", "campaign": "welcome", "value_fen": 500},
        )
    e = ev["checked_in"]
    for k in range(len(e["cust"])):
        add("checked_in", k, int(e["cust"][k]), e["t_s"][k], wecom, {"place": "group"})
    e = ev["survey_answered"]
    for k in range(len(e["cust"])):
        i = int(e["cust"][k])
        add(
            "survey_answered",
            k,
            i,
            e["t_s"][k],
            (*wecom, "phone", "mini_openid"),
            {"survey_id": "csat-after-order", "csat": int(e["csat"][k])},
        )
    e = ev["referral"]
    for k in range(len(e["cust"])):
        i, r = int(e["cust"][k]), int(e["referrer"][k])
        referee = _ids(c, i, ("external_userid", "unionid", "phone"))
        referrer = _ids(c, r, ("external_userid",))
        if referee and referrer:
            out.append(
                {
                    "event_id": f"{slug}-referral-{k}",
                    "event_type": "referral",
                    "occurred_at": _iso(start, e["t_s"][k]),
                    "source": "demo",
                    "identifiers": referee,
                    "properties": {"referrer": referrer, "referee": referee, "campaign": "friends"},
                }
            )
    return out


def import_brand(db: Any, folder: Path, slug: str) -> list[dict[str, Any]]:
    """Import one brand's exported files through the real ingestion path."""
    from siyu.core.tenancy import SYSTEM
    from siyu.ingest import actions
    from siyu.org import queries

    brand = queries.access_brand(db, SYSTEM, slug)
    results = []
    for name, kind in FILES:
        out = actions.import_file(
            db, SYSTEM, brand, folder / name, kind=kind, source=name.split(".")[0]
        )
        results.append(
            {
                "file": name,
                "total": out.total,
                "accepted": out.accepted,
                "duplicates": out.duplicates,
                "rejected": out.rejected,
                "seconds": out.seconds,
                "errors": out.errors[:5],
            }
        )
    return results
