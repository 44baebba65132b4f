"""The demo's generated data: deterministic files, and shapes within documented ranges."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from siyu.demo.export import XLSX_TIME, export_brand
from siyu.demo.generate import PAGES, generate


def checksums(folder: Path, seed: int, chunk_rows: int = 2_000_000) -> dict[str, str]:
    out = {}
    for brand in generate(customers=600, days=90, seed=seed):
        for path in export_brand(brand, folder / brand.shape.slug, chunk_rows=chunk_rows):
            out[f"{brand.shape.slug}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_same_seed_same_bytes_other_seed_other_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = checksums(tmp_path / "a", 7)
    # a day later (zip entries and the XLSX's document properties would carry the clock)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400 + 3_600)
    b = checksums(tmp_path / "b", 7)
    monkeypatch.undo()
    c = checksums(tmp_path / "c", 8)
    assert a == b and len(a) == 12
    assert {k.split("/")[1] for k in a} == {
        "crm_members.csv",
        "wecom_contacts.jsonl",
        "orders.csv",
        "events.csv",
        "csat_survey.xlsx",
        "referrals.jsonl",
    }
    assert all(a[k] != c[k] for k in a)


def test_xlsx_carries_fixed_times_and_imports_as_rows(tmp_path: Path) -> None:
    from siyu.ingest.files import read_table

    brand = generate(customers=300, days=60, seed=3)[0]
    export_brand(brand, tmp_path)
    path = tmp_path / "csat_survey.xlsx"
    with zipfile.ZipFile(path) as z:
        assert {i.date_time for i in z.infolist()} == {XLSX_TIME.timetuple()[:6]}
        core = z.read("docProps/core.xml").decode()
    assert core.count("2026-11-20T00:00:00Z") == 2  # created and modified
    raw = read_table(path, path.read_bytes())
    assert raw.table.column_names[:2] == ["序号", "提交答卷时间"]
    assert raw.table.num_rows > 0 and raw.lines[0] == 2


def test_big_event_exports_come_in_parts(tmp_path: Path) -> None:
    brand = generate(customers=300, days=60, seed=3)[0]
    whole = export_brand(brand, tmp_path / "whole")
    parts = export_brand(brand, tmp_path / "parts", chunk_rows=500)
    one = (tmp_path / "whole" / "events.csv").read_text().splitlines()
    names = [p.name for p in parts if p.name.startswith("events")]
    assert len(names) > 2 and names[0] == "events-001.csv"
    lines: list[str] = []
    for name in names:
        text = (tmp_path / "parts" / name).read_text().splitlines()
        assert text[0] == one[0] and len(text) <= 501
        lines += text[1:]
    assert lines == one[1:]
    # exporting again into the same folder as one file leaves no stale parts behind
    export_brand(brand, tmp_path / "parts")
    assert sorted(p.name for p in (tmp_path / "parts").glob("events*.csv")) == ["events.csv"]
    assert len(whole) == 6


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
        pv = np.array(PAGES)[data.events["page_viewed"]["step"]]
        steps = [(pv == p).sum() for p in PAGES]
        assert steps == sorted(steps, reverse=True) and steps[3] > 0
    # channel mix: coffee sells in the mall and stores, beauty largely on Tmall
    share = lambda d, ch: (d.orders["channel"] == ch).mean()  # noqa: E731
    assert share(coffee, "mini_mall") + share(coffee, "pos") > 0.85
    assert 0.15 < share(beauty, "tmall") < 0.45


def test_activity_scales_engagement_to_benchmark_volume() -> None:
    def per_customer(activity: float) -> float:
        facts = 0
        people = 0
        for d in generate(customers=4_000, days=180, seed=5, activity=activity):
            facts += sum(len(e["cust"]) for e in d.events.values()) + len(d.orders["cust"])
            people += len(d.customers["idx"])
        return facts / people

    base, busy = per_customer(1.0), per_customer(3.0)
    assert 6 < base < 12 and busy >= 20


def test_opaque_ids_are_distinct_and_fixed_width() -> None:
    coffee = generate(customers=20_000, days=30, seed=11)[0].customers
    for col in ("external_userid", "unionid", "mini_openid", "pos_card", "phone", "member_no"):
        values = coffee[col][coffee[col] != ""]
        assert len(set(values.tolist())) == len(values), col
        assert len({len(v) for v in values.tolist()}) == 1, col
    phones = [p for p in coffee["phone"].tolist() if p]
    assert all(p[:2] in {"13", "14", "15", "16", "17", "18", "19"} for p in phones)
