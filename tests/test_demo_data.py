"""The demo's generated data: deterministic files, and shapes within documented ranges."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from siyu.demo.export import export_brand
from siyu.demo.generate import generate


def checksums(folder: Path, seed: int) -> dict[str, str]:
    out = {}
    for brand in generate(customers=600, days=90, seed=seed):
        for path in export_brand(brand, folder / brand.shape.slug):
            out[f"{brand.shape.slug}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = checksums(tmp_path / "a", 7)
    b = checksums(tmp_path / "b", 7)
    c = checksums(tmp_path / "c", 8)
    assert a == b and len(a) == 8
    assert all(a[k] != c[k] for k in a)


def test_crm_export_is_gb18030_with_chinese_headers(tmp_path: Path) -> None:
    brand = generate(customers=200, days=60, seed=1)[0]
    export_brand(brand, tmp_path)
    raw = (tmp_path / "crm_members.csv").read_bytes()
    assert raw.decode("gb18030").startswith("会员号,手机号,姓名")
    assert (tmp_path / "orders.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_shapes_within_documented_ranges() -> None:
    coffee, beauty = generate(customers=20_000, days=180, seed=2026)
    for data, repeat_range, unionid_range in (
        (coffee, (0.3, 0.6), (0.8, 0.98)),
        (beauty, (0.1, 0.3), (0.75, 0.95)),
    ):
        c, o = data.customers, data.orders
        per = np.bincount(o["cust"], minlength=len(c["idx"]))
        buyers = (per > 0).sum()
        repeat = (per >= 2).sum() / buyers
        assert repeat_range[0] <= repeat <= repeat_range[1], repeat
        unionid = (c["unionid"] != "").mean()
        assert unionid_range[0] <= unionid <= unionid_range[1], unionid
        # most customers buy rarely: the median buyer has 1-2 orders, a few have many
        assert np.median(per[per > 0]) <= 2 and per.max() >= 8
        # funnel: each page step keeps fewer sessions than the one before
        pv = data.events["page_viewed"]["path"]
        steps = [
            (pv == p).sum()
            for p in (
                "/pages/index/index",
                "/pages/goods/detail",
                "/pages/cart/cart",
                "/pages/order/checkout",
            )
        ]
        assert steps == sorted(steps, reverse=True) and steps[3] > 0
    # channel mix: coffee sells in the mall and stores, beauty largely on Tmall
    share = lambda d, ch: (d.orders["channel"] == ch).mean()  # noqa: E731
    assert share(coffee, "mini_mall") + share(coffee, "pos") > 0.85
    assert 0.15 < share(beauty, "tmall") < 0.45
