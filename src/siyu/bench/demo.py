"""``siyu bench demo``: the demo brands at scale — generate, export, import, OneID — in a
throw-away data directory (SQLite + local lake), each side beside a naive reference.

- **Generate**: ours (``demo.generate``, column-wise numpy) for N customers with ``activity``
  scaled so there are ≥ 20 facts (events + orders) per customer on average. Reference: the
  same shapes drawn one customer at a time with the ``random`` module (identities, the
  purchase-and-dropout process, page-view funnels, messages, check-ins), on a sample.
- **Export**: the six source files per brand (``demo.export``), events in parts of
  ``chunk_rows`` rows so neither the export nor the import holds 20M rows at once.
- **Import**: every file through ``ingest.actions.import_file`` (each commits on its own),
  with the importer's own phase times summed over files. Reference: the naive importer of
  ``bench ingest`` adapted to these files — ``csv.DictReader`` → pydantic envelope and
  property validation → per-row identifier normalisation and hashing → one Delta write
  (generous: no OneID, no dedup) — on a sample of the events file.
- **OneID**: the incremental resolution inside each import, then one full recompute per
  brand (``customers.actions.run_full``), which must change nothing.

The last line printed is one JSON object; ratios are our time ÷ the reference's time for
the same amount of work (below 1 is faster). ``met`` says whether generate + export +
import + OneID stayed within ``target_seconds`` (the issue's 3 minutes for 1M customers).
"""

from __future__ import annotations

import csv
import gc
import os
import random
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_SECONDS = 180


@dataclass(frozen=True)
class DemoKit:
    """The demo's generator, exporter, importer and org builder, handed in by the CLI (the
    benchmarks and the demo are independent packages: neither imports the other)."""

    shapes: Sequence[Any]
    split: Callable[[int], list[tuple[Any, int]]]
    generate_brand: Callable[..., Any]
    export_brand: Callable[..., list[Path]]
    import_brand: Callable[..., list[dict[str, Any]]]
    build_org: Callable[..., Any]


def _rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


# ---------------------------------------------------------------- naive generation


def reference_generate(
    shapes: Sequence[Any], customers: int, days: int, seed: int, activity: float
) -> dict[str, int]:
    """The demo's shapes, one customer at a time with ``random`` (the naive way)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    horizon = days * 86400.0
    counts: dict[str, int] = defaultdict(int)
    rows: list[tuple[Any, ...]] = []
    for shape in shapes:
        n = max(10, round(customers * shape.share))
        states = list(shape.channels)
        weights = [shape.channels[s][0] for s in states]
        order_channels = list(shape.order_channels)
        order_weights = list(shape.order_channels.values())
        for i in range(n):
            acq = days * rng.random() ** 0.5 * 86400
            r = shape.id_rates
            wecom = rng.random() < r["wecom"]
            mini = rng.random() < r["mini"]
            member = rng.random() < r["member"]
            mixed = (i * 0x9E3779B97F4A7C15 + seed) & ((1 << 60) - 1)
            ids = {
                "external_userid": f"wm{mixed:020x}" if wecom else "",
                "unionid": f"oU{mixed + 1:024x}" if mini or wecom else "",
                "mini_openid": f"oM{mixed + 2:024x}" if mini else "",
                "phone": str(13_000_000_000 + (i * 7919) % 7_000_000_000) if member else "",
                "member_no": f"M{i + 100000:08d}" if member else "",
            }
            state = rng.choices(states, weights)[0]
            birthday = (
                f"{rng.randint(1968, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
            rows.append((i, acq, state, birthday, *ids.values()))
            counts["customers"] += 1
            # purchase and dropout
            rate = rng.gammavariate(shape.r, 1 / shape.alpha) / 86400
            dropout = rng.betavariate(shape.a, shape.b)
            t = acq + rng.expovariate(1 / (3 * 86400))
            if rng.random() < shape.buyer_share:
                while t < horizon:
                    channel = rng.choices(order_channels, order_weights)[0]
                    k = rng.randint(*shape.items_per_order)
                    items = [rng.choice(shape.products) for _ in range(k)]
                    total = sum(p.price_fen for p in items)
                    rows.append((i, t, channel, total, f"SO{i:08d}{counts['orders']:06d}"))
                    counts["orders"] += 1
                    counts["items"] += k
                    if rng.random() < dropout:
                        break
                    t += rng.expovariate(1.0) / max(rate, 1e-12)
            # engagement: sessions with a page funnel, messages, check-ins
            if mini:
                for _ in range(_poisson(rng, 2.5 * activity)):
                    start = acq + rng.random() * (horizon - acq)
                    depth = 1 + (rng.random() < 0.6)
                    depth += depth == 2 and rng.random() < 0.35
                    depth += depth == 3 and rng.random() < 0.5
                    for step in range(depth):
                        rows.append((i, start + 40 * step, "page_viewed", step))
                        counts["events"] += 1
            if wecom:
                for _ in range(_poisson(rng, 3.0 * activity)):
                    kind = "message_received" if rng.random() < 0.45 else "message_sent"
                    rows.append((i, acq + rng.random() * (horizon - acq), kind))
                    counts["events"] += 1
                if rng.random() < 0.35 * 0.5:
                    for _ in range(_poisson(rng, 4.0 * activity)):
                        rows.append((i, acq + rng.random() * (horizon - acq), "checked_in"))
                        counts["events"] += 1
    return dict(counts)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method (``random`` has no Poisson)."""
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# ---------------------------------------------------------------- naive import


