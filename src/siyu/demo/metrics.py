"""The demo brands' channel codes (渠道活码) with what one acquired customer costs, so the
metrics show cost per diverted customer and value against cost per channel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siyu.core.tenancy import SYSTEM
from siyu.metrics.channel_codes import ChannelCodeIn, set_channel_code

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

NAMES = {
    "store_poster": "门店海报",
    "cup_sleeve_qr": "杯套二维码",
    "mini_program_popup": "小程序弹窗",
    "moments_ad_autumn": "朋友圈广告(秋季)",
    "xhs_note_latte": "小红书笔记(拿铁)",
    "sms_reactivation": "短信召回",
    "outbound_call": "外呼",
    "counter_qr": "专柜二维码",
    "tmall_package_card": "天猫包裹卡",
    "xhs_note_serum": "小红书笔记(精华)",
    "moments_ad_618": "朋友圈广告(618)",
    "douyin_live": "抖音直播",
    "sms_member_day": "会员日短信",
}


def setup(db: Session, brand: Brand, shape: Any) -> int:
    """Store the shape's channel codes and costs (idempotent); how many."""
    for code, (_, cost) in shape.channels.items():
        set_channel_code(
            db,
            SYSTEM,
            brand,
            ChannelCodeIn(code=code, name=NAMES.get(code), cost_per_customer_fen=int(cost)),
        )
    return len(shape.channels)
