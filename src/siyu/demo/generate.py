"""The demo brands' customers and their behaviour: a realistic, deterministic private domain.

Everything is drawn from one seeded ``numpy`` generator, column by column (no per-customer
Python loops), so 1M customers take seconds and the same seed gives the same bytes.

The shapes that matter for the product:

- **Acquisition**: customers arrive over the period, more towards the end (a growing private
  domain) and in bursts on campaign days, each through a channel code (渠道活码 ``state``)
  with a cost per acquired customer.
- **Identities**: most are WeCom friends of a guide (external_userid), most of those carry a
  unionid; mini-program users an openid (and the unionid); members a phone and member
  number; POS card holders a card; marketplace buyers a buyer id, joined to the rest only
  through a phone some of the time. A few handsets are shared (device ids).
- **Buying** follows a purchase-and-dropout process (the BG/NBD story): each customer has
  their own purchase rate (gamma-distributed) and after every purchase drops out with their
  own probability (beta-distributed); spend per order varies around a personal mean
  (gamma-gamma). So most buy once and vanish, a few buy every month — value models have
  real signal to find.
- **Channels**: coffee sells in the mini-program mall and in stores; beauty on Tmall, at
  counters and in the mall, with 618 and Double 11 peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEMO_END = date(2026, 11, 20)
PAGES = ("/pages/index/index", "/pages/goods/detail", "/pages/cart/cart", "/pages/order/checkout")


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_fen: int


@dataclass(frozen=True)
class BrandShape:
    slug: str
    share: float  # of all demo customers
    stores: list[str]
    guides_per_store: int
    guide_prefix: str
    channels: dict[str, tuple[float, int]]  # state -> (share, cost per customer in fen)
    id_rates: dict[str, float]
    # purchase process: rate ~ Gamma(r, 1/alpha) per day, dropout ~ Beta(a, b)
    r: float
    alpha: float
    a: float
    b: float
    buyer_share: float  # customers who ever buy
    order_channels: dict[str, float]
    products: list[Product]
    items_per_order: tuple[int, int]
    campaign_days: list[date] = field(default_factory=list)


COFFEE_STORES = [
    f"CF-{c}{i:02d}"
    for c, n in (("SH", 5), ("HZ", 3), ("GZ", 4), ("SZ", 4), ("BJ", 4), ("TJ", 4))
    for i in range(1, n + 1)
]
BEAUTY_STORES = ["BT-SH01", "BT-SH02", "BT-SH03", "BT-CD01", "BT-CD02", "BT-CQ01"]

SHAPES = (
    BrandShape(
        slug="demo-coffee",
        share=0.7,
        stores=COFFEE_STORES,
        guides_per_store=2,
        guide_prefix="cfguide",
        channels={
            "store_poster": (0.38, 150),
            "cup_sleeve_qr": (0.22, 80),
            "mini_program_popup": (0.16, 50),
            "moments_ad_autumn": (0.10, 1800),
            "xhs_note_latte": (0.07, 1200),
            "sms_reactivation": (0.04, 300),
            "outbound_call": (0.03, 900),
        },
        id_rates={
            "wecom": 0.9,
            "unionid": 0.88,
            "mini": 0.65,
            "member": 0.55,
            "pos": 0.45,
            "tmall": 0.06,
            "jd": 0.04,
            "douyin": 0.07,
            "device": 0.3,
        },
        r=0.55,
        alpha=14.0,
        a=0.9,
        b=4.5,
        buyer_share=0.78,
        order_channels={"mini_mall": 0.46, "pos": 0.44, "tmall": 0.03, "jd": 0.03, "douyin": 0.04},
        products=[
            Product("CF-LATTE", "生椰拿铁", "咖啡", 3200),
            Product("CF-AMER", "美式咖啡", "咖啡", 2600),
            Product("CF-FLAT", "澳白", "咖啡", 3400),
            Product("CF-CROIS", "黄油可颂", "烘焙", 1800),
            Product("CF-SAND", "鸡肉三明治", "轻食", 2800),
            Product("CF-BEANS", "深烘咖啡豆 250g", "咖啡豆", 8800),
        ],
        items_per_order=(1, 3),
    ),
    BrandShape(
        slug="demo-beauty",
        share=0.3,
        stores=BEAUTY_STORES,
        guides_per_store=3,
        guide_prefix="btba",
        channels={
            "counter_qr": (0.34, 600),
            "tmall_package_card": (0.26, 900),
            "xhs_note_serum": (0.16, 3500),
            "moments_ad_618": (0.10, 4800),
            "douyin_live": (0.09, 2600),
            "sms_member_day": (0.05, 400),
        },
        id_rates={
            "wecom": 0.92,
            "unionid": 0.85,
            "mini": 0.5,
            "member": 0.6,
            "pos": 0.2,
            "tmall": 0.5,
            "jd": 0.15,
            "douyin": 0.2,
            "device": 0.25,
        },
        r=0.4,
        alpha=55.0,
        a=0.7,
        b=2.6,
        buyer_share=0.7,
        order_channels={"tmall": 0.36, "mini_mall": 0.26, "pos": 0.2, "jd": 0.09, "douyin": 0.09},
        products=[
            Product("BT-SERUM", "修护精华 30ml", "精华", 68000),
            Product("BT-CREAM", "保湿面霜 50g", "面霜", 52000),
            Product("BT-LIP", "丝绒口红", "彩妆", 29000),
            Product("BT-MASK", "补水面膜 5 片", "面膜", 18000),
            Product("BT-TONER", "爽肤水 150ml", "水乳", 26000),
        ],
        items_per_order=(1, 2),
        campaign_days=[date(2026, 6, 18), date(2026, 11, 11)],
    ),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
GIVEN = [
    "子涵",
    "欣怡",
    "梓轩",
    "浩然",
    "雨桐",
    "思远",
    "一诺",
    "若汐",
    "宇航",
    "可馨",
    "俊杰",
    "雅琪",
    "嘉豪",
    "诗涵",
    "明轩",
    "佳怡",
    "晨阳",
    "静怡",
    "文博",
    "梦瑶",
]
CITIES = {
    "SH": "上海",
    "HZ": "杭州",
    "GZ": "广州",
    "SZ": "深圳",
    "BJ": "北京",
    "TJ": "天津",
    "CD": "成都",
    "CQ": "重庆",
}


@dataclass
class BrandData:
    """One brand's generated facts, as parallel numpy columns."""

    shape: BrandShape
    start: datetime
    customers: dict[str, Any]  # column -> array (one row per customer)
    orders: dict[str, Any]  # one row per order
    items: dict[str, Any]  # one row per order item
    events: dict[str, dict[str, Any]]  # event type -> columns