EVENT_IDS = {"外部联系人ID": "external_userid", "unionid": "unionid", "小程序openid": "mini_openid"}
EVENT_PROPS = {
    "页面路径": "path",
    "群ID": "chat_id",
    "员工账号": "staff_userid",
    "msg_type": "msg_type",
    "券码": "coupon_code",
    "活动": "campaign",
    "订单号": "order_id",
    "place": "place",
}


def reference_import(path: Path, brand_id: str, limit: int, target: Path) -> tuple[int, float]:
    """The naive way on the first ``limit`` rows of an events CSV: one row at a time,
    pydantic per row, then one Delta write. Returns (rows, seconds)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from siyu.bench.ingest import naive_write
    from siyu.core.money import parse_yuan

    zone = ZoneInfo("Asia/Shanghai")

    def envelopes() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                if n >= limit:
                    break
                props: dict[str, Any] = {v: row[k] for k, v in EVENT_PROPS.items() if row[k]}
                if row["券面额(元)"]:
                    props["value_fen"] = int(parse_yuan(row["券面额(元)"]))
                when = datetime.strptime(row["发生时间"], "%Y-%m-%d %H:%M:%S")
                yield {
                    "event_id": row["事件ID"],
                    "event_type": row["事件类型"],
                    "occurred_at": when.replace(tzinfo=zone),
                    "identifiers": [
                        {"type": t, "value": row[h]} for h, t in EVENT_IDS.items() if row[h]
                    ],
                    "properties": props,
                }

    started = time.perf_counter()
    rows = naive_write(envelopes(), brand_id, str(target))
    return rows, time.perf_counter() - started


def run(
    kit: DemoKit,
    customers: int = 1_000_000,
    days: int = 180,
    seed: int = 2026,
    activity: float = 3.0,
    chunk_rows: int = 2_000_000,
    reference: int = 20_000,
    reference_events: int = 100_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate, export and import the demo brands at scale; returns the figures."""
    from siyu.bench.ingest import _forget_data_dir, _fresh_data_dir
    from siyu.core.db import open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.customers import actions as customer_actions
    from siyu.migrations import upgrade
    from siyu.org import queries

    say = progress or (lambda _: None)
    saved = {k: os.environ.get(k) for k in ("SIYU_DATA_DIR", "SIYU_DATABASE_URL", "SIYU_LAKE_URI")}
    totals: dict[str, float] = defaultdict(float)
    brands: list[dict[str, Any]] = []
    import_phases: dict[str, float] = defaultdict(float)
    facts = events_rows = 0
    sample_file: Path | None = None
    sample_brand = ""
    try:
        with tempfile.TemporaryDirectory(prefix="siyu-bench-demo-") as tmp:
            root = Path(tmp)
            _fresh_data_dir(root / "data")
            started = time.perf_counter()
            upgrade()
            with open_session() as db:
                kit.build_org(db)
            totals["setup"] = time.perf_counter() - started
            wall = time.perf_counter()
            for shape, n in kit.split(customers):
                figures: dict[str, Any] = {"brand": shape.slug, "customers": n}
                t0 = time.perf_counter()
                data = kit.generate_brand(shape, n, days, seed, activity=activity)
                figures["generate_s"] = round(time.perf_counter() - t0, 3)
                say(f"{shape.slug}: generated {n} customers in {figures['generate_s']} s")
                t0 = time.perf_counter()
                folder = root / "export" / shape.slug
                paths = kit.export_brand(data, folder, chunk_rows=chunk_rows)
                figures["export_s"] = round(time.perf_counter() - t0, 3)
                figures["export_mib"] = round(sum(p.stat().st_size for p in paths) / 2**20, 1)
                say(f"{shape.slug}: exported {len(paths)} files in {figures['export_s']} s")
                del data
                gc.collect()
                t0 = time.perf_counter()
                with open_session() as db:
                    results = kit.import_brand(db, folder, shape.slug)
                figures["import_s"] = round(time.perf_counter() - t0, 3)
                files = []
                for r in results:
                    rate = round(r["accepted"] / r["seconds"]) if r["seconds"] else None
                    files.append(
                        {
                            "file": r["file"],
                            "rows": r["total"],
                            "accepted": r["accepted"],
                            "rejected": r["rejected"],
                            "seconds": r["seconds"],
                            "rows_per_s": rate,
                            "phases": r["phases"],
                        }
                    )
                    for phase, seconds in r["phases"].items():
                        import_phases[phase] += seconds
                    facts += r["accepted"]
                    if r["file"].startswith("events"):
                        events_rows += r["accepted"]
                    say(f"  {r['file']}: {r['accepted']} stored in {r['seconds']} s")
                figures["files"] = files
                t0 = time.perf_counter()
                with open_session() as db:
                    brand = queries.access_brand(db, SYSTEM, shape.slug)
                    figures["oneid_full"] = customer_actions.run_full(db, SYSTEM, brand)
                    if not sample_brand:
                        sample_brand = brand.id
                figures["oneid_full_s"] = round(time.perf_counter() - t0, 3)
                say(f"{shape.slug}: full OneID in {figures['oneid_full_s']} s")
                for key in ("generate_s", "export_s", "import_s", "oneid_full_s"):
                    totals[key] += figures[key]
                if sample_file is None:
                    sample_file = next(p for p in paths if p.name.startswith("events"))
                else:
                    for p in folder.iterdir():  # keep the disk footprint to one brand's files
                        p.unlink()
                brands.append(figures)
                gc.collect()
            total_s = time.perf_counter() - wall
            assert sample_file is not None
            ref_rows, ref_import_s = reference_import(
                sample_file, sample_brand, reference_events, root / "reference-lake"
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_data_dir()
    t0 = time.perf_counter()
    ref_counts = reference_generate(kit.shapes, reference, days, seed, activity)
    ref_generate_s = time.perf_counter() - t0
    ours_generate = totals["generate_s"] / customers
    events_import_s = sum(
        f["seconds"] for b in brands for f in b["files"] if f["file"].startswith("events")
    )
    return {
        "customers": customers,
        "days": days,
        "activity": activity,
        "facts": facts,
        "facts_per_customer": round(facts / customers, 2),
        "activity_events": events_rows,
        "seconds": round(total_s, 3),
        "phases": {k: round(v, 3) for k, v in totals.items()},
        "import_phases": {k: round(v, 3) for k, v in import_phases.items()},
        "facts_per_s": round(facts / totals["import_s"]) if totals["import_s"] else None,
        "events_file_rows_per_s": round(events_rows / events_import_s) if events_import_s else None,
        "brands": brands,
        "reference_generate_customers": ref_counts["customers"],
        "reference_generate_seconds": round(ref_generate_s, 3),
        # our time per customer ÷ the naive loop's time per customer
        "ratio_generate": round(ours_generate / (ref_generate_s / ref_counts["customers"]), 4),
        "reference_import_rows": ref_rows,
        "reference_import_seconds": round(ref_import_s, 3),
        "reference_import_rows_per_s": round(ref_rows / ref_import_s),
        # our time per event (events files, incl. OneID and dedup) ÷ the naive importer's
        "ratio_import": round((events_import_s / events_rows) / (ref_import_s / ref_rows), 4)
        if events_rows
        else None,
        "peak_rss_gib": _rss_gib(),
        "target_seconds": TARGET_SECONDS,
        "met": total_s <= TARGET_SECONDS,
        "cpus": os.cpu_count(),
    }
