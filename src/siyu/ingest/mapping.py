"""Column mapping: file headers (often Chinese) → canonical fields, per kind of import.

Built-in aliases cover the headers Chinese brands' exports commonly use; a saved mapping per
source (``SourceMapping``) or a JSON/YAML file (``--mapping``) adds or overrides them:

    {"columns": {"会员手机": "phone", "成交时间": "occurred_at"},
     "values": {"channel": {"有赞": "mini_mall"}},
     "defaults": {"channel": "pos"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siyu.core.errors import Invalid

_IDS = {
    "phone": ("phone", "mobile", "手机号", "手机", "手机号码", "联系电话", "会员手机号"),
    "member_no": ("member_no", "会员号", "会员卡号", "会员编号", "会员id"),
    "unionid": ("unionid", "union_id"),
    "external_userid": ("external_userid", "外部联系人id", "企微外部联系人id"),
    "mini_openid": ("mini_openid", "小程序openid", "openid"),
    "oa_openid": ("oa_openid", "公众号openid"),
    "pos_card": ("pos_card", "pos卡号", "门店卡号"),
    "tmall_buyer": ("tmall_buyer", "天猫买家id", "淘宝买家id", "买家昵称"),
    "jd_buyer": ("jd_buyer", "京东买家id", "京东账号"),
    "douyin_buyer": ("douyin_buyer", "抖音买家id", "抖音用户id"),
    "email": ("email", "邮箱", "电子邮箱"),
    "device_id": ("device_id", "设备id", "设备号"),
}
_ENVELOPE = {
    "event_id": ("event_id", "事件id", "事件编号"),
    "event_type": ("event_type", "事件类型", "类型"),
    "schema_version": ("schema_version", "版本"),
    "occurred_at": ("occurred_at", "time", "时间", "发生时间", "事件时间"),
    "source": ("source", "来源"),
}
# Common property columns of event exports (any other property: its own field name).
_PROPS = {
    "path": ("path", "页面路径", "页面", "page"),
    "referrer": ("referrer", "来源页", "来源页面", "上一页"),
    "title": ("title", "页面标题"),
    "staff_userid": ("staff_userid", "员工账号", "导购账号", "企微员工id"),
    "chat_id": ("chat_id", "群id", "群聊id"),
    "state": ("state", "渠道码", "活码参数"),
    "coupon_code": ("coupon_code", "券码", "优惠券码"),
    "campaign": ("campaign", "活动", "活动名称"),
    "csat": ("csat", "满意度", "评分"),
    "survey_id": ("survey_id", "问卷id", "问卷编号"),
    "content_id": ("content_id", "内容id", "素材id"),
    "store_code": ("store_code", "门店编码", "门店代码"),
}
_ORDERS = {
    "order_id": ("order_id", "订单号", "订单编号", "订单id"),
    "occurred_at": ("occurred_at", "下单时间", "支付时间", "成交时间", "时间"),
    "event_type": ("event_type", "类型", "订单状态", "交易类型"),
    "channel": ("channel", "渠道", "销售渠道", "来源渠道"),
    "paid_fen": ("paid", "paid_fen", "实付金额", "支付金额", "实付"),
    "total_fen": ("total", "total_fen", "订单金额", "订单总额", "应付金额"),
    "discount_fen": ("discount", "discount_fen", "优惠金额", "折扣金额"),
    "refund_fen": ("refund", "refund_fen", "退款金额"),
    "refund_id": ("refund_id", "退款单号", "退款编号"),
    "store_code": ("store_code", "门店编码", "门店代码", "门店"),
    "coupon_codes": ("coupon_codes", "优惠券", "券码", "优惠券码"),
    "sku": ("sku", "商品编码", "货号", "sku编码"),
    "name": ("item_name", "商品名称", "品名"),
    "category": ("category", "品类", "商品分类", "类目"),
    "qty": ("qty", "quantity", "数量", "购买数量"),
    "unit_price_fen": ("unit_price", "unit_price_fen", "单价", "商品单价"),
    "amount_fen": ("amount", "amount_fen", "商品金额", "小计", "行金额"),
}
_CUSTOMERS = {
    "name": ("name", "姓名", "客户姓名", "会员姓名"),
    "nickname": ("nickname", "昵称"),
    "gender": ("gender", "性别"),
    "birthday": ("birthday", "生日", "出生日期"),
    "city": ("city", "城市", "所在城市"),
    "level": ("level", "会员等级", "等级"),
    "owner_wecom_userid": ("owner_wecom_userid", "专属导购", "导购企微账号"),
    "unit_code": ("unit_code", "所属门店", "门店编码"),
    "occurred_at": ("occurred_at", "updated_at", "更新时间", "注册时间", "入会时间"),
}
VALUE_ALIASES: dict[str, dict[str, str]] = {
    "channel": {
        "小程序": "mini_mall",
        "小程序商城": "mini_mall",
        "微商城": "mini_mall",
        "商城": "mini_mall",
        "天猫": "tmall",
        "淘宝": "tmall",
        "京东": "jd",
        "抖音": "douyin",
        "抖店": "douyin",
        "门店": "pos",
        "线下": "pos",
        "线下门店": "pos",
        "其他": "other",
    },
    "gender": {"男": "male", "女": "female", "未知": "unknown", "m": "male", "f": "female"},
    "event_type": {
        "支付": "order_paid",
        "付款": "order_paid",
        "已支付": "order_paid",
        "已付款": "order_paid",
        "成交": "order_paid",
        "paid": "order_paid",
        "退款": "order_refunded",
        "已退款": "order_refunded",
        "refund": "order_refunded",
        "refunded": "order_refunded",
    },
}


def builtin_aliases(kind: str) -> dict[str, str]:
    """lower-cased header → canonical field for one kind of import."""
    groups = [_IDS, _ENVELOPE]
    if kind == "events":
        groups.append(_PROPS)
    elif kind == "orders":
        groups.append(_ORDERS)
    elif kind == "customers":
        groups.append(_CUSTOMERS)
    out: dict[str, str] = {}
    for group in groups:
        for canonical, aliases in group.items():
            for alias in aliases:
                out[alias.lower()] = canonical
    return out


@dataclass
class Mapping:
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mapping:
        return cls(
            columns=dict(data.get("columns") or {}),
            values={k: dict(v) for k, v in (data.get("values") or {}).items()},
            defaults=dict(data.get("defaults") or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "values": self.values, "defaults": self.defaults}

    def resolve(self, headers: list[str], kind: str, known: set[str]) -> dict[str, str]:
        """header → canonical for every header we understand."""
        aliases = builtin_aliases(kind)
        out: dict[str, str] = {}
        for header in headers:
            low = header.strip().lower()
            target = self.columns.get(header) or self.columns.get(header.strip())
            if target is None:
                target = aliases.get(low)
            if target is None and (low in known or low.startswith(("attributes.", "props."))):
                target = low
            if target is None and low.startswith("properties."):
                target = low.removeprefix("properties.")
            if target is not None:
                out[header] = target
        return out

    def value_map(self, canonical: str) -> dict[str, str]:
        merged = dict(VALUE_ALIASES.get(canonical, {}))
        merged.update(self.values.get(canonical, {}))
        return merged


def load_mapping_file(path: Path) -> dict[str, Any]:
    """A mapping from a JSON or YAML file."""
    if not path.exists():
        raise Invalid("import.missing_file", path=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json and yaml raise their own error types
        raise Invalid("ingest.bad_mapping", reason=str(exc)[:200]) from exc
    if not isinstance(data, dict):
        raise Invalid("ingest.bad_mapping", reason="a mapping must be an object")
    if "columns" not in data and all(isinstance(v, str) for v in data.values()):
        data = {"columns": data}  # a bare {header: field} object is accepted too
    return data


def known_fields(registry: Any, id_types: list[str]) -> set[str]:
    """Every canonical name a header may take as is (envelope, identifiers, properties of
    the brand's event types, order and customer fields)."""
    names = set(_ENVELOPE) | set(id_types) | set(_ORDERS) | set(_CUSTOMERS)
    for spec in registry.specs.values():
        names |= set(spec.model.model_fields)
    return names