def _choice(rng: np.random.Generator, options: dict[str, float], n: int) -> NDArray[Any]:
    import numpy as np

    names = list(options)
    p = np.array([options[k] for k in names], dtype=float)
    return np.array(names)[rng.choice(len(names), size=n, p=p / p.sum())]


def _acquisition_times(
    rng: np.random.Generator, shape: BrandShape, n: int, start: datetime, days: int
) -> NDArray[np.float64]:
    """Seconds since ``start``: growing over the period, with bursts on campaign days."""
    import numpy as np

    base = days * np.sqrt(rng.random(n))  # density rising linearly towards the end
    burst = rng.random(n) < 0.12
    campaign = [
        (d - start.date()).days for d in shape.campaign_days if 0 <= (d - start.date()).days < days
    ]
    if campaign:
        picks = np.array(campaign)[rng.integers(0, len(campaign), size=n)]
        base = np.where(burst, picks + rng.random(n) * 3 - 1, base)
    base = np.clip(base, 0, days - 1e-3)
    # people add guides in the daytime: shift within the day towards 10:00–22:00 local
    day = np.floor(base)
    local_hour = 10 + rng.beta(2, 2, n) * 12
    out: NDArray[np.float64] = (day * 86400 + (local_hour - 8) * 3600).astype(np.float64)
    return out


