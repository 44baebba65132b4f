"""Ready-made SOPs from Chinese private-domain practice (seeds 000–003, ``PRODUCT.md``).

Each template is a plain dict valid as :class:`siyu.sop.schemas.SopIn`; :func:`from_template`
turns one into a definition with overrides (a new key, another segment, another priority)::

    body = from_template("member_day", key="member_day_vip",
                         audience={"kind": "segment", "segment": "vip"})

A template whose audience is a segment names a segment the brand must have (``TEMPLATE_INFO``
gives its key, a suggested name and definition); override ``audience`` to use another one.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from siyu.core.errors import Invalid, NotFound
from siyu.sop.schemas import SopIn

TEMPLATES: dict[str, dict[str, Any]] = {
    # 新好友欢迎旅程: the welcome message (欢迎语) when a customer adds a guide, a 1:1 chat the
    # next day, content on day 3.
    "welcome_journey": {
        "key": "welcome_journey",
        "name": "新好友欢迎旅程",
        "description": "客户添加导购企微后:立即发送欢迎语,次日导购一对一沟通,第3天推送品牌内容。",
        "priority": 90,
        "audience": {"kind": "event", "event": "wecom_contact_added"},
        # the welcome answers the customer's own add and WeCom takes it only within 20 s of
        # the event: no quiet hours for this journey (its later steps have set times anyway)
        "policy": {"quiet_start": "00:00", "quiet_end": "00:00"},
        "goal_event": None,
        "holdout_pct": 0,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "kind": "marketing",
                "valid_hours": 2,
                "content": {
                    "text": "您好,我是您的专属顾问~ 感谢添加!新朋友专享券已放入您的账户,"
                    "点击小程序即可查看。有任何问题随时找我哦。",
                    "content_id": None,
                },
            },
            {"type": "wait", "days": 1, "until": "10:00"},
            {
                "type": "guide_task",
                "task": "chat",
                "title": "新好友一对一沟通",
                "script": "您好,昨天加了您好友还没来得及好好聊~ 想了解一下您平时更喜欢哪类产品,"
                "我帮您留意新品和专属福利。",
                "checklist": ["打招呼并自我介绍", "了解偏好与需求", "打上偏好标签", "邀请进会员群"],
                "due_hours": 24,
                "automatable": True,
            },
            {"type": "wait", "days": 2, "until": "19:30"},
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "给您分享一篇我们的品牌故事和新客必买清单,看看有没有您喜欢的~",
                    "content_id": "brand_story",
                },
                "valid_hours": 48,
            },
            {"type": "exit"},
        ],
    },
    # 7天新会员培育: a week of benefits, product knowledge and a first-order nudge.
    "new_member_nurture": {
        "key": "new_member_nurture",
        "name": "7天新会员培育",
        "description": "新会员入会后7天:权益介绍、产品知识、导购回访、首单券提醒,下单即结束。",
        "priority": 70,
        "audience": {"kind": "tag_entered", "tag": "lifecycle_new"},
        "goal_event": "order_paid",
        "holdout_pct": 5,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "欢迎成为我们的会员!会员可享积分抵现、生日礼和每月8号会员日专属折扣,"
                    "点击查看您的会员权益。",
                    "content_id": "member_benefits",
                },
                "valid_hours": 24,
            },
            {"type": "wait", "days": 2, "until": "12:00"},
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "给您整理了新会员最常问的3个问题和人气单品榜单,看看有没有心动的~",
                    "content_id": "bestsellers",
                },
                "valid_hours": 48,
            },
            {"type": "wait", "days": 2},
            {
                "type": "guide_task",
                "task": "chat",
                "title": "新会员回访",
                "script": "您好~ 入会几天感觉怎么样?首单券还没用的话,这周内下单都可以用哦。",
                "checklist": ["询问使用体验", "提醒首单券", "推荐一款适合的产品"],
                "due_hours": 24,
                "automatable": True,
            },
            {"type": "wait", "days": 2, "until": "20:00"},
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "温馨提醒:您的新会员首单券明天到期,别错过啦~",
                    "content_id": "first_order_coupon",
                },
                "valid_hours": 12,
            },
            {"type": "exit"},
        ],
    },
    # 沉睡客户唤醒: customers entering the dormant lifecycle stage; 10% held out for lift.
    "dormant_winback": {
        "key": "dormant_winback",
        "name": "沉睡客户唤醒",
        "description": "客户进入「休眠」阶段时:专属券唤醒,无回复则导购电话回访;下单即结束,"
        "10%对照组不触达以衡量效果。",
        "priority": 60,
        "audience": {"kind": "tag_entered", "tag": "lifecycle_dormant"},
        "goal_event": "order_paid",
        "holdout_pct": 10,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "好久不见,有点想您了~ 给老朋友准备了一张回归专享券,7天内有效,"
                    "回来看看我们的新品吧。",
                    "content_id": "winback_coupon",
                },
                "valid_hours": 48,
            },
            {"type": "wait", "days": 3},
            {
                "type": "branch",
                "condition": "exists(message_received, last 3d)",
                "then": 4,
                "else": 3,
            },
            {
                "type": "guide_task",
                "task": "call",
                "title": "沉睡客户电话回访",
                "script": "您好,我是您的专属顾问,想问问最近是不是对我们的产品或服务有不满意的地方?",
                "checklist": ["问候并确认身份", "了解流失原因", "告知回归专享券", "记录反馈"],
                "due_hours": 48,
                "automatable": False,
            },
            {"type": "exit"},
        ],
    },
    # 生日关怀: a birthday greeting with a coupon, three days before.
    "birthday": {
        "key": "birthday",
        "name": "生日关怀",
        "description": "会员生日前3天送上生日礼券,生日当天导购送祝福。",
        "priority": 80,
        "audience": {"kind": "segment", "segment": "members"},
        "schedule": {"birthday": {"days_before": 3}},
        "goal_event": None,
        "holdout_pct": 0,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "生日快乐提前说!您的专属生日礼券已到账,生日当月内有效,祝您天天开心~",
                    "content_id": "birthday_coupon",
                    "coupon": "birthday",
                },
                "valid_hours": 48,
            },
            {"type": "wait", "days": 3, "until": "10:00"},
            {
                "type": "guide_task",
                "task": "chat",
                "title": "生日当天祝福",
                "script": "今天是您的生日,祝您生日快乐!记得用生日礼券给自己挑份礼物哦~",
                "checklist": ["发送生日祝福", "提醒生日礼券"],
                "due_hours": 12,
                "automatable": True,
            },
            {"type": "exit"},
        ],
    },
    # 会员日: the 8th of every month at 10:00 (seed 002's 会员日).
    "member_day": {
        "key": "member_day",
        "name": "每月会员日",
        "description": "每月8号10:00向会员推送会员日活动,晚上提醒活动即将结束。",
        "priority": 50,
        "audience": {"kind": "segment", "segment": "members"},
        "schedule": {"cron": "0 10 8 * *"},
        "goal_event": "order_paid",
        "holdout_pct": 0,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_mass",
                "sender": "owner_guide",
                "content": {
                    "text": "今天是会员日!全场会员价再享9折,积分翻倍,限今日,点击进入小程序抢购。",
                    "content_id": "member_day",
                },
                "valid_hours": 8,
            },
            {"type": "wait", "hours": 9},
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "会员日还剩最后3小时,您收藏的商品都在活动价,别错过~",
                    "content_id": "member_day_last_call",
                },
                "valid_hours": 3,
            },
            {"type": "exit"},
        ],
    },
    # 售后关怀与评价邀请: three days after the last paid order, then a CSAT survey.
    "post_purchase_care": {
        "key": "post_purchase_care",
        "name": "售后关怀与评价邀请",
        "description": "最近一次下单3天后:使用关怀与小贴士,次日邀请满意度评价;差评转导购跟进。",
        "priority": 75,
        "audience": {"kind": "event", "event": "order_paid"},
        "schedule": {"relative": {"event": "order_paid", "which": "last", "days": 3}},
        "goal_event": None,
        "holdout_pct": 0,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {
                    "text": "您的宝贝收到了吗?给您准备了使用小贴士,使用中有任何问题随时找我~",
                    "content_id": "care_tips",
                },
                "valid_hours": 48,
            },
            {"type": "wait", "days": 1, "until": "19:00"},
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "kind": "transactional",
                "content": {
                    "text": "想听听您对这次购物的感受,花30秒给我们打个分吧,完成评价送20积分。",
                    "content_id": "csat_survey",
                    "survey": "csat",
                },
                "valid_hours": 72,
            },
            {"type": "wait", "days": 3},
            {
                "type": "branch",
                "condition": "exists(survey_answered, csat <= 3, last 7d)",
                "then": 5,
                "else": 6,
            },
            {
                "type": "guide_task",
                "task": "call",
                "title": "低分评价跟进",
                "script": "您好,看到您对这次购物不太满意,非常抱歉,想具体了解一下情况帮您处理。",
                "checklist": ["致歉并了解问题", "提出解决方案", "记录处理结果"],
                "due_hours": 24,
                "automatable": False,
            },
            {"type": "exit"},
        ],
    },
    # 社群日常排期: morning check-in, noon knowledge, evening order-sharing (seed 002).
    "group_daily": {
        "key": "group_daily",
        "name": "社群每日排期",
        "description": "社群日常SOP:早上签到打卡,中午干货分享,晚上晒单话题;图片+文字。",
        "priority": 30,
        "audience": {"kind": "segment", "segment": "group_members"},
        "schedule": {"cron": "0 8 * * *"},
        "goal_event": None,
        "holdout_pct": 0,
        "steps": [
            {
                "type": "touch",
                "channel": "wecom_group",
                "sender": "brand",
                "content": {
                    "text": "早安!今日签到打卡开始啦,连续签到7天可领小惊喜~ 回复「打卡」参与。",
                    "content_id": "group_morning",
                    "image": True,
                },
                "valid_hours": 2,
            },
            {"type": "wait", "until": "12:00"},
            {
                "type": "touch",
                "channel": "wecom_group",
                "sender": "brand",
                "content": {
                    "text": "午间干货:3个小技巧让您的产品用得更久,有问题在群里@我哦。",
                    "content_id": "group_noon",
                    "image": True,
                },
                "valid_hours": 2,
            },
            {"type": "wait", "until": "20:00"},
            {
                "type": "touch",
                "channel": "wecom_group",
                "sender": "brand",
                "content": {
                    "text": "晚间话题:晒出您最近的购物分享,被选中的群友送红包一个!",
                    "content_id": "group_evening",
                    "image": True,
                },
                "valid_hours": 1,
            },
            {"type": "exit"},
        ],
    },
}

# What a brand needs before a template works as is (segments it names; suggested definitions
# in the tag language of segments).
TEMPLATE_INFO: dict[str, dict[str, Any]] = {
    "welcome_journey": {"needs": {}},
    "new_member_nurture": {"needs": {}},
    "dormant_winback": {"needs": {}},
    "birthday": {
        "needs": {
            "segment": {"key": "members", "name": "全部会员", "definition": 'member_level != ""'}
        }
    },
    "member_day": {
        "needs": {
            "segment": {"key": "members", "name": "全部会员", "definition": 'member_level != ""'}
        }
    },
    "post_purchase_care": {"needs": {}},
    "group_daily": {
        "needs": {
            "segment": {
                "key": "group_members",
                "name": "社群成员",
                "definition": "exists(group_joined)",
            }
        }
    },
}


def template(key: str) -> dict[str, Any]:
    """A deep copy of the template ``key`` (``NotFound`` ``sop.template_not_found``)."""
    if key not in TEMPLATES:
        raise NotFound("sop.template_not_found", template=key, known=", ".join(sorted(TEMPLATES)))
    return copy.deepcopy(TEMPLATES[key])


def from_template(key: str, /, **overrides: Any) -> SopIn:
    """The template ``key`` as a validated definition, top-level fields replaced by
    ``overrides`` (``key``, ``name``, ``audience``, ``priority`` …)."""
    data = {**template(key), **overrides}
    try:
        return SopIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(
            "sop.template_invalid", template=key, reason=f"{where}: {first['msg']}"
        ) from None
