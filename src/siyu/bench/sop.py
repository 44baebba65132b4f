"""``siyu bench sop``: plan one day of touches with the full breathing policy.

- **Data** (numpy, seeded): ``customers`` customers, ``sops`` SOPs (one transactional order
  notice, the rest marketing over WeCom 1:1, WeCom mass, SMS, e-mail, mini-program and guide
  tasks), each wanting 3–30% of the customers today with due times over the day and
  validities of 1 hour to 3 days, 5% holdout; a month of history (about 3 touches per
  customer); customer state with opt-outs, deleted guides, complaints, unanswered counts and
  replies; one guide per 2,000 customers.
- **Ours**: :func:`siyu.sop.planner.plan` on everything (the brand's default policy).
- **Reference**: the same rules the naive way — one customer at a time, Python dicts and
  ``zoneinfo`` per touch — on a sample of customers. Guide capacity is global, so both sides
  run the sample with unlimited capacity and must then agree decision for decision
  (``agree``). The ratio compares time per candidate (ours ÷ reference, below 1 is faster).

``met`` says whether ours planned the day within ``target_seconds`` (the issue's 30 s).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from siyu.sop.planner import (
    NEVER,
    REASONS,
    STATUSES,
    Candidates,
    CustomerState,
    History,
    Windows,
    plan,
)
from siyu.sop.policy import CHANNELS, GUIDE_CHANNEL, BreathingPolicy, MassQuota

TZ = "Asia/Shanghai"
DAY = date(2026, 6, 17)
TARGET_SECONDS = 30
SOP_CHANNELS = (
    "wecom_1to1",  # the transactional order notice
    "wecom_mass",
    "wecom_1to1",
    "guide_task",
    "sms",
    "email",
    "wecom_mass",
    "guide_task",
    "mini_subscribe",
    "wecom_1to1",
)


def generate(customers: int, sops: int, seed: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    w = Windows.of(DAY, TZ)
    parts: list[dict[str, Any]] = []
    for s in range(sops):
        share = rng.uniform(0.03, 0.3)
        who = np.flatnonzero(rng.random(customers) < share)
        m = len(who)
        due = w.day_start + rng.integers(-6 * 3600, 86400, m)
        channel = SOP_CHANNELS[s % len(SOP_CHANNELS)]
        parts.append(
            {
                "customer_id": who.astype(np.int64),
                "sop_id": np.full(m, s, np.int64),
                "priority": np.full(m, int(rng.integers(1, 6)), np.int64),
                "expected_value": rng.gamma(2.0, 20.0, m),
                "channel": np.full(m, CHANNELS.index(channel), np.int8),
                "kind": np.full(m, 1 if s == 0 else 0, np.int8),
                "due_at": due,
                "expires_at": due + rng.integers(3600, 3 * 86400, m),
                "guide_id": (who // 2000).astype(np.int64),
                "holdout": rng.random(m) < 0.05,
                "automatable": np.full(m, s % 2 == 1),
            }
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(cols["customer_id"])
    candidates = Candidates(candidate_id=np.arange(n, dtype=np.int64), **cols)
    per = rng.poisson(3.0, customers)
    hc = np.repeat(np.arange(customers, dtype=np.int64), per)
    h = len(hc)
    history = History(
        customer_id=hc,
        channel=rng.choice(
            np.array(
                [CHANNELS.index(c) for c in ("wecom_1to1", "wecom_mass", "sms", "email")], np.int8
            ),
            h,
        ),
        kind=(rng.random(h) < 0.1).astype(np.int8),
        sent_at=w.day_start - rng.integers(3600, 35 * 86400, h),
        guide_id=np.full(h, -1, np.int64),
    )
    replied = rng.random(customers) < 0.4
    state = CustomerState(
        customer_id=np.arange(customers, dtype=np.int64),
        opted_out=rng.random(customers) < 0.02,
        deleted_guide=rng.random(customers) < 0.03,
        complained=rng.random(customers) < 0.005,
        unanswered=rng.choice(4, customers, p=[0.5, 0.3, 0.15, 0.05]),
        last_reply_at=np.where(
            replied, w.day_start - rng.integers(0, 60 * 86400, customers), NEVER
        ),
        backoff_until=np.full(customers, NEVER, np.int64),
    )
    return {"candidates": candidates, "history": history, "state": state}


# ---------------------------------------------------------------- the naive reference


def reference_plan(
    candidates: Candidates,
    history: History,
    state: CustomerState,
    policy: BreathingPolicy,
    day: date = DAY,
) -> dict[int, tuple[str, str, int]]:
    """One customer at a time in plain Python (no guide capacity): candidate id →
    (status, reason, send_at or deferred_until)."""
    zone = ZoneInfo(TZ)
    w = Windows.of(day, TZ)
    qs, qe = policy.quiet_minutes

    def next_allowed(t: int) -> int:
        for _ in range(3):
            lt = datetime.fromtimestamp(t, zone)
            minute = lt.hour * 60 + lt.minute
            quiet = (minute >= qs or minute < qe) if qs > qe else (qs <= minute < qe)
            if qs == qe or not quiet:
                return t
            day = lt.date() if (qs < qe or minute < qe) else lt.date() + timedelta(days=1)
            t = int(
                datetime(day.year, day.month, day.day, qe // 60, qe % 60, tzinfo=zone).timestamp()
            )
        return t

    quota_window, quota = {
        MassQuota.DAILY_1: ("day", 1),
        MassQuota.WEEKLY_7: ("week", 7),
        MassQuota.MONTHLY_4: ("month", 4),
        MassQuota.MONTHLY_DAYS: ("month", w.days_in_month),
    }[policy.mass_quota]
    bounds = {
        "day": (w.day_start, w.day_end),
        "week": (w.week_start, w.week_end),
        "month": (w.month_start, w.month_end),
    }
    names = {"day": "daily_cap", "week": "weekly_cap", "month": "monthly_cap"}
    cnames = {
        "day": "channel_daily_cap",
        "week": "channel_weekly_cap",
        "month": "channel_monthly_cap",
    }

    hist: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for c, ch, k, t in zip(
        history.customer_id.tolist(),
        history.channel.tolist(),
        history.kind.tolist(),
        history.sent_at.tolist(),
        strict=True,
    ):
        hist[c].append((CHANNELS[ch], k, t))
    states = {
        c: (o, d, x, u, r, b)
        for c, o, d, x, u, r, b in zip(
            state.customer_id.tolist(),
            state.opted_out.tolist(),
            state.deleted_guide.tolist(),
            state.complained.tolist(),
            state.unanswered.tolist(),
            state.last_reply_at.tolist(),
            state.backoff_until.tolist(),
            strict=True,
        )
    }
    mine: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i in range(len(candidates)):
        mine[int(candidates.customer_id[i])].append(
            {
                "id": int(candidates.candidate_id[i]),
                "prio": int(candidates.priority[i]),
                "ev": float(candidates.expected_value[i]),
                "ch": CHANNELS[int(candidates.channel[i])],
                "mk": int(candidates.kind[i]) == 0,
                "due": int(candidates.due_at[i]),
                "exp": int(candidates.expires_at[i]),
                "holdout": bool(candidates.holdout[i]),
            }
        )
    out: dict[int, tuple[str, str, int]] = {}
    pause = policy.backoff_days * 86400
    for cust, todo in mine.items():
        opted, deleted, complained, unanswered, last_reply, backoff_until = states.get(
            cust, (False, False, False, 0, NEVER, NEVER)
        )
        used: dict[tuple[str, str], int] = defaultdict(int)
        last_mkt = NEVER
        for ch, kind, t in hist.get(cust, []):
            if t >= w.day_end:
                continue
            if kind == 0:
                last_mkt = max(last_mkt, t)
            for window, (a, b) in bounds.items():
                if a <= t < b:
                    if kind == 0:
                        used[("all", window)] += 1
                        used[(ch, window)] += 1
                    if ch == "wecom_mass" and window == quota_window:
                        used[("quota", window)] += 1
        before = dict(used)
        paused = NEVER
        if last_reply < backoff_until - pause:
            paused = backoff_until
        if unanswered >= policy.backoff_after and last_mkt > NEVER and last_reply < last_mkt:
            paused = max(paused, last_mkt + pause)
        budget = 0 if unanswered >= policy.backoff_after else max(unanswered, 0)
        todo.sort(key=lambda c: (-c["prio"], -c["ev"], c["id"]))
        for c in todo:
            start = max(c["due"], w.day_start)
            if c["holdout"]:
                out[c["id"]] = ("suppressed", "holdout", NEVER)
                continue
            if c["exp"] < start:
                out[c["id"]] = ("suppressed", "expired", NEVER)
                continue
            if c["mk"] and opted:
                out[c["id"]] = ("suppressed", "opted_out", NEVER)
                continue
            if c["mk"] and complained:
                out[c["id"]] = ("suppressed", "complained", NEVER)
                continue
            if deleted and (c["mk"] or c["ch"] in ("wecom_1to1", "wecom_mass", GUIDE_CHANNEL)):
                out[c["id"]] = ("suppressed", "deleted_guide", NEVER)
                continue
            if c["due"] >= w.day_end:
                out[c["id"]] = ("deferred", "not_due", c["due"])
                continue
            if c["mk"]:
                start = max(start, paused)
                if paused > w.day_start and (start >= w.day_end or start > c["exp"]):
                    out[c["id"]] = ("suppressed", "backoff", NEVER)
                    continue
            earliest = next_allowed(start)
            if earliest >= w.day_end or earliest > c["exp"]:
                ok = earliest <= c["exp"]
                out[c["id"]] = (
                    ("deferred", "quiet_hours", earliest)
                    if ok
                    else ("suppressed", "expired", NEVER)
                )
                continue
            # counters: (key, limit, reset, reason)
            checks: list[tuple[tuple[str, str], int, int, str]] = []
            if c["mk"]:
                checks.append((("backoff", ""), policy.backoff_after, 2**62, "backoff"))
            if c["ch"] == "wecom_mass":
                checks.append(
                    (("quota", quota_window), quota, bounds[quota_window][1], "platform_quota")
                )
            if c["mk"]:
                for window in ("month", "week", "day"):
                    cap = getattr(policy.caps, window)
                    if cap is not None:
                        checks.append((("all", window), cap, bounds[window][1], names[window]))
                ccaps = policy.channel_caps.get(c["ch"])
                for window in ("month", "week", "day"):
                    cap = None if ccaps is None else getattr(ccaps, window)
                    if cap is not None:
                        checks.append(((c["ch"], window), cap, bounds[window][1], cnames[window]))
            counts = dict(used)
            counts[("backoff", "")] = budget
            full = [chk for chk in checks if counts.get(chk[0], 0) >= chk[1]]
            if full:
                if any(chk[3] == "backoff" for chk in full):
                    out[c["id"]] = ("suppressed", "backoff", NEVER)
                    continue
                first = [chk[3] for chk in full if before.get(chk[0], 0) >= chk[1]]
                code = first[0] if first else "lost_arbitration"
                until = next_allowed(max(chk[2] for chk in full))
                out[c["id"]] = (
                    ("deferred", code, until)
                    if until <= c["exp"]
                    else ("suppressed", "expired", NEVER)
                )
                continue
            t = max(earliest, last_mkt + policy.min_gap_minutes * 60) if c["mk"] else earliest
            t = next_allowed(t)
            if t >= w.day_end or t > c["exp"]:
                out[c["id"]] = (
                    ("deferred", "min_gap", t)
                    if t <= c["exp"]
                    else ("suppressed", "expired", NEVER)
                )
                continue
            out[c["id"]] = ("sent", "", t)
            for chk in checks:
                if chk[3] == "backoff":
                    budget += 1
                else:
                    used[chk[0]] += 1
            if c["mk"]:
                last_mkt = t
    return out


def _sample(data: dict[str, Any], customers: int) -> tuple[Candidates, History, CustomerState]:
    c, h, s = data["candidates"], data["history"], data["state"]
    return (
        c.take(np.flatnonzero(c.customer_id < customers)),
        History(**{k: getattr(h, k)[h.customer_id < customers] for k in h.__dataclass_fields__}),
        CustomerState(
            **{k: getattr(s, k)[s.customer_id < customers] for k in s.__dataclass_fields__}
        ),
    )


def run(
    customers: int = 1_000_000, sops: int = 10, seed: int = 7, sample: int = 20_000
) -> dict[str, Any]:
    started = time.perf_counter()
    data = generate(customers, sops, seed)
    generate_s = time.perf_counter() - started
    policy = BreathingPolicy()
    gc.collect()
    started = time.perf_counter()
    decisions = plan(data["candidates"], data["history"], data["state"], policy, DAY, TZ)
    ours_s = time.perf_counter() - started
    n = len(data["candidates"])

    # the reference on a sample; both sides with unlimited guide capacity
    unlimited = replace(policy, guide_capacity=10**9)
    sc, sh, ss = _sample(data, min(sample, customers))
    started = time.perf_counter()
    ref = reference_plan(sc, sh, ss, unlimited)
    ref_s = time.perf_counter() - started
    mine = plan(sc, sh, ss, unlimited, DAY, TZ)
    same = 0
    for i in range(len(sc)):
        st = STATUSES[int(mine.status[i])]
        when = int(mine.send_at[i] if st == "sent" else mine.deferred_until[i])
        same += ref[int(sc.candidate_id[i])] == (st, REASONS[int(mine.reason[i])], when)
    per_ours = ours_s / max(n, 1)
    per_ref = ref_s / max(len(sc), 1)
    return {
        "customers": customers,
        "sops": sops,
        "candidates": n,
        "history_rows": len(data["history"]),
        "generate_s": round(generate_s, 2),
        "plan_s": round(ours_s, 2),
        "candidates_per_s": round(n / ours_s) if ours_s else None,
        "reference_sample_candidates": len(sc),
        "reference_s": round(ref_s, 2),
        "ratio_per_candidate": round(per_ours / per_ref, 4) if per_ref else None,
        "agree": round(same / max(len(sc), 1), 6),
        "status": decisions.summary["status"],
        "reasons": decisions.summary["reasons"],
        "guides": len(decisions.summary["guides"]),
        "target_seconds": TARGET_SECONDS,
        "met": ours_s <= TARGET_SECONDS,
    }


def bench_realtime(n: int = 200, background: int = 2_000, seed: int = 7) -> dict[str, Any]:
    """Real-time trigger to outbox: ``n`` customers add a guide on WeCom one by one; each
    ``wecom_contact_added`` goes through the intake (``ingest_batch``: OneID and the lake) and
    then :func:`siyu.sop.engine.on_event`, which enrols the customer in the welcome journey,
    advances it and plans its first touch at once. Latency is from handing the event to the
    intake until its outbox row is committed (p50/p99, target p99 ≤ 1 s); ``trigger`` is the
    engine's part alone. A temporary SQLite store and lake hold ``background`` other
    customers with a month of events, and the brand has the default breathing policy."""
    import os
    import tempfile
    from pathlib import Path

    from sqlalchemy import select

    from siyu.bench.ingest import _forget_data_dir, _fresh_data_dir
    from siyu.core.db import open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.customers import vault
    from siyu.customers.models import Identity
    from siyu.ingest import actions as ingest
    from siyu.migrations import upgrade
    from siyu.org import actions as org_actions
    from siyu.org.schemas import BrandIn
    from siyu.sop import engine
    from siyu.sop.models import Outbox, Sop

    rng = np.random.default_rng(seed)
    saved = {k: os.environ.get(k) for k in ("SIYU_DATA_DIR", "SIYU_DATABASE_URL", "SIYU_LAKE_URI")}

    def event(eid: str, etype: str, at: datetime, phone: str, **props: Any) -> dict[str, Any]:
        return {
            "event_id": eid,
            "event_type": etype,
            "occurred_at": at.isoformat(),
            "source": "bench",
            "identifiers": [{"type": "phone", "value": phone}],
            "properties": props,
        }

    total: list[float] = []
    trigger: list[float] = []
    sent = 0
    try:
        with tempfile.TemporaryDirectory(prefix="siyu-bench-sop-") as tmp:
            _fresh_data_dir(Path(tmp) / "data")
            upgrade()
            with open_session() as db:
                brand = org_actions.create_brand(db, SYSTEM, BrandIn(slug="bench", name="Bench"))
                start = datetime.now(ZoneInfo(TZ)).replace(hour=10, minute=0) - timedelta(days=1)
                history = [
                    event(
                        f"bg{i}",
                        "page_viewed",
                        start - timedelta(days=int(rng.integers(1, 31))),
                        f"137{i:08d}",
                        path="/pages/index",
                    )
                    for i in range(background)
                ]
                for i in range(0, len(history), 5_000):
                    ingest.ingest_batch(db, SYSTEM, brand, history[i : i + 5_000])
                db.add(
                    Sop(
                        brand_id=brand.id,
                        key="welcome",
                        name="新好友欢迎",
                        status="enabled",
                        priority=90,
                        audience={"kind": "event", "event": "wecom_contact_added"},
                        schedule={},
                        steps=[
                            {"type": "touch", "channel": "wecom_1to1", "content": {"text": "欢迎"}},
                            {"type": "wait", "days": 3},
                            {"type": "touch", "channel": "wecom_1to1", "content": {"text": "回访"}},
                        ],
                        policy={},
                        enabled_at=start - timedelta(days=1),
                    )
                )
                db.commit()
                for i in range(n):
                    phone = f"139{i:08d}"
                    at = start + timedelta(seconds=i)
                    item = event(
                        f"add{i}",
                        "wecom_contact_added",
                        at,
                        phone,
                        staff_userid="guide1",
                        external_userid=f"wm{i}",
                    )
                    t0 = time.perf_counter()
                    ingest.ingest_batch(db, SYSTEM, brand, [item])
                    h = vault.match_hash(brand.id, "phone", phone)
                    cid = db.scalar(
                        select(Identity.customer_id).where(
                            Identity.brand_id == brand.id, Identity.value_hash == h
                        )
                    )
                    t1 = time.perf_counter()
                    keys = engine.on_event(db, brand, str(cid), "wecom_contact_added", at)
                    if keys and db.scalar(select(Outbox.id).where(Outbox.idem_key == keys[0])):
                        sent += 1
                    t2 = time.perf_counter()
                    total.append(t2 - t0)
                    trigger.append(t2 - t1)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_data_dir()

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(np.array(values), q)) * 1000, 1) if values else 0.0

    p99 = pct(total, 99)
    return {
        "events": n,
        "background_customers": background,
        "outbox_rows": sent,
        "p50_ms": pct(total, 50),
        "p99_ms": p99,
        "max_ms": round(max(total) * 1000, 1) if total else 0.0,
        "trigger_p50_ms": pct(trigger, 50),
        "trigger_p99_ms": pct(trigger, 99),
        "target_p99_ms": 1000,
        "met": p99 <= 1000 and sent == n,
    }