def _purchases(
    rng: np.random.Generator, shape: BrandShape, acq: NDArray[np.float64], horizon: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Purchase-and-dropout: returns (customer index, time in seconds) of every purchase."""
    import numpy as np

    n = len(acq)
    rate = rng.gamma(shape.r, 1 / shape.alpha, n) / 86400  # purchases per second
    dropout = rng.beta(shape.a, shape.b, n)
    buyer = rng.random(n) < shape.buyer_share
    # the first purchase comes soon after joining (often the same day: a welcome coupon)
    t = acq + rng.exponential(3 * 86400, n)
    alive = buyer & (t < horizon)
    who: list[NDArray[np.int64]] = []
    when: list[NDArray[np.float64]] = []
    while alive.any():
        idx = np.flatnonzero(alive)
        who.append(idx)
        when.append(t[idx])
        drop = rng.random(len(idx)) < dropout[idx]
        gap = rng.exponential(1.0, len(idx)) / np.maximum(rate[idx], 1e-12)
        t[idx] = t[idx] + gap
        alive[idx] = ~drop & (t[idx] < horizon)
    if not who:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    cust = np.concatenate(who)
    times = np.concatenate(when)
    order = np.lexsort((times, cust))
    return cust[order], times[order]


_HEX = b"0123456789abcdef"


def _ascii(prefix: str, digits: list[NDArray[np.uint64]], base: int) -> NDArray[Any]:
    """``prefix`` + one character per digit column, as a numpy unicode array (no loops)."""
    import numpy as np

    n = len(digits[0]) if digits else 0
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    table = np.frombuffer(_HEX[:base], dtype=np.uint8)
    buf = np.empty((n, len(head) + len(digits)), dtype=np.uint8)
    buf[:, : len(head)] = head
    for k, d in enumerate(digits):
        buf[:, len(head) + k] = table[d.astype(np.intp)]
    out: NDArray[Any] = buf.view(f"S{buf.shape[1]}").ravel().astype(f"U{buf.shape[1]}")
    return out


def _ids(prefix: str, idx: NDArray[np.int64], salt: int, width: int = 15) -> NDArray[Any]:
    """Deterministic opaque ids like WeCom's: ``prefix`` + the hex of a mixed integer.

    The mixing is a bijection on 60 bits, so distinct ``idx`` give distinct ids; at least
    15 hex digits are kept (all 60 bits), zero-padded to ``width``.
    """
    import numpy as np

    mixed = (idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)) & np.uint64(
        (1 << 60) - 1
    )
    width = max(width, 15)
    digits = [(mixed >> np.uint64(4 * k)) & np.uint64(15) for k in range(width - 1, -1, -1)]
    return _ascii(prefix, digits, 16)


def _decimal(prefix: str, values: NDArray[np.int64], width: int) -> NDArray[Any]:
    """``prefix`` + ``values`` zero-padded to ``width`` decimal digits (non-negative)."""
    import numpy as np

    v = values.astype(np.uint64)
    digits = [(v // np.uint64(10**k)) % np.uint64(10) for k in range(width - 1, -1, -1)]
    return _ascii(prefix, digits, 10)


def generate_brand(
    shape: BrandShape,
    customers: int,
    days: int,
    seed: int,
    end: date = DEMO_END,
    activity: float = 1.0,
) -> BrandData:
    """One brand's customers and behaviour. ``activity`` scales the engagement (page views,
    messages, check-ins) per customer: 1.0 is the demo's volume, about 3 gives ≥ 20 facts
    per customer (the benchmark's load)."""
    import numpy as np

    rng = np.random.default_rng([seed, sum(map(ord, shape.slug))])
    n = customers
    start = datetime.combine(end - timedelta(days=days), datetime.min.time(), tzinfo=UTC)
    horizon = float(days * 86400)
    idx = np.arange(n, dtype=np.int64)
    salt = sum(map(ord, shape.slug)) * 7919 + seed
    rates = shape.id_rates
    acq = _acquisition_times(rng, shape, n, start, days)
    state = _choice(rng, {k: v[0] for k, v in shape.channels.items()}, n)
    store_i = rng.integers(0, len(shape.stores), n)
    store = np.array(shape.stores)[store_i]
    guide_no = store_i * shape.guides_per_store + rng.integers(0, shape.guides_per_store, n) + 1
    guides = len(shape.stores) * shape.guides_per_store
    owner = np.array([f"{shape.guide_prefix}{g:03d}" for g in range(1, guides + 1)])[guide_no - 1]
    has_wecom = rng.random(n) < rates["wecom"]
    has_mini = rng.random(n) < rates["mini"]
    has_union = has_mini | (has_wecom & (rng.random(n) < rates["unionid"]))
    member = rng.random(n) < rates["member"]
    # valid mainland mobiles 13x–19x, distinct per customer
    phone_no = 13_000_000_000 + (idx * 7_919 + salt * 104_729) % 7_000_000_000
    marketplace = {m: rng.random(n) < rates[m] for m in ("tmall", "jd", "douyin")}
    pos = rng.random(n) < rates["pos"]
    device = rng.random(n) < rates["device"]
    device_id = _ids("dev-", idx, salt + 5, 10)
    # about 1% of handsets are shared within a family: point them at a neighbour's device
    shared = device & (rng.random(n) < 0.03)
    device_id = np.where(shared, np.roll(device_id, 1), device_id)
    gender = _choice(
        rng,
        {
            "female": 0.58 if shape.slug == "demo-coffee" else 0.86,
            "male": 0.38 if shape.slug == "demo-coffee" else 0.12,
            "unknown": 0.04 if shape.slug == "demo-coffee" else 0.02,
        },
        n,
    )
    names = np.array([s + g for s in SURNAMES for g in GIVEN])
    name = names[rng.integers(0, len(SURNAMES), n) * len(GIVEN) + rng.integers(0, len(GIVEN), n)]
    birth_days = rng.integers(0, 365, n)
    birth_year = rng.integers(1968, 2006, n)
    city = np.array([CITIES[s.split("-")[1][:2]] for s in shape.stores])[store_i]
    deleted = has_wecom & (rng.random(n) < 0.08)
    delete_at = acq + rng.exponential(25 * 86400, n)
    deleted &= delete_at < horizon
    customers_cols = {
        "idx": idx,
        "acq_s": acq,
        "state": state,
        "store": store,
        "owner": owner,
        "external_userid": np.where(has_wecom, _ids("wm", idx, salt, 20), ""),
        "unionid": np.where(has_union, _ids("oU", idx, salt + 1, 24), ""),
        "mini_openid": np.where(has_mini, _ids("oM", idx, salt + 2, 24), ""),
        "phone": np.where(member | (rng.random(n) < 0.1), _decimal("", phone_no, 11), ""),
        "member_no": np.where(member, _decimal("M", idx + 100000, 8), ""),
        "pos_card": np.where(pos, _ids("C", idx, salt + 3, 10), ""),
        "tmall_buyer": np.where(marketplace["tmall"], _ids("tb_", idx, salt + 11, 10), ""),
        "jd_buyer": np.where(marketplace["jd"], _ids("jd_", idx, salt + 12, 10), ""),
        "douyin_buyer": np.where(marketplace["douyin"], _ids("dy_", idx, salt + 13, 10), ""),
        "device_id": np.where(device, device_id, ""),
        "name": name,
        "gender": gender,
        "city": city,
        # every (year, day) once as text, then picked per customer by index
        "birthday": np.array(
            [
                f"{y}-{(d // 31) % 12 + 1:02d}-{d % 28 + 1:02d}"
                for y in range(1968, 2006)
                for d in range(365)
            ]
        )[(birth_year - 1968) * 365 + birth_days],
        "store_i": store_i,
        "deleted": deleted,
        "delete_s": np.where(deleted, delete_at, 0.0),
        "deleted_by_staff": deleted & (rng.random(n) < 0.1),
    }
    cust, t = _purchases(rng, shape, acq, horizon)
    # which channel: marketplaces only for customers with that buyer id; else mall or POS
    channel = _choice(rng, shape.order_channels, len(cust))
    for m in ("tmall", "jd", "douyin"):
        bad = (channel == m) & ~marketplace[m][cust]
        channel = np.where(bad, np.where(has_mini[cust], "mini_mall", "pos"), channel)
    # beauty shoppers without marketplace ids still buy; coffee POS needs no card
    personal_mean = rng.gamma(6.0, 1 / 5.0, n)  # spend multiplier around 1.2
    k = rng.integers(shape.items_per_order[0], shape.items_per_order[1] + 1, len(cust))
    n_items = int(k.sum())
    item_order = np.repeat(np.arange(len(cust)), k)
    prod = rng.integers(0, len(shape.products), n_items)
    qty = 1 + (rng.random(n_items) < 0.15 * personal_mean[cust][item_order]).astype(np.int64)
    price = np.array([p.price_fen for p in shape.products])[prod]
    amount = price * qty
    total = np.bincount(item_order, weights=amount, minlength=len(cust)).astype(np.int64)
    coupon = rng.random(len(cust)) < 0.22
    discount = np.where(
        coupon, np.minimum(total // 10 * 2, 3000 if shape.slug == "demo-coffee" else 10000), 0
    )
    refunded = rng.random(len(cust)) < 0.03
    orders_cols = {
        "cust": cust,
        "t_s": t,
        "channel": channel,
        "total": total,
        "discount": discount,
        "paid": total - discount,
        "coupon": coupon,
        "refunded": refunded,
        "refund_s": t + rng.exponential(3 * 86400, len(cust)),
        "store": store[cust],
        "order_id": _ids("SO", np.arange(len(cust), dtype=np.int64), salt + 21, 14),
    }
    items_cols = {
        "order": item_order,
        "sku": np.array([p.sku for p in shape.products])[prod],
        "name": np.array([p.name for p in shape.products])[prod],
        "category": np.array([p.category for p in shape.products])[prod],
        "qty": qty,
        "unit_price": price,
        "amount": amount,
    }
    events = _engagement(
        rng, shape, customers_cols, orders_cols, horizon, has_mini, has_wecom, activity
    )
    return BrandData(
        shape=shape,
        start=start,
        customers=customers_cols,
        orders=orders_cols,
        items=items_cols,
        events=events,
    )


def _engagement(
    rng: np.random.Generator,
    shape: BrandShape,
    c: dict[str, Any],
    o: dict[str, Any],
    horizon: float,
    has_mini: NDArray[np.bool_],
    has_wecom: NDArray[np.bool_],
    activity: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """Page-view funnels, groups, messages, coupons, check-ins, surveys and referrals."""
    import numpy as np

    n = len(c["idx"])
    acq = c["acq_s"]
    out: dict[str, dict[str, Any]] = {}
    # mini-program sessions: home -> product (60%) -> cart (35% of those) -> checkout (50%)
    sessions = rng.poisson(2.5 * activity, n) * has_mini
    s_cust = np.repeat(np.arange(n), sessions)
    s_time = acq[s_cust] + rng.random(len(s_cust)) * (horizon - acq[s_cust])
    depth = np.ones(len(s_cust), dtype=np.int64)
    depth += rng.random(len(s_cust)) < 0.6
    depth += (depth == 2) & (rng.random(len(s_cust)) < 0.35)
    depth += (depth == 3) & (rng.random(len(s_cust)) < 0.5)
    pv_sess = np.repeat(np.arange(len(s_cust)), depth)
    step = np.arange(len(pv_sess)) - np.repeat(np.cumsum(depth) - depth, depth)
    out["page_viewed"] = {
        "cust": s_cust[pv_sess],
        "t_s": s_time[pv_sess] + step * 40.0,
        "step": step.astype(np.int8),  # index into PAGES
        "session": pv_sess,
    }
    # groups: a third join their store's group; some leave
    joined = has_wecom & (rng.random(n) < 0.35)
    j = np.flatnonzero(joined)
    j_time = acq[j] + rng.exponential(5 * 86400, len(j))
    keep = j_time < horizon
    j, j_time = j[keep], j_time[keep]
    chats = np.array(["wr" + s.replace("-", "") for s in shape.stores])
    chat = chats[c["store_i"][j]]
    out["group_joined"] = {"cust": j, "t_s": j_time, "chat_id": chat}
    left = rng.random(len(j)) < 0.12
    l_time = j_time + rng.exponential(30 * 86400, len(j))
    left &= l_time < horizon
    out["group_left"] = {"cust": j[left], "t_s": l_time[left], "chat_id": chat[left]}
    # messages with the guide
    msgs = rng.poisson(3.0 * activity, n) * has_wecom
    m_cust = np.repeat(np.arange(n), msgs)
    m_time = acq[m_cust] + rng.random(len(m_cust)) * (horizon - acq[m_cust])
    received = rng.random(len(m_cust)) < 0.45
    out["message_received"] = {"cust": m_cust[received], "t_s": m_time[received]}
    out["message_sent"] = {"cust": m_cust[~received], "t_s": m_time[~received]}
    # a welcome coupon for 40% of new friends; redeemed with coupon orders
    issued = has_wecom & (rng.random(n) < 0.4)
    out["coupon_issued"] = {"cust": np.flatnonzero(issued), "t_s": acq[issued] + 60}
    red = np.flatnonzero(o["coupon"])
    out["coupon_redeemed"] = {"cust": o["cust"][red], "t_s": o["t_s"][red], "order": red}
    # check-ins by group members
    ci = rng.poisson(4.0 * activity, len(j)) * (rng.random(len(j)) < 0.5)
    ci_cust = np.repeat(j, ci)
    ci_time = np.repeat(j_time, ci) + rng.random(len(ci_cust)) * (horizon - np.repeat(j_time, ci))
    out["checked_in"] = {"cust": ci_cust, "t_s": ci_time}
    # CSAT answered after 5% of orders (a usual response rate), mostly 4-5
    sv = np.flatnonzero(rng.random(len(o["cust"])) < 0.05)
    score = rng.choice([1, 2, 3, 4, 5], size=len(sv), p=[0.03, 0.05, 0.12, 0.35, 0.45])
    sv_time = o["t_s"][sv] + 3600 * 6
    keep = sv_time < horizon
    out["survey_answered"] = {
        "cust": o["cust"][sv][keep],
        "t_s": sv_time[keep],
        "csat": score[keep],
        "order": sv[keep],
    }
    # referrals: 5% of customers were brought by an earlier customer with a WeCom identity
    referee = np.flatnonzero(rng.random(n) < 0.05)
    referrer = rng.integers(0, n, len(referee))
    ok = (acq[referrer] < acq[referee]) & has_wecom[referrer] & (referrer != referee)
    out["referral"] = {"cust": referee[ok], "t_s": acq[referee[ok]], "referrer": referrer[ok]}
    return out


def generate(
    customers: int = 20_000,
    days: int = 180,
    seed: int = 2026,
    end: date = DEMO_END,
    activity: float = 1.0,
) -> list[BrandData]:
    """Both demo brands, splitting ``customers`` by each brand's share."""
    return [generate_brand(shape, n, days, seed, end, activity) for shape, n in split(customers)]


def split(customers: int) -> list[tuple[BrandShape, int]]:
    """Customers per demo brand (by each brand's share, at least 10)."""
    return [(shape, max(10, round(customers * shape.share))) for shape in SHAPES]
