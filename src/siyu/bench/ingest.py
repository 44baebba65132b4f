"""``siyu bench ingest``: file import and HTTP batch intake into the lake, each beside a naive
reference measured in the same run, in a throw-away data directory (SQLite + local lake).

- File: a realistic events CSV (N events of ~50,000 customers, Chinese headers, several
  event types, no event ids — they are derived from row content as real exports need)
  imported by ``ingest.actions.import_file`` (vectorised path, OneID per distinct identifier
  set, one Delta commit per table). Reference: ``csv.DictReader`` → pydantic envelope and
  property validation → per-row identifier normalisation and hashing → rows appended to a
  list → one Delta write (a generous reference: it skips OneID and dedup).
- HTTP: uvicorn on 127.0.0.1 (a free port, its own process), batches of 10,000 events POSTed
  to ``events:batch``. Reference: the same kind of events one request each (the real-time
  endpoint), on a smaller sample.

The last line printed is one JSON object with the figures; ``ratio`` is our time ÷ the
reference's time for the same number of events (below 1 is faster).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

EVENT_MIX = (
    ("page_viewed", 0.55),
    ("content_clicked", 0.10),
    ("message_received", 0.10),
    ("coupon_issued", 0.08),
    ("checked_in", 0.07),
    ("coupon_redeemed", 0.05),
    ("survey_answered", 0.05),
)
HEADERS = [
    "手机号",
    "会员号",
    "事件类型",
    "时间",
    "页面路径",
    "来源页",
    "content_id",
    "staff_userid",
    "msg_type",
    "券码",
    "csat",
    "survey_id",
]


def generate_csv(path: Path, events: int, customers: int, seed: int = 7) -> None:
    """A CSV export as a brand's data team would hand it over (UTF-8, no quotes)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    who = rng.zipf(1.3, events) % customers  # a few heavy users, a long tail
    phones = np.char.add("139", np.char.zfill((who * 7919 % 10**8).astype(str), 8))
    member = np.where(who % 3 == 0, np.char.add("M", who.astype(str)), "")
    types = rng.choice([t for t, _ in EVENT_MIX], size=events, p=[p for _, p in EVENT_MIX])
    start = np.datetime64("2026-01-01T00:00:00")
    seconds = rng.integers(0, 60 * 86400, size=events)
    stamps = np.datetime_as_string(start + seconds.astype("timedelta64[s]")).astype(str)
    stamps = np.char.replace(stamps, "T", " ")
    page = np.char.add("/pages/item/index?id=", rng.integers(1, 5000, events).astype(str))

    def only(kind: str, values: Any) -> Any:
        return np.where(types == kind, values, "")

    coupon_rows = (types == "coupon_issued") | (types == "coupon_redeemed")
    columns = {
        "手机号": phones,
        "会员号": member,
        "事件类型": types,
        "时间": stamps,
        "页面路径": only("page_viewed", page),
        "来源页": only("page_viewed", "/pages/index/index"),
        "content_id": only("content_clicked", np.char.add("C", (who % 300).astype(str))),
        "staff_userid": only("message_received", np.char.add("guide", (who % 50).astype(str))),
        "msg_type": only("message_received", "text"),
        "券码": np.where(
            coupon_rows, np.char.add("CP", rng.integers(1, 10**6, events).astype(str)), ""
        ),
        "csat": only("survey_answered", rng.integers(1, 6, events).astype(str)),
        "survey_id": only("survey_answered", "S2026"),
    }
    table = pa.table({h: pa.array(columns[h].tolist(), pa.string()) for h in HEADERS})
    with path.open("wb") as fh:
        fh.write((",".join(HEADERS) + "\n").encode("utf-8"))
        pcsv.write_csv(table, fh, pcsv.WriteOptions(quoting_style="none", include_header=False))


PROP_OF = {
    "页面路径": "path",
    "来源页": "referrer",
    "content_id": "content_id",
    "staff_userid": "staff_userid",
    "msg_type": "msg_type",
    "券码": "coupon_code",
    "csat": "csat",
    "survey_id": "survey_id",
}


def row_event(row: dict[str, str], event_id: str, tz: str = "+08:00") -> dict[str, Any]:
    """An envelope for one CSV row (reference path and HTTP bodies)."""
    idents = [{"type": "phone", "value": row["手机号"]}]
    if row["会员号"]:
        idents.append({"type": "member_no", "value": row["会员号"]})
    props: dict[str, Any] = {}
    for header, name in PROP_OF.items():
        if row.get(header):
            props[name] = int(row[header]) if name == "csat" else row[header]
    return {
        "event_id": event_id,
        "event_type": row["事件类型"],
        "occurred_at": row["时间"].replace(" ", "T") + tz,
        "identifiers": idents,
        "properties": props,
    }


