"""Acceptance: importing the exported files yields the same customers and OneID partition as
the demo — and the partition the generator's ground truth says OneID should produce.

SQLite only: the demo lives in a data directory (store + lake), as ``siyu demo`` builds it.

The ground-truth rule. Every generated person has distinct identifier values (ids are
bijections of the person's index, phones too), so no two people may ever share a customer.
A person's identifiers are one customer exactly when the exported files link them: two
identifiers link when one row of some file carries both (the CRM row: member number, phone,
unionid; a WeCom add: external_userid, unionid; a page view: openid, unionid; an order line:
phone with POS card / Tmall buyer id / openid by channel; a survey answer: external_userid,
phone, openid; a referral's referee list), and linking is transitive. Identifiers no file
carries together stay apart legitimately: a JD or Douyin buyer id comes only on marketplace
order lines without a phone, so it is its own customer, as it would be in production.
Referrer lists link nobody (they are properties). Device ids are not exported.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.core.db import dispose_engines, open_session
from siyu.core.settings import reset_settings
from siyu.demo.export import import_brand
from siyu.demo.generate import BrandData, generate

CUSTOMERS, DAYS, SEED = 600, 60, 2026
IdSet = frozenset[tuple[str, str]]


def _use(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIYU_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    reset_settings()
    dispose_engines()


def partition(slug: str) -> dict[IdSet, dict[str, Any]]:
    """Active customers of the current store as {their strong (type, value) set: profile}."""
    from siyu.core.tenancy import SYSTEM
    from siyu.customers import vault
    from siyu.customers.models import Customer, Identity
    from siyu.org import queries

    with open_session() as db:
        brand = queries.access_brand(db, SYSTEM, slug)
        customers = {
            c.id: c
            for c in db.scalars(select(Customer).where(Customer.brand_id == brand.id))
            if c.status == "active"
        }
        groups: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for ident in db.scalars(
            select(Identity).where(Identity.brand_id == brand.id, Identity.weak.is_(False))
        ):
            assert ident.customer_id in customers, (ident.id_type, ident.customer_id)
            value = ident.value if ident.value is not None else vault.decrypt(ident.value_enc or "")
            groups[ident.customer_id].add((ident.id_type, value))
        assert set(groups) == set(customers), "every active customer has identities"
        return {
            frozenset(ids): {
                "gender": customers[cid].gender,
                "city": customers[cid].city,
                "birthday": customers[cid].birthday and customers[cid].birthday.isoformat(),
            }
            for cid, ids in groups.items()
        }


def expected_partition(data: BrandData) -> set[IdSet]:
    """OneID by the rule in the module docstring, from the generator's own columns."""
    c, o = data.customers, data.orders
    links: dict[int, list[set[tuple[str, str]]]] = defaultdict(list)

    def seen(i: int, *types: str) -> None:
        found = {(t, str(c[t][i])) for t in types if c[t][i]}
        if found:
            links[i].append(found)

    for i in range(len(c["idx"])):
        if c["member_no"][i]:
            seen(i, "member_no", "phone", "unionid")
        if c["external_userid"][i]:
            seen(i, "external_userid", "unionid")
    by_channel = {
        "pos": ("phone", "pos_card"),
        "tmall": ("phone", "tmall_buyer"),
        "mini_mall": ("phone", "mini_openid"),
        "jd": ("jd_buyer",),
        "douyin": ("douyin_buyer",),
    }
    for i, ch in zip(o["cust"].tolist(), o["channel"].tolist(), strict=True):
        seen(i, *by_channel[ch])
    ev = data.events
    for i in ev["page_viewed"]["cust"].tolist():
        seen(i, "mini_openid", "unionid")
    for kind in (
        "group_joined",
        "group_left",
        "message_received",
        "message_sent",
        "coupon_issued",
        "coupon_redeemed",
        "checked_in",
    ):
        for i in ev[kind]["cust"].tolist():
            seen(i, "external_userid")
    for i in ev["survey_answered"]["cust"].tolist():
        seen(i, "external_userid", "phone", "mini_openid")
    for i, r in zip(ev["referral"]["cust"].tolist(), ev["referral"]["referrer"].tolist()):
        if c["external_userid"][r]:
            seen(i, "external_userid", "unionid", "phone")
    out: set[IdSet] = set()
    for sets in links.values():
        # union the person's linked sets: merge until no two components overlap
        comps: list[set[tuple[str, str]]] = []
        for s in sets:
            merged = set(s)
            rest = []
            for comp in comps:
                if comp & merged:
                    merged |= comp
                else:
                    rest.append(comp)
            comps = [*rest, merged]
        out.update(frozenset(comp) for comp in comps)
    return out


def test_reimported_exports_give_the_demo_partition_and_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the demo as `siyu demo` builds it (generate → export → import those files)
    demo_dir, export = tmp_path / "demo", tmp_path / "export"
    size = ["--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", str(SEED)]
    result = CliRunner().invoke(
        app, ["demo", "--no-serve", *size, "--data-dir", str(demo_dir), "--export", str(export)]
    )
    assert result.exit_code == 0, result.output
    _use(demo_dir, monkeypatch)
    slugs = ("demo-coffee", "demo-beauty")
    demo = {slug: partition(slug) for slug in slugs}
    # when: a fresh store imports a copy of the exported files
    handed_over = tmp_path / "handed-over"
    shutil.copytree(export, handed_over)
    _use(tmp_path / "fresh", monkeypatch)
    from siyu.demo.org import build_demo_org
    from siyu.migrations import upgrade

    upgrade()
    with open_session() as db:
        build_demo_org(db)
        for slug in slugs:
            results = import_brand(db, handed_over / slug, slug)
            assert [r["file"] for r in results] == [
                "crm_members.csv",
                "wecom_contacts.jsonl",
                "orders.csv",
                "events.csv",
                "csat_survey.xlsx",
                "referrals.jsonl",
            ]
            assert all(r["rejected"] == 0 and r["accepted"] > 0 for r in results), results
    fresh = {slug: partition(slug) for slug in slugs}
    # then: the same customers (identity sets and profiles) as the demo …
    truth = {d.shape.slug: d for d in generate(customers=CUSTOMERS, days=DAYS, seed=SEED)}
    for slug in slugs:
        assert fresh[slug] == demo[slug]
        # … and exactly the partition the ground truth says OneID should produce
        expected = expected_partition(truth[slug])
        got = set(fresh[slug])
        assert got == expected, (len(got - expected), len(expected - got))
        # the rule is not vacuous: people with several linked identifiers, and some apart
        sizes = [len(s) for s in expected]
        assert max(sizes) >= 4 and sizes.count(1) > 0
        assert len(expected) > len(truth[slug].customers["idx"]) * 0.5
        # profiles come from the CRM: each member's customer carries their gender and city
        c = truth[slug].customers
        for i in range(len(c["idx"])):
            if c["member_no"][i]:
                mine = next(
                    p for s, p in fresh[slug].items() if ("member_no", c["member_no"][i]) in s
                )
                assert (mine["gender"], mine["city"], mine["birthday"]) == (
                    str(c["gender"][i]),
                    str(c["city"][i]),
                    str(c["birthday"][i]),
                )
    assert os.environ["SIYU_DATA_DIR"] == str(tmp_path / "fresh")
