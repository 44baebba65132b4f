"""The console (server-rendered pages): sign-in, CSRF, language, forms, data scope, tenancy.

Runs on SQLite and PostgreSQL through the ``client`` fixture; the cast is ``world``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from siyu.core.clock import utcnow
from siyu.org.models import ROLES, SCOPES, UNIT_KINDS, WebSession
from siyu.org.permissions import PERMISSIONS
from siyu.web.render import NAV
from tests.factories import login


@pytest.fixture(autouse=True)
def _cast(request: pytest.FixtureRequest) -> None:
    """Every test that talks to the app gets the cast (pure tests stay database-free)."""
    if "client" in request.fixturenames:
        request.getfixturevalue("world")


LOCALES = Path(__file__).parents[1] / "src" / "siyu" / "core" / "locales"
TEMPLATES = Path(__file__).parents[1] / "src" / "siyu" / "web" / "templates"


def _csrf(client: Any) -> str:
    return client.cookies.get("siyu_csrf") or ""


def _console_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every console route, flattening included routers."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:  # older FastAPI: app.routes is already flat
        routes = app.routes
    for route in routes:
        path = getattr(route, "path", None) or ""
        if path.startswith("/api/") or not path:
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, path


def _brand_routes(app: Any) -> list[tuple[str, str]]:
    found = [(m, p) for m, p in _console_routes(app) if "{brand}" in p]
    assert len(found) >= 10, found  # the enumeration itself must not silently break
    return found


def _fill(path: str, brand: str) -> str:
    return re.sub(r"\{[^}]+\}", "x0", path.replace("{brand}", brand))


# ---------------------------------------------------------------- sign-in


def test_login_page_is_chinese_by_default(client: Any) -> None:
    r = client.get("/login")
    assert r.status_code == 200
    assert '<html lang="zh-CN">' in r.text
    assert "登录思屿控制台" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")


def test_language_switch_sets_cookie_and_sticks(client: Any) -> None:
    r = client.get("/login?lang=en", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert "siyu_lang=en" in r.headers["set-cookie"]
    r = client.get("/login")
    assert '<html lang="en">' in r.text
    assert "Sign in to Siyu" in r.text
    r = client.get("/login?lang=zh-CN")
    assert "登录思屿控制台" in r.text


def test_language_switch_is_not_an_open_redirect(client: Any) -> None:
    r = client.get("http://testserver//evil.example/?lang=en", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/evil.example/"


def test_login_sets_session_and_csrf_cookies(client: Any) -> None:
    r = client.post(
        "/login", data={"username": "a.admin", "password": "password123"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("siyu_session="))
    csrf = next(c for c in cookies if c.startswith("siyu_csrf="))
    assert "HttpOnly" in session
    assert "samesite=lax" in session.lower()
    assert "Path=/" in session
    assert "Secure" not in session  # plain http and cookie_secure unset
    assert "HttpOnly" not in csrf
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/b/a-coffee"
    r = client.get("/b/a-coffee")
    assert r.status_code == 200
    assert "概览" in r.text
    assert "A 咖啡" in r.text


def test_cookie_secure_setting(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from siyu.core.settings import reset_settings

    monkeypatch.setenv("SIYU_COOKIE_SECURE", "true")
    reset_settings()
    r = client.post(
        "/login", data={"username": "a.admin", "password": "password123"}, follow_redirects=False
    )
    assert all("Secure" in c for c in r.headers.get_list("set-cookie"))


def test_login_helper_from_factories_works(client: Any) -> None:
    headers = login(client, "a.admin")
    assert headers["X-CSRF-Token"]


@pytest.mark.parametrize(
    ("lang", "text"), [("zh-CN", "账号或密码错误"), ("en", "Wrong username or password")]
)
def test_wrong_password_shows_message(client: Any, lang: str, text: str) -> None:
    client.cookies.set("siyu_lang", lang)
    r = client.post("/login", data={"username": "a.admin", "password": "nope-nope"})
    assert r.status_code == 401
    assert text in r.text
    assert 'value="a.admin"' in r.text  # the username is kept
    assert "siyu_session" not in client.cookies


def test_five_failures_lock_the_account(client: Any) -> None:
    for _ in range(5):
        r = client.post("/login", data={"username": "a.east", "password": "wrong-pass"})
        assert r.status_code == 401
    r = client.post("/login", data={"username": "a.east", "password": "password123"})
    assert r.status_code == 423
    assert "账号已锁定" in r.text


def test_expired_session_redirects_to_login(client: Any, db: Any) -> None:
    login(client, "a.admin")
    db.execute(update(WebSession).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    r = client.get("/b/a-coffee/org", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?expired=1"
    r = client.get(r.headers["location"])
    assert "登录已过期" in r.text


def test_expired_session_on_htmx_request_navigates(client: Any, db: Any) -> None:
    login(client, "a.admin")
    db.execute(update(WebSession).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    r = client.get("/b/a-coffee/org", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.headers["hx-redirect"] == "/login?expired=1"


def test_pages_need_a_session(client: Any) -> None:
    for path in ("/", "/b/a-coffee", "/b/a-coffee/org"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/login"


def test_logout_ends_the_session(client: Any) -> None:
    login(client, "a.admin")
    r = client.post("/logout", data={"csrf_token": _csrf(client)}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    r = client.get("/b/a-coffee", follow_redirects=False)
    assert r.headers["location"].startswith("/login")


# ---------------------------------------------------------------- CSRF


def test_post_without_csrf_token_is_refused(client: Any) -> None:
    login(client, "a.admin")
    form = {"code": "A-NEW", "name": "新店", "kind": "store"}
    r = client.post("/b/a-coffee/org/units", data=form)
    assert r.status_code == 403
    assert 'data-code="auth.csrf_failed"' in r.text
    assert "CSRF" in r.text
    r = client.post("/b/a-coffee/org/units", data={**form, "csrf_token": "forged"})
    assert r.status_code == 403
    r = client.post("/logout")
    assert r.status_code == 403
    # nothing was created
    assert "A-NEW" not in client.get("/b/a-coffee/org").text


# ---------------------------------------------------------------- language


def test_console_in_english(client: Any) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/staff?lang=en")
    assert r.status_code == 200
    assert '<html lang="en">' in r.text
    assert "Staff &amp; roles" in r.text
    assert "Store manager" in r.text
    assert "Unit and below" in r.text
    r = client.get("/b/a-coffee/staff?lang=zh-CN")
    assert "员工与角色" in r.text
    assert "店长" in r.text
    assert "本组织及下级" in r.text


# ---------------------------------------------------------------- org units


def test_create_unit_through_the_form(client: Any) -> None:
    login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/org/units",
        follow_redirects=False,
        data={
            "csrf_token": _csrf(client),
            "code": "A-SH03",
            "name": "新天地店",
            "kind": "store",
            "parent": "A-EAST",
            "city": "上海",
        },
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/b/a-coffee/org?created=A-SH03"
    r = client.get(r.headers["location"])
    assert "组织 A-SH03 已创建" in r.text
    assert "新天地店" in r.text
    assert 'data-code="A-SH03"' in r.text


def test_duplicate_unit_code_is_shown_inline(client: Any) -> None:
    headers = login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/org/units",
        headers=headers,
        data={"code": "A-SH01", "name": "重复的店", "kind": "store", "parent": "A-EAST"},
    )
    assert r.status_code == 409
    assert 'data-code="org.unit_code_taken"' in r.text
    assert "A-SH01" in r.text
    assert 'value="重复的店"' in r.text  # entered values are kept
    assert 'class="field has-error"' in r.text


def test_invalid_unit_fields_are_shown_inline(client: Any) -> None:
    headers = login(client, "a.admin")
    client.cookies.set("siyu_lang", "en")
    r = client.post(
        "/b/a-coffee/org/units",
        headers=headers,
        data={"code": "bad code!", "name": "", "kind": "store"},
    )
    assert r.status_code == 422
    assert 'data-code="validation.failed"' in r.text
    assert "Required" in r.text  # name
    assert "Invalid" in r.text  # code
    assert 'value="bad code!"' in r.text


def test_import_units_shows_the_row_report(client: Any) -> None:
    headers = login(client, "a.admin")
    csv = "code,name,kind,parent\nA-HZ01,西湖店,store,A-EAST\nA-HZ02,,store,A-EAST\n"
    r = client.post(
        "/b/a-coffee/org/import",
        headers=headers,
        files={"file": ("units.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200
    assert "西湖店" in r.text
    report = r.text[r.text.index('class="import-report"') :]
    assert "新增 <b>1</b>" in report
    assert "拒绝 <b>1</b>" in report
    assert "<td>3</td>" in report  # the bad line is named
    assert "<td>必填</td>" in report  # and why, in the viewer's language


def test_import_without_a_file_says_so(client: Any) -> None:
    headers = login(client, "a.admin")
    r = client.post("/b/a-coffee/org/import", headers=headers, data={"dry_run": "1"})
    assert r.status_code == 422
    assert "请选择要导入的文件" in r.text


# ---------------------------------------------------------------- staff


def test_create_staff_through_the_form(client: Any) -> None:
    login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/staff",
        follow_redirects=False,
        data={
            "csrf_token": _csrf(client),
            "name": "王小明",
            "username": "a.wang",
            "role": "guide",
            "scope": "",
            "unit": "A-SH02",
            "wecom_userid": "wangxm",
            "password": "",
        },
    )
    assert r.status_code == 303
    r = client.get(r.headers["location"])
    row = r.text[r.text.index('data-username="a.wang"') :]
    row = row[: row.index("</tr>")]
    assert "王小明" in row
    assert "导购" in row
    assert "本人" in row
    assert "徐汇店" in row
    assert "wangxm" in row
    # and the guide shows under the store in the tree
    tree = client.get("/b/a-coffee/org").text
    store = tree[tree.index('data-code="A-SH02"') :]
    assert "王小明" in store[: store.index("</li>")]


def test_staff_errors_are_inline_and_password_not_echoed(client: Any) -> None:
    headers = login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/staff",
        headers=headers,
        data={
            "name": "重名",
            "username": "a.guide",
            "role": "guide",
            "unit": "A-SH01",
            "password": "secret-password",
        },
    )
    assert r.status_code == 409
    assert 'data-code="org.username_taken"' in r.text
    assert "secret-password" not in r.text


def test_store_manager_cannot_grant_a_wider_role(client: Any) -> None:
    headers = login(client, "a.sh01mgr")
    page = client.get("/b/a-coffee/staff").text
    assert 'value="admin"' not in page  # roles they cannot grant are not offered
    r = client.post(
        "/b/a-coffee/staff", headers=headers, data={"name": "X", "username": "a.x", "role": "admin"}
    )
    assert r.status_code == 403
    assert 'data-code="org.cannot_grant_role"' in r.text


def test_add_existing_agency_staff_to_another_brand(client: Any) -> None:
    headers = login(client, "a.am")
    r = client.post(
        "/b/a-tea/staff/memberships",
        headers=headers,
        follow_redirects=False,
        data={"username": "a.guide", "role": "guide", "unit": "T-S01"},
    )
    assert r.status_code == 303
    page = client.get("/b/a-tea/staff").text
    assert 'data-username="a.guide"' in page
    # someone of another tenant cannot be added
    r = client.post(
        "/b/a-tea/staff/memberships",
        headers=headers,
        data={"username": "b.guide", "role": "guide", "unit": "T-S01"},
    )
    assert r.status_code == 404
    assert 'data-code="org.staff_not_found"' in r.text


def test_import_staff(client: Any) -> None:
    headers = login(client, "a.admin")
    csv = "姓名,账号,角色,组织编码\n李四,a.lisi,导购,A-SH01\n"
    r = client.post(
        "/b/a-coffee/staff/import",
        headers=headers,
        files={"file": ("staff.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200
    assert 'data-username="a.lisi"' in r.text


# ---------------------------------------------------------------- API keys and audit


def test_api_key_secret_is_shown_once(client: Any) -> None:
    headers = login(client, "a.admin")
    r = client.post(
        "/b/a-coffee/api-keys",
        headers=headers,
        data={"name": "CRM 同步", "scopes": ["org.read", "events.write"]},
    )
    assert r.status_code == 201
    secret = re.search(r'<code id="new-secret">(sk_[^<]+)</code>', r.text)
    assert secret is not None
    page = client.get("/b/a-coffee/api-keys").text
    assert secret.group(1) not in page
    assert "CRM 同步" in page
    assert secret.group(1)[:10] in page  # the prefix stays visible
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert me.status_code == 200
    key_id = re.search(r'data-key="([^"]+)"', page)
    assert key_id is not None
    r = client.post(f"/b/a-coffee/api-keys/{key_id.group(1)}/revoke", headers=headers)
    assert r.status_code == 200
    assert "已吊销" in r.text


def test_api_key_needs_a_scope(client: Any) -> None:
    headers = login(client, "a.admin")
    r = client.post("/b/a-coffee/api-keys", headers=headers, data={"name": "空"})
    assert r.status_code == 422
    assert "请至少选择一项" in r.text


def test_audit_log_in_brand_time_zone(client: Any) -> None:
    login(client, "a.analyst")
    r = client.get("/b/a-coffee/audit")
    assert r.status_code == 200
    assert "unit.create" in r.text
    assert "<details>" in r.text
    assert "Asia/Shanghai" in r.text


# ---------------------------------------------------------------- data scope and navigation


def test_store_manager_sees_only_their_subtree(client: Any) -> None:
    login(client, "a.sh01mgr")
    page = client.get("/b/a-coffee/org").text
    assert 'data-code="A-SH01"' in page
    for code in ("A-HQ", "A-EAST", "A-SH02", "A-GZ01"):
        assert f'data-code="{code}"' not in page
    assert 'action="/b/a-coffee/org/units"' not in page  # no org.write, no form


def test_switcher_lists_only_accessible_brands(client: Any) -> None:
    login(client, "shared")
    page = client.get("/b/a-coffee").text
    assert 'value="a-coffee"' in page
    assert 'value="a-tea"' in page
    assert 'value="b-shop"' not in page
    # a guide's navigation has no API keys or audit log
    assert "/b/a-coffee/api-keys" not in page
    assert "/b/a-coffee/audit" not in page
    assert client.get("/b/a-coffee/audit").status_code == 403


def test_switch_brand(client: Any) -> None:
    headers = login(client, "a.am")
    r = client.post(
        "/switch-brand", headers=headers, data={"brand": "a-tea"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/b/a-tea/org"
    assert client.get("/", follow_redirects=False).headers["location"] == "/b/a-tea"
    r = client.post("/switch-brand", headers=headers, data={"brand": "b-shop"})
    assert r.status_code == 404


def test_user_without_brands_sees_a_notice(client: Any, db: Any) -> None:
    from siyu.core.tenancy import SYSTEM
    from siyu.org import actions, queries
    from siyu.org.schemas import StaffPatch

    brand = queries.access_brand(db, SYSTEM, "b-shop")
    actions.update_staff(db, SYSTEM, brand, "b.guide", StaffPatch(active=False))
    login(client, "b.guide")
    r = client.get("/")
    assert r.status_code == 200
    assert "暂无可访问的品牌" in r.text


# ---------------------------------------------------------------- tenancy


def test_every_brand_route_hides_other_tenants(client: Any, app: Any) -> None:
    headers = login(client, "a.admin")
    for method, path in _brand_routes(app):
        url = _fill(path, "b-shop")
        if method == "GET":
            r = client.get(url, follow_redirects=False)
        else:
            r = client.request(method, url, headers=headers, follow_redirects=False)
        assert r.status_code == 404, (method, path, r.status_code)
        assert "B 商店" not in r.text


def test_guide_cannot_use_write_routes(client: Any, app: Any) -> None:
    headers = login(client, "a.guide")
    writes = [(m, p) for m, p in _brand_routes(app) if m != "GET"]
    assert writes
    for method, path in writes:
        r = client.request(method, _fill(path, "a-coffee"), headers=headers, follow_redirects=False)
        assert r.status_code in (403, 404), (method, path, r.status_code)


@pytest.mark.parametrize(
    "username", ["a.admin", "a.am", "a.east", "a.sh01mgr", "a.guide", "a.analyst", "root"]
)
def test_every_brand_page_renders_or_is_forbidden(client: Any, app: Any, username: str) -> None:
    login(client, username)
    for method, path in _brand_routes(app):
        if method != "GET" or "{" in path.replace("{brand}", ""):
            continue
        r = client.get(path.replace("{brand}", "a-coffee"), follow_redirects=False)
        assert r.status_code in (200, 403), (username, path, r.status_code)
        if r.status_code == 200:
            # HTMX requests carry the CSRF token from <body hx-headers>
            assert 'hx-headers=\'{"X-CSRF-Token": "' + _csrf(client) + "\"}'" in r.text


def test_unknown_brand_is_404(client: Any) -> None:
    login(client, "root")
    assert client.get("/b/no-such-brand").status_code == 404


# ---------------------------------------------------------------- assets, errors, catalogue


def test_static_assets(client: Any) -> None:
    assert client.get("/static/console.css").status_code == 200
    assert client.get("/static/console.js").status_code == 200
    assert client.get("/static/vendor/not-listed.js").status_code == 404
    htmx = client.get("/static/vendor/htmx.min.js")
    if htmx.status_code == 404:
        pytest.skip("node_modules not installed (npm install)")
    assert htmx.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/vendor/echarts.min.js").status_code == 200


def test_unknown_console_page_is_an_html_404(client: Any) -> None:
    r = client.get("/no/such/page")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "请求的资源不存在" in r.text


def test_overview_has_counts_and_chart(client: Any) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee")
    chart = re.search(r"data-chart='([^']+)'", r.text)
    assert chart is not None
    option = json.loads(chart.group(1))
    assert "导购" in option["yAxis"]["data"]


def test_catalogues_have_the_same_ui_keys() -> None:
    zh = json.loads((LOCALES / "zh-CN.json").read_text(encoding="utf-8"))
    en = json.loads((LOCALES / "en.json").read_text(encoding="utf-8"))
    assert {k for k in zh if k.startswith("ui.")} == {k for k in en if k.startswith("ui.")}
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"t\('(ui\.[a-z_.]*[a-z_])'", template.read_text(encoding="utf-8")))
    for family, values in (
        ("role", ROLES),
        ("scope", SCOPES),
        ("kind", UNIT_KINDS),
        ("perm", PERMISSIONS),
    ):
        used |= {f"ui.{family}.{v}" for v in values}
    used |= {f"ui.nav.{key}" for key, _suffix, _perm in NAV}
    assert used <= zh.keys(), used - zh.keys()
