"""The console's settings page of the built-in computed tag groups (``/b/{brand}/tags/settings``):
RFM cut points (monetary entered in yuan, stored in fen), lifecycle days and the value model's
parameters, what the last full run derived (read-only), errors on the form, permissions and
tenancy — over real HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.tenancy import SYSTEM
from siyu.org.models import Brand
from siyu.org.queries import access_brand
from siyu.tags import actions, library
from siyu.tags.models import Tag
from tests.factories import login

URL = "/b/a-coffee/tags/settings"
RFM = {
    "group": "rfm_segment",
    "window_days": "365",
    "high_from": "3",
    "recency": "30, 60, 90, 180",
    "frequency": "2, 3, 4, 6",
    "monetary": "50, 100, 200.5, 500",
}
LIFECYCLE = {
    "group": "lifecycle",
    "new_days": "14",
    "active_days": "60",
    "silent_days": "120",
    "churn_days": "300",
    "won_back_gap_days": "90",
}


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def brand_of(db: Session) -> Brand:
    """A fresh look at a-coffee, with its tag library in place."""
    db.rollback()
    brand = access_brand(db, SYSTEM, "a-coffee")
    library.ensure(db, brand)
    return brand


def stored(db: Session, group: str) -> dict[str, Any]:
    brand = brand_of(db)
    return dict(actions.group_by_key(db, brand, group).settings or {})


def audits(db: Session) -> int:
    db.rollback()
    query = select(func.count()).where(AuditEntry.action == "tag_settings.update")
    return int(db.scalar(query) or 0)


def versions(db: Session, *groups: str) -> dict[str, int]:
    brand = brand_of(db)
    ids = [actions.group_by_key(db, brand, g).id for g in groups]
    return {t.key: t.version for t in db.scalars(select(Tag).where(Tag.group_id.in_(ids)))}


def test_page_shows_the_defaults_in_chinese(client: Any, world: Any) -> None:
    login(client, "a.admin")
    r = client.get(URL)
    assert r.status_code == 200
    assert '<html lang="zh-CN">' in r.text and "计算标签设置" in r.text
    assert 'class="nav-tags active"' in r.text
    rfm = section(r.text, "settings-rfm_segment")
    assert 'name="recency" value="30, 60, 90, 180"' in rfm
    assert 'name="frequency" value="2, 3, 4, 6"' in rfm
    assert 'name="monetary" value=""' in rfm and "默认：按数据推导" in rfm
    assert 'name="window_days" value="365"' in rfm and 'name="csrf_token"' in rfm
    life = section(r.text, "settings-lifecycle")
    for name, value in (("new_days", 30), ("active_days", 90), ("churn_days", 365)):
        assert f'name="{name}" value="{value}"' in life
    model = section(r.text, "settings-value_model")
    assert 'name="penalizer" value="0.001"' in model
    assert '<option value="weeks" selected>周</option>' in model
    # nothing derived before a full run
    assert 'data-derived="none"' in section(r.text, "derived-rfm_segment")
    assert 'data-derived="none"' in section(r.text, "derived-value_model")


def test_page_in_english(client: Any, world: Any) -> None:
    login(client, "a.admin")
    client.get(f"{URL}?lang=en")
    r = client.get(URL)
    assert r.status_code == 200 and '<html lang="en">' in r.text
    assert "Computed tag settings" in r.text and "Save settings" in r.text
    assert "Recency cut points (days, lower is better)" in r.text
    assert "Default: derived from the data" in r.text
    assert '<option value="weeks" selected>weeks</option>' in r.text
    # and the tag library links to it
    assert 'id="tag-settings-link"' in client.get("/b/a-coffee/tags").text


def test_save_rfm_cut_points_in_yuan(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.admin")
    before = versions(db, "rfm_segment", "rfm_r", "rfm_m")
    data = {**RFM, "csrf_token": headers["X-CSRF-Token"], "recency": "15，45、90 200"}
    r = client.post(URL, data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{URL}?done=rfm_segment"
    params = stored(db, "rfm_segment")["params"]
    assert params["monetary"] == [5000, 10000, 20050, 50000]  # yuan → fen
    assert params["recency"] == [15, 45, 90, 200] and params["frequency"] == [2, 3, 4, 6]
    assert params["window_days"] == 365 and params["high_from"] == 3
    assert audits(db) == 1
    # every tag of the group and of the score groups is recomputed on the next run
    after = versions(db, "rfm_segment", "rfm_r", "rfm_m")
    assert after.keys() == before.keys() and all(after[k] == before[k] + 1 for k in before)
    page = client.get(r.headers["location"]).text
    saved = page[page.index('id="settings-saved"') :]
    assert 'data-done="rfm_segment"' in saved
    assert "该组的每个标签都会为所有客户重新计算" in saved and "R、F、M 评分组" in saved
    rfm = section(page, "settings-rfm_segment")
    assert 'name="monetary" value="50, 100, 200.50, 500"' in rfm  # back in yuan
    assert "data-customised" in rfm
    # a done= that is not a settings group shows nothing
    assert 'id="settings-saved"' not in client.get(f"{URL}?done=org").text
    # an emptied field goes back to being derived from the data
    r = client.post(URL, data={**data, "recency": " "}, follow_redirects=False)
    assert r.status_code == 303
    assert stored(db, "rfm_segment")["params"]["recency"] is None


def test_save_lifecycle_days(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.analyst")  # analysts define and compute tags
    data = {**LIFECYCLE, "csrf_token": headers["X-CSRF-Token"]}
    r = client.post(URL, data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    params = stored(db, "lifecycle")["params"]
    assert params == {
        "new_days": 14,
        "active_days": 60,
        "silent_days": 120,
        "churn_days": 300,
        "won_back_gap_days": 90,
    }
    assert audits(db) == 1
    db.rollback()
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "tag_settings.update"))
    assert entry is not None
    page = client.get(r.headers["location"]).text
    assert 'data-done="lifecycle"' in page
    assert 'name="active_days" value="60"' in section(page, "settings-lifecycle")


def test_save_value_model(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.admin")
    data = {
        "csrf_token": headers["X-CSRF-Token"],
        "group": "value_model",
        "horizon_days": "180",
        "discount_rate": "0.01",
        "unit": "days",
        "penalizer": "0.1",
    }
    assert client.post(URL, data=data, follow_redirects=False).status_code == 303
    params = stored(db, "value_model")["params"]
    assert params == {"horizon_days": 180, "discount_rate": 0.01, "unit": "days", "penalizer": 0.1}
    page = client.get(URL).text
    assert '<option value="days" selected>' in section(page, "settings-value_model")


def test_invalid_input_is_shown_and_changes_nothing(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.admin")
    token = headers["X-CSRF-Token"]
    before = stored(db, "rfm_segment")
    cases = (
        ({**RFM, "recency": "90, 60, 30, 10"}, "recency", "four increasing whole numbers"),
        ({**RFM, "frequency": "1, 2, 3"}, "frequency", "four increasing whole numbers"),
        ({**RFM, "frequency": "1, 2, x, 4"}, "frequency", "four increasing whole numbers"),
        ({**RFM, "monetary": "1.005, 2, 3, 4"}, "monetary", "at most two decimals"),
        ({**RFM, "window_days": "3"}, "window_days", "window_days must be a number"),
        ({**RFM, "high_from": "abc"}, "high_from", "whole number"),
        ({**LIFECYCLE, "silent_days": "30"}, "active_days", "active_days &lt; silent_days"),
        ({**LIFECYCLE, "churn_days": ""}, "churn_days", "churn_days is required"),
    )
    for data, field, reason in cases:
        r = client.post(URL, data={**data, "csrf_token": token})
        assert r.status_code == 422, (data, r.status_code)
        form = section(r.text, f"settings-{data['group']}")
        assert 'data-code="tags.bad_settings"' in form and "标签设置无效" in form
        assert reason in form, (field, reason)
        # the field is marked and the user's input is kept
        assert f'aria-describedby="settings-{data["group"]}-{field}-error"' in form, field
        for name, value in data.items():
            if name != "group":
                assert f'name="{name}" value="{value}"' in form, (name, value)
    assert stored(db, "rfm_segment") == before
    assert "params" not in stored(db, "lifecycle")
    assert audits(db) == 0
    # the other groups keep showing their stored values
    r = client.post(URL, data={**RFM, "recency": "4, 3, 2, 1", "csrf_token": token})
    assert 'name="new_days" value="30"' in section(r.text, "settings-lifecycle")
    assert 'data-code="tags.bad_settings"' not in section(r.text, "settings-lifecycle")
    # an unknown group is refused
    r = client.post(URL, data={"csrf_token": token, "group": "org", "x": "1"})
    assert r.status_code == 422 and audits(db) == 0


def test_derived_values_of_the_last_full_run_are_shown(
    client: Any, db: Session, world: Any
) -> None:
    brand = brand_of(db)
    rfm = actions.group_by_key(db, brand, "rfm_segment")
    rfm.settings = {"derived": {"monetary": [1800, 3000, 4500, 9900], "as_of": "2024-05-01"}}
    model = actions.group_by_key(db, brand, "value_model")
    fit = {
        "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
        "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
        "meta": {"customers": 2357, "repeaters": 1000},
    }
    model.settings = {"derived": {"fit": fit, "as_of": "2024-05-02"}}
    db.commit()
    login(client, "a.admin")
    page = client.get(URL).text
    derived = section(page, "derived-rfm_segment")
    assert 'data-as-of="2024-05-01"' in derived
    assert "¥18.00, ¥30.00, ¥45.00, ¥99.00" in derived and "使用中" in derived
    fitted = section(page, "derived-value_model")
    assert 'data-as-of="2024-05-02"' in fitted
    for name, value in (("r", "0.243"), ("alpha", "4.414"), ("b", "2.426"), ("gamma", "15.44")):
        assert f'data-fit="{name}">{value}</dd>' in fitted
    assert "2357" in fitted
    # derived values are not form fields: saving keeps them
    headers = {"X-CSRF-Token": client.cookies.get("siyu_csrf") or ""}
    data = {**RFM, "monetary": "10, 20, 30, 40", "csrf_token": headers["X-CSRF-Token"]}
    assert client.post(URL, data=data, follow_redirects=False).status_code == 303
    settings = stored(db, "rfm_segment")
    assert settings["derived"]["monetary"] == [1800, 3000, 4500, 9900]
    assert "未使用" in section(client.get(URL).text, "derived-rfm_segment")


def test_without_tags_write_read_only_and_403(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.guide")
    r = client.get(URL)
    assert r.status_code == 200
    assert "<form" not in section(r.text, "settings-rfm_segment")
    assert 'name="csrf_token"' not in section(r.text, "settings-lifecycle")
    assert 'data-setting="recency">30, 60, 90, 180</dd>' in r.text
    assert 'id="read-only"' in r.text
    for data in (RFM, LIFECYCLE):
        r = client.post(URL, data={**data, "csrf_token": headers["X-CSRF-Token"]})
        assert r.status_code == 403
        assert 'data-code="auth.permission_denied"' in r.text
    assert audits(db) == 0 and "params" not in stored(db, "rfm_segment")


def test_another_tenants_settings_are_not_found(client: Any, db: Session, world: Any) -> None:
    headers = login(client, "t.admin")
    assert client.get(URL).status_code == 404
    r = client.post(URL, data={**LIFECYCLE, "csrf_token": headers["X-CSRF-Token"]})
    assert r.status_code == 404 and "A 咖啡" not in r.text
    assert audits(db) == 0
    # the own brand's page works
    assert client.get("/b/a-tea/tags/settings").status_code == 200