def naive_write(envelopes: Iterable[dict[str, Any]], brand_id: str, target: str) -> int:
    """The naive way of landing events: pydantic envelope and property validation per row,
    per-row identifier hashing, rows appended to a list, one Delta write. Returns rows."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from siyu.customers import vault
    from siyu.ingest.catalogue import CATALOGUE, Envelope

    rows: list[dict[str, Any]] = []
    for raw in envelopes:
        env = Envelope.model_validate(raw)
        spec = CATALOGUE[(env.event_type, env.schema_version)]
        props = spec.model.model_validate(env.properties)
        keys = [vault.identity_key(brand_id, i.type, i.value) for i in env.identifiers]
        rows.append(
            {
                "event_id": env.event_id,
                "event_type": env.event_type,
                "occurred_at": env.occurred_at,
                "dt": env.occurred_at.date(),
                "identity_key": keys[0],
                "identity_keys": keys,
                "properties": props.model_dump_json(exclude_none=True),
            }
        )
    write_deltalake(target, pa.Table.from_pylist(rows), partition_by=["dt"], mode="append")
    return len(rows)


def reference_import(path: Path, brand_id: str, limit: int) -> float:
    """The naive way: one row at a time, pydantic per row, then one write."""
    import hashlib

    def envelopes() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                if n >= limit:
                    break
                event_id = hashlib.md5(  # noqa: S324 - a fingerprint, as ours
                    "\x1f".join(row.values()).encode()
                ).hexdigest()
                yield row_event(row, event_id)

    target = tempfile.mkdtemp(prefix="siyu-ref-lake-")
    started = time.perf_counter()
    naive_write(envelopes(), brand_id, target)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(app: str) -> tuple[Any, str]:
    """uvicorn serving ``app`` (``module:factory``) on a free loopback port in its own
    process — as in production, the client is not in the server's process (and does not
    share its GIL)."""
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2):  # noqa: S310
                return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.1)


def http_runs(
    app: str, path: Path, key: str, brand: str, batches: int, singles: int
) -> dict[str, Any]:
    """Batches of 10,000 over loopback HTTP, then single events one request each."""
    import httpx

    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [row for _, row in zip(range(batches * 10_000 + singles), reader, strict=False)]
    bodies = []
    for b in range(batches):
        chunk = rows[b * 10_000 : (b + 1) * 10_000]
        batch = [row_event(r, f"h-{b}-{i}") for i, r in enumerate(chunk)]
        bodies.append(json.dumps({"events": batch}).encode())
    single = [json.dumps(row_event(r, f"s-{i}")).encode() for i, r in enumerate(rows[-singles:])]
    server, base = _serve(app)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            started = time.perf_counter()
            sent = 0
            for body in bodies:
                r = client.post(f"/api/v1/brands/{brand}/events:batch", content=body)
                r.raise_for_status()
                sent += r.json()["accepted"]
            batch_s = time.perf_counter() - started
            started = time.perf_counter()
            for body in single:
                client.post(f"/api/v1/brands/{brand}/events", content=body).raise_for_status()
            single_s = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "http_events": sent,
        "http_seconds": round(batch_s, 3),
        "http_events_per_s": round(sent / batch_s),
        "http_reference_events": len(single),
        "http_reference_events_per_s": round(len(single) / single_s),
    }


def _forget_data_dir() -> None:
    from siyu.core.db import dispose_engines
    from siyu.core.settings import reset_settings

    reset_settings()
    dispose_engines()


def _fresh_data_dir(path: Path) -> None:
    os.environ["SIYU_DATA_DIR"] = str(path)
    os.environ.pop("SIYU_DATABASE_URL", None)
    os.environ.pop("SIYU_LAKE_URI", None)
    _forget_data_dir()


def run(
    app: str,
    events: int = 1_000_000,
    customers: int = 50_000,
    reference: int = 200_000,
    http_batches: int = 10,
    http_singles: int = 1_000,
    seed: int = 7,
) -> dict[str, Any]:
    """Run both measurements in a temporary data directory; returns the figures.

    ``app`` is the ASGI app factory as ``module:function`` (given by the CLI: the bench sits
    below the edges and does not import them); it is served by uvicorn in its own process.
    """
    from siyu.core.db import open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.ingest import actions
    from siyu.migrations import upgrade
    from siyu.org import actions as org_actions
    from siyu.org.schemas import ApiKeyIn, BrandIn

    saved = {k: os.environ.get(k) for k in ("SIYU_DATA_DIR", "SIYU_DATABASE_URL", "SIYU_LAKE_URI")}
    with tempfile.TemporaryDirectory(prefix="siyu-bench-") as tmp:
        root = Path(tmp)
        _fresh_data_dir(root / "data")
        upgrade()
        csv_path = root / "events.csv"
        generate_csv(csv_path, events, customers, seed)
        with open_session() as db:
            brand = org_actions.create_brand(db, SYSTEM, BrandIn(slug="bench", name="Bench"))
            _, key = org_actions.create_api_key(
                db, SYSTEM, brand, ApiKeyIn(name="bench", scopes=["events.write"])
            )
            started = time.perf_counter()
            out = actions.import_file(db, SYSTEM, brand, csv_path, kind="events", source="bench")
            ours = time.perf_counter() - started
            brand_id = brand.id
        ref_n = min(reference, events)
        ref_s = reference_import(csv_path, brand_id, ref_n)
        figures: dict[str, Any] = {
            "events": events,
            "customers": customers,
            "accepted": out.accepted,
            "seconds": round(ours, 3),
            "phases": out.phases,
            "events_per_s": round(events / ours),
            "reference_events": ref_n,
            "reference_seconds": round(ref_s, 3),
            "reference_events_per_s": round(ref_n / ref_s),
            # our time ÷ the reference's time for the same number of events
            "ratio": round((ours / events) / (ref_s / ref_n), 4),
        }
        batches = max(1, min(http_batches, events // 10_000))
        figures.update(http_runs(app, csv_path, key, "bench", batches, http_singles))
        figures["cpus"] = os.cpu_count()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _forget_data_dir()
    return figures
