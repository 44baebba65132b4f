"""The files a demo brand hands over, written from the generated data, and their import.

What a brand's team would export from its own systems, in the encodings they really come in:

- ``crm_members.csv`` — the CRM member list, GB18030 (Excel in China), Chinese headers,
  registration times as ``2026/05/24 10:10:00`` in brand-local time;
- ``wecom_contacts.jsonl`` — WeCom add/delete callbacks with the channel ``state``, UTC;
- ``orders.csv`` — all-channel order lines (mall, POS, Tmall, JD, Douyin), UTF-8 with BOM;
- ``events.csv`` — the mini-program and WeCom activity export: page views, groups,
  messages, coupons and check-ins, UTF-8, Chinese headers, brand-local times. Above
  ``chunk_rows`` rows it is split into ``events-001.csv``, ``events-002.csv`` … (a big
  export comes in parts; each part is imported and committed on its own);
- ``csat_survey.xlsx`` — the after-order satisfaction survey as the survey tool (问卷星)
  exports it: its own headers (``提交答卷时间``, ``满意度评分``), read through a saved
  source mapping;
- ``referrals.jsonl`` — who brought whom (both named by identifier lists).

Every file is written column-wise (``pyarrow``, no per-row Python), so 1M customers and
20M events export in seconds; the same data gives the same bytes (the XLSX too: its
document dates and zip entry times are fixed). :func:`import_brand` feeds exactly these
files through the real ingestion path (``ingest.actions.import_file``).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siyu.demo.generate import DEMO_END, PAGES, BrandData

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from numpy.typing import NDArray

CHANNEL_ZH = {
    "mini_mall": "小程序商城",
    "pos": "门店",
    "tmall": "天猫",
    "jd": "京东",
    "douyin": "抖音",
}
GENDER_ZH = {"male": "男", "female": "女", "unknown": "未知"}
# The demo brands keep the default time zone (Asia/Shanghai: UTC+8 all year, no DST), so
# brand-local wall-clock times are UTC + 8 h.
LOCAL_OFFSET_S = 8 * 3600
# Fixed document and zip-entry times of the XLSX, so the same data gives the same bytes.
XLSX_TIME = datetime.combine(DEMO_END, datetime.min.time())
EVENTS_CHUNK_ROWS = 2_000_000


@dataclass(frozen=True)
class SourceFile:
    """How one kind of exported file is imported."""

    pattern: str  # glob within the brand folder
    kind: str  # import kind
    source: str  # source name (saved mapping, lineage)
    mapping: dict[str, Any] | None = field(default=None)


SURVEY_MAPPING: dict[str, Any] = {
    "columns": {
        "提交答卷时间": "occurred_at",
        "满意度评分": "csat",
        "外部联系人ID": "external_userid",
        "小程序openid": "mini_openid",
        "手机号": "phone",
    },
    "defaults": {"event_type": "survey_answered", "survey_id": "csat-after-order"},
}
EVENTS_MAPPING: dict[str, Any] = {"columns": {"券面额(元)": "value_fen", "订单号": "order_id"}}
# Import order: the CRM first (profiles and owners), then everything that names customers.
SOURCES = (
    SourceFile("crm_members.csv", "customers", "crm_members"),
    SourceFile("wecom_contacts.jsonl", "events", "wecom_contacts"),
    SourceFile("orders.csv", "orders", "orders"),
    SourceFile("events*.csv", "events", "events", EVENTS_MAPPING),
    SourceFile("csat_survey.xlsx", "events", "csat_survey", SURVEY_MAPPING),
    SourceFile("referrals.jsonl", "events", "referrals"),
)


# ---------------------------------------------------------------- column helpers


def _s(values: Any) -> pa.Array:
    """A numpy (unicode) column as an Arrow string array."""
    import pyarrow as pa

    return pa.array(values, pa.string())


def _seconds(start: datetime, t: NDArray[np.float64], offset: int = 0) -> NDArray[np.int64]:
    """Whole seconds since the epoch (rounded as ``round`` does), plus ``offset``."""
    import numpy as np

    out: NDArray[np.int64] = np.round(t).astype(np.int64) + int(start.timestamp()) + offset
    return out


def _local_text(start: datetime, t: NDArray[np.float64], sep: str = "-") -> pa.Array:
    """Brand-local wall-clock time as ``2026-05-24 10:10:00`` (``sep`` between date parts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = pa.array(_seconds(start, t, LOCAL_OFFSET_S), pa.timestamp("s"))
    text = pc.cast(stamps, pa.string())
    return text if sep == "-" else pc.replace_substring(text, "-", sep)


def _utc_iso(start: datetime, t: NDArray[np.float64]) -> pa.Array:
    """``2026-05-24T02:10:00+00:00``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(pa.array(_seconds(start, t), pa.timestamp("s")), pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T"), "+00:00", "")


def _yuan(fen: NDArray[np.int64]) -> pa.Array:
    """Integer fen (≥ 0) as yuan text with two decimals, ``3200`` → ``32.00``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    whole = pc.cast(pa.array(fen // 100), pa.string())
    cents = pc.utf8_lpad(pc.cast(pa.array(fen % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole, cents, ".")


def _numbered(prefix: str, k: NDArray[np.int64]) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(k), pa.string()), "")


def _const(value: str, n: int) -> pa.Array:
    import pyarrow as pa

    return pa.repeat(pa.scalar(value, pa.string()), n)


def _write_csv(path: Path, headers: list[str], tables: Iterator[pa.Table], bom: bool) -> int:
    """Header line + rows, unquoted (the writer refuses a value that would need quotes)."""
    import pyarrow.csv as pcsv

    rows = 0
    with path.open("wb") as fh:
        fh.write(("\ufeff" if bom else "").encode("utf-8") + (",".join(headers) + "\n").encode())
        for table in tables:
            pcsv.write_csv(table, fh, pcsv.WriteOptions(include_header=False, quoting_style="none"))
            rows += table.num_rows
    return rows


def _table(headers: list[str], cols: list[pa.Array]) -> pa.Table:
    import pyarrow as pa

    return pa.table(dict(zip(headers, cols, strict=True)))


# ---------------------------------------------------------------- the files


CRM_HEADERS = [
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


def _crm(data: BrandData, path: Path) -> None:
    import numpy as np
    import pyarrow.csv as pcsv

    c = data.customers
    rows = np.flatnonzero(c["member_no"] != "")
    gender = np.array([GENDER_ZH[g] for g in ("male", "female", "unknown")])
    gcode = np.select([c["gender"][rows] == "male", c["gender"][rows] == "female"], [0, 1], 2)
    cols = [
        _s(c["member_no"][rows]),
        _s(c["phone"][rows]),
        _s(c["name"][rows]),
        _s(gender[gcode]),
        _s(c["birthday"][rows]),
        _s(c["city"][rows]),
        _s(c["store"][rows]),
        _s(c["owner"][rows]),
        _s(c["unionid"][rows]),
        _local_text(data.start, c["acq_s"][rows] + 600, sep="/"),
    ]
    buf = io.BytesIO()
    pcsv.write_csv(
        _table(CRM_HEADERS, cols),
        buf,
        pcsv.WriteOptions(include_header=False, quoting_style="none"),
    )
    text = ",".join(CRM_HEADERS) + "\n" + buf.getvalue().decode("utf-8")
    path.write_bytes(text.encode("gb18030"))


def _jsonl(path: Path, lines: pa.Array) -> None:
    """Write non-null JSON texts, one a line, straight from the Arrow buffers."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = pc.binary_join_element_wise(lines, "\n", "").cast(pa.large_string())
    assert joined.null_count == 0
    _, offsets, body = joined.buffers()
    at = np.frombuffer(offsets, dtype=np.int64)[joined.offset : joined.offset + len(joined) + 1]
    with path.open("wb") as fh:
        if len(joined):
            fh.write(memoryview(body)[int(at[0]) : int(at[-1])])


def _wecom(data: BrandData, path: Path) -> None:
    """Add and delete callbacks as JSON lines, assembled column-wise (ASCII-safe values)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    c, slug, start = data.customers, data.shape.slug, data.start
    rows = np.flatnonzero(c["external_userid"] != "")
    ext = _s(c["external_userid"][rows])
    union = c["unionid"][rows]
    has_union = pa.array(union != "")
    union_a = _s(union)
    staff = _s(c["owner"][rows])
    j = pc.binary_join_element_wise
    ext_id = j('{"type": "external_userid", "value": "', ext, '"}', "")
    union_id = j('{"type": "unionid", "value": "', union_a, '"}', "")
    ids = pc.if_else(has_union, j("[", ext_id, ", ", union_id, "]", ""), j("[", ext_id, "]", ""))
    props = j(
        '{"staff_userid": "',
        staff,
        '", "external_userid": "',
        ext,
        '", "state": "',
        _s(c["state"][rows]),
        pc.if_else(has_union, j('", "unionid": "', union_a, '"}', ""), '"}'),
        "",
    )
    added = j(
        '{"event_id": "',
        _numbered(f"{slug}-add-", rows),
        '", "event_type": "wecom_contact_added", "occurred_at": "',
        _utc_iso(start, c["acq_s"][rows]),
        '", "source": "wecom", "identifiers": ',
        ids,
        ', "properties": ',
        props,
        "}",
        "",
    )
    gone = np.flatnonzero(c["deleted"][rows])
    who = rows[gone]
    kind = np.where(
        c["deleted_by_staff"][who],
        "wecom_contact_deleted_by_staff",
        "wecom_contact_deleted_by_customer",
    )
    take = pa.array(gone)
    deleted = j(
        '{"event_id": "',
        _numbered(f"{slug}-del-", who),
        '", "event_type": "',
        _s(kind),
        '", "occurred_at": "',
        _utc_iso(start, c["delete_s"][who]),
        '", "source": "wecom", "identifiers": [',
        ext_id.take(take),
        '], "properties": {"staff_userid": "',
        staff.take(take),
        '", "external_userid": "',
        ext.take(take),
        '"}}',
        "",
    )
    # each customer's add, then their deletion (as the callbacks arrive per person)
    order = np.argsort(np.concatenate([rows * 2, who * 2 + 1]), kind="stable")
    both = pa.concat_arrays([added, deleted]).take(pa.array(order))
    _jsonl(path, both)


ORDER_HEADERS = [
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


def _orders(data: BrandData, path: Path, block: int = 1_000_000) -> None:
    import numpy as np
    import pyarrow as pa

    c, o, it, start = data.customers, data.orders, data.items, data.start
    channel_zh = np.array([CHANNEL_ZH[k] for k in CHANNEL_ZH])
    channel_code = {k: i for i, k in enumerate(CHANNEL_ZH)}

    def blocks() -> Iterator[pa.Table]:
        for lo in range(0, max(len(it["order"]), 1), block):
            k = it["order"][lo : lo + block]
            if not len(k):
                return
            i = o["cust"][k]
            ch = o["channel"][k]
            code = np.zeros(len(k), dtype=np.int64)
            for name, v in channel_code.items():
                code[ch == name] = v
            pos, mall, tmall = ch == "pos", ch == "mini_mall", ch == "tmall"
            cols = [
                _s(o["order_id"][k]),
                _local_text(start, o["t_s"][k]),
                _s(channel_zh[code]),
                _yuan(o["paid"][k]),
                _yuan(o["total"][k]),
                _yuan(o["discount"][k]),
                _s(np.where(pos, o["store"][k], "")),
                _s(np.where(pos | tmall | mall, c["phone"][i], "")),
                _s(np.where(mall, c["mini_openid"][i], "")),
                _s(np.where(pos, c["pos_card"][i], "")),
                _s(np.where(tmall, c["tmall_buyer"][i], "")),
                _s(np.where(ch == "jd", c["jd_buyer"][i], "")),
                _s(np.where(ch == "douyin", c["douyin_buyer"][i], "")),
                _s(it["sku"][lo : lo + block]),
                _s(it["name"][lo : lo + block]),
                _s(it["category"][lo : lo + block]),
                pa.array(it["qty"][lo : lo + block]),
                _yuan(it["unit_price"][lo : lo + block]),
                _yuan(it["amount"][lo : lo + block]),
            ]
            yield _table(ORDER_HEADERS, cols)

    _write_csv(path, ORDER_HEADERS, blocks(), bom=True)


EVENT_HEADERS = [
    "事件ID",
    "事件类型",
    "发生时间",
    "外部联系人ID",
    "unionid",
    "小程序openid",
    "页面路径",
    "群ID",
    "员工账号",
    "msg_type",
    "券码",
    "活动",
    "券面额(元)",
    "订单号",
    "place",
]
# event type → (identifier columns it carries, property header → value source)
_EVENT_IDS = {
    "page_viewed": ("mini_openid", "unionid"),
    "group_joined": ("external_userid",),
    "group_left": ("external_userid",),
    "message_received": ("external_userid",),
    "message_sent": ("external_userid",),
    "coupon_issued": ("external_userid",),
    "coupon_redeemed": ("external_userid",),
    "checked_in": ("external_userid",),
}
_ID_HEADER = {
    "external_userid": "外部联系人ID",
    "unionid": "unionid",
    "mini_openid": "小程序openid",
}


def _event_blocks(data: BrandData, block: int) -> Iterator[pa.Table]:
    """The activity export, event type by event type, in blocks of at most ``block`` rows."""
    import numpy as np

    c, o, ev, slug, start = data.customers, data.orders, data.events, data.shape.slug, data.start
    pages = np.array(PAGES)
    for kind, id_types in _EVENT_IDS.items():
        e = ev[kind]
        total = len(e["cust"])
        for lo in range(0, total, block):
            k = np.arange(lo, min(lo + block, total), dtype=np.int64)
            cust = e["cust"][k]
            named = np.zeros(len(k), dtype=bool)
            for t in id_types:
                named |= c[t][cust] != ""
            k, cust = k[named], cust[named]  # a row naming nobody is not exported
            n = len(k)
            cols: dict[str, pa.Array] = {h: _const("", n) for h in EVENT_HEADERS}
            cols["事件ID"] = _numbered(f"{slug}-{kind}-", k)
            cols["事件类型"] = _const(kind, n)
            cols["发生时间"] = _local_text(start, e["t_s"][k])
            for t in id_types:
                cols[_ID_HEADER[t]] = _s(c[t][cust])
            if kind == "page_viewed":
                cols["页面路径"] = _s(pages[e["step"][k]])
            elif kind in ("group_joined", "group_left"):
                cols["群ID"] = _s(e["chat_id"][k])
            elif kind in ("message_received", "message_sent"):
                cols["员工账号"] = _s(c["owner"][cust])
                cols["msg_type"] = _const("text", n)
            elif kind == "coupon_issued":
                cols["券码"] = _numbered(f"WELCOME-{slug}-", k)
                cols["活动"] = _const("welcome", n)
                cols["券面额(元)"] = _const("5.00", n)
            elif kind == "coupon_redeemed":
                order = e["order"][k]
                cols["券码"] = _numbered(f"ORDER-{slug}-", order)
                cols["券面额(元)"] = _yuan(o["discount"][order])
                cols["订单号"] = _s(o["order_id"][order])
            elif kind == "checked_in":
                cols["place"] = _const("group", n)
            if n:
                yield _table(EVENT_HEADERS, [cols[h] for h in EVENT_HEADERS])


def _events(data: BrandData, folder: Path, chunk_rows: int) -> list[Path]:
    """``events.csv``, or ``events-001.csv`` … when there are more than ``chunk_rows``."""
    total = sum(len(e["cust"]) for k, e in data.events.items() if k in _EVENT_IDS)
    many = total > chunk_rows
    paths: list[Path] = []
    fh: Any = None
    in_file = chunk_rows
    try:
        for table in _event_blocks(data, min(chunk_rows, 1_000_000)):
            offset = 0
            while offset < table.num_rows:
                if in_file >= chunk_rows:
                    if fh is not None:
                        fh.close()
                    name = f"events-{len(paths) + 1:03d}.csv" if many else "events.csv"
                    paths.append(folder / name)
                    fh = paths[-1].open("wb")
                    fh.write((",".join(EVENT_HEADERS) + "\n").encode())
                    in_file = 0
                part = table.slice(offset, chunk_rows - in_file)
                _append_csv(fh, part)
                offset += part.num_rows
                in_file += part.num_rows
    finally:
        if fh is not None:
            fh.close()
    if not paths:  # nothing happened: still hand over the (empty) export
        paths.append(folder / "events.csv")
        paths[-1].write_bytes((",".join(EVENT_HEADERS) + "\n").encode())
    # a smaller export later must not leave stale parts behind for the import
    for stale in folder.glob("events*.csv"):
        if stale not in paths:
            stale.unlink()
    return paths


def _append_csv(fh: Any, table: pa.Table) -> None:
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, fh, pcsv.WriteOptions(include_header=False, quoting_style="none"))


SURVEY_HEADERS = ["序号", "提交答卷时间", "外部联系人ID", "手机号", "小程序openid", "满意度评分"]


def _survey(data: BrandData, path: Path) -> None:
    """The survey tool's XLSX export, with fixed document and zip times."""
    import numpy as np
    from openpyxl import Workbook

    c, e, start = data.customers, data.events["survey_answered"], data.start
    cust = e["cust"]
    named = (c["external_userid"][cust] != "") | (c["phone"][cust] != "")
    named |= c["mini_openid"][cust] != ""
    rows = np.flatnonzero(named)
    cust = cust[rows]
    when = _local_text(start, e["t_s"][rows], sep="/").to_pylist()
    book = Workbook(write_only=True)
    sheet = book.create_sheet("答卷数据")
    sheet.append(SURVEY_HEADERS)
    for n, (t, ext, phone, mini, score) in enumerate(
        zip(
            when,
            c["external_userid"][cust].tolist(),
            c["phone"][cust].tolist(),
            c["mini_openid"][cust].tolist(),
            e["csat"][rows].tolist(),
            strict=True,
        ),
        start=1,
    ):
        sheet.append([n, t, ext, phone, mini, score])
    book.properties.creator = "wjx.cn"
    book.properties.created = XLSX_TIME
    buf = io.BytesIO()
    book.save(buf)
    path.write_bytes(_stable_zip(buf.getvalue()))


def _stable_zip(data: bytes) -> bytes:
    """The same workbook as bytes that do not depend on when it was saved: openpyxl stamps
    ``dcterms:modified`` with the current time and zip entries with the local time."""
    stamp = XLSX_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                    rb"\g<1>" + stamp + rb"\g<2>",
                    body,
                )
            entry = zipfile.ZipInfo(info.filename, date_time=XLSX_TIME.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            dst.writestr(entry, body)
    return out.getvalue()


def _referrals(data: BrandData, path: Path) -> None:
    import json

    c, e, slug, start = data.customers, data.events["referral"], data.shape.slug, data.start
    lines = []
    for k, (i, r, t) in enumerate(
        zip(e["cust"].tolist(), e["referrer"].tolist(), e["t_s"].tolist(), strict=True)
    ):
        referee = _ids(c, i, ("external_userid", "unionid", "phone"))
        referrer = _ids(c, r, ("external_userid",))
        if referee and referrer:
            lines.append(
                json.dumps(
                    {
                        "event_id": f"{slug}-referral-{k}",
                        "event_type": "referral",
                        "occurred_at": (start + timedelta(seconds=round(t))).isoformat(),
                        "source": "demo",
                        "identifiers": referee,
                        "properties": {
                            "referrer": referrer,
                            "referee": referee,
                            "campaign": "friends",
                        },
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    path.write_text("".join(lines), encoding="utf-8")


def _ids(c: dict[str, Any], i: int, types: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"type": t, "value": str(c[t][i])} for t in types if c[t][i]]


def export_brand(data: BrandData, folder: Path, chunk_rows: int = EVENTS_CHUNK_ROWS) -> list[Path]:
    """Write one brand's source files into ``folder``; returns them in import order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "crm_members.csv", folder / "wecom_contacts.jsonl", folder / "orders.csv"]
    _crm(data, paths[0])
    _wecom(data, paths[1])
    _orders(data, paths[2])
    paths += _events(data, folder, chunk_rows)
    paths += [folder / "csat_survey.xlsx", folder / "referrals.jsonl"]
    _survey(data, paths[-2])
    _referrals(data, paths[-1])
    return paths


def source_files(folder: Path) -> list[tuple[Path, SourceFile]]:
    """The exported files present in ``folder``, in import order."""
    out = []
    for spec in SOURCES:
        out += [(path, spec) for path in sorted(folder.glob(spec.pattern))]
    return out


def import_brand(db: Any, folder: Path, slug: str) -> list[dict[str, Any]]:
    """Import one brand's exported files through the real ingestion path."""
    from siyu.core.tenancy import SYSTEM
    from siyu.ingest import actions
    from siyu.org import queries

    brand = queries.access_brand(db, SYSTEM, slug)
    results = []
    for path, spec in source_files(folder):
        out = actions.import_file(
            db, SYSTEM, brand, path, kind=spec.kind, source=spec.source, mapping=spec.mapping
        )
        results.append(
            {
                "file": path.name,
                "total": out.total,
                "accepted": out.accepted,
                "duplicates": out.duplicates,
                "rejected": out.rejected,
                "seconds": out.seconds,
                "phases": out.phases,
                "errors": out.errors[:5],
            }
        )
    return results
