"""The local WeCom server checked against shared/WECOM.md with raw httpx (never our client):
formats, documented limits, error codes, and callbacks that verify with crypto.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from siyu.wecom.crypto import WeComCrypt, parse_xml
from siyu.wecom.fake import FakeServer, FakeWeCom

CORP, SECRET = "wwtestcorp0001", "test-secret"


@pytest.fixture
def fake() -> FakeWeCom:
    w = FakeWeCom(corp_id=CORP, secret=SECRET)
    w.seed_demo(customers=12)
    return w


@pytest.fixture
def base(fake: FakeWeCom) -> Iterator[str]:
    server = FakeServer(fake)
    yield server.start()
    server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def token_of(http: httpx.Client, base: str) -> str:
    data = http.get(f"{base}/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": SECRET})
    return str(data.json()["access_token"])


def call(
    http: httpx.Client, base: str, api: str, body: dict[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    params.setdefault("access_token", token_of(http, base))
    if body is None:
        resp = http.get(f"{base}/cgi-bin/{api}", params=params)
    else:
        resp = http.post(f"{base}/cgi-bin/{api}", params=params, json=body)
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()
    return data


class Receiver:
    """A loopback callback endpoint recording what it gets; ``plan`` scripts its answers
    (an int status, or a float: sleep that long, then 200)."""

    def __init__(self, plan: list[int | float] | None = None) -> None:
        self.plan = list(plan or [])
        self.hits: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hits.append((query, body))
                step = outer.plan.pop(0) if outer.plan else 200
                if isinstance(step, float):
                    time.sleep(step)
                    step = 200
                self.send_response(step)
                self.end_headers()
                self.wfile.write(b"success")
                outer.got.set()

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                crypt = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP)
                plain = crypt.verify_url(
                    query["msg_signature"], query["timestamp"], query["nonce"], query["echostr"]
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(plain.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wecom/callback/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


DEFAULT_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# ---------------------------------------------------------------------- token


def test_gettoken_answers_a_token_valid_7200_s(base: str, http: httpx.Client) -> None:
    data = http.get(
        f"{base}/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": SECRET}
    ).json()
    assert data["errcode"] == 0
    assert data["expires_in"] == 7200
    assert data["access_token"]


@pytest.mark.parametrize(
    ("corpid", "secret", "errcode"), [(CORP, "wrong", 40001), ("wwother", SECRET, 40013)]
)
def test_gettoken_refuses_bad_credentials(
    base: str, http: httpx.Client, corpid: str, secret: str, errcode: int
) -> None:
    data = http.get(f"{base}/cgi-bin/gettoken", params={"corpid": corpid, "corpsecret": secret})
    assert data.json()["errcode"] == errcode
    assert "access_token" not in data.json()


def test_token_missing_invalid_expired_and_invalidated(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    url = f"{base}/cgi-bin/department/list"
    assert http.get(url).json()["errcode"] == 41001
    assert http.get(url, params={"access_token": "forged"}).json()["errcode"] == 40014
    token = token_of(http, base)
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 0
    fake.advance(7200)  # the token's lifetime passes
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 42001
    token = token_of(http, base)
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 0
    http.post(f"{base}/fake/tokens/invalidate")  # invalidated early
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 40014


def test_token_lifetime_is_a_setting(base: str, http: httpx.Client, fake: FakeWeCom) -> None:
    fake.configure(token_ttl=30)
    data = http.get(f"{base}/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": SECRET})
    assert data.json()["expires_in"] == 30
    fake.advance(31)
    url = f"{base}/cgi-bin/department/list"
    assert (
        http.get(url, params={"access_token": data.json()["access_token"]}).json()["errcode"]
        == 42001
    )


# ---------------------------------------------------------------------- limits, injection


def test_minute_limit_per_api_answers_45009_and_blocks_60_s(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    fake.configure(api_limit_per_minute=3)
    token = token_of(http, base)
    fake.advance(61 - fake.now() % 60)  # 1 s into a minute: the calls share it
    url = f"{base}/cgi-bin/department/list"
    codes = [http.get(url, params={"access_token": token}).json()["errcode"] for _ in range(4)]
    assert codes == [0, 0, 0, 45009]
    # another API has its own count
    other = f"{base}/cgi-bin/user/list"
    assert (
        http.get(other, params={"access_token": token, "department_id": 1}).json()["errcode"] == 0
    )
    fake.advance(30)
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 45009
    fake.advance(31)
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 0


@pytest.mark.parametrize("errcode", [-1, 45009, 45033, 40014, 42001])
def test_injected_errors_answer_n_times_then_normal(
    base: str, http: httpx.Client, errcode: int
) -> None:
    http.post(
        f"{base}/fake/inject",
        json={"api": "externalcontact/list", "errcode": errcode, "times": 2},
    )
    token = token_of(http, base)
    url = f"{base}/cgi-bin/externalcontact/list"
    codes = [
        http.get(url, params={"access_token": token, "userid": "zhangsan"}).json()["errcode"]
        for _ in range(3)
    ]
    assert codes == [errcode, errcode, 0]


def test_concurrency_limit_answers_45033(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    fake.configure(max_concurrent_per_api=0)
    assert call(http, base, "department/list", None)["errcode"] == 45033


def test_post_body_must_be_json(base: str, http: httpx.Client) -> None:
    token = token_of(http, base)
    resp = http.post(
        f"{base}/cgi-bin/externalcontact/groupchat/list",
        params={"access_token": token},
        content=b"<xml/>",
    )
    assert resp.json()["errcode"] == 47001


# ---------------------------------------------------------------------- staff, customers


def test_staff_sync_formats(base: str, http: httpx.Client) -> None:
    deps = call(http, base, "department/list")["department"]
    assert {d["id"] for d in deps} == {1, 2}
    assert {"id", "name", "parentid", "order"} <= set(deps[0])
    users = call(http, base, "user/list", department_id=1, fetch_child=1)["userlist"]
    assert {u["userid"] for u in users} == {"zhangsan", "lisi", "wangwu"}
    only_root = call(http, base, "user/list", department_id=2)["userlist"]
    assert {u["userid"] for u in only_root} == {"zhangsan", "lisi"}


def test_external_contact_list_and_get(base: str, http: httpx.Client) -> None:
    xids = call(http, base, "externalcontact/list", userid="zhangsan")["external_userid"]
    assert len(xids) == 4
    got = call(http, base, "externalcontact/get", external_userid=xids[0])
    assert {"external_userid", "name", "avatar", "type", "gender"} <= set(got["external_contact"])
    follow = got["follow_user"][0]
    assert follow["userid"] == "zhangsan"
    assert {"remark", "description", "createtime", "tags", "add_way", "state"} <= set(follow)
    assert call(http, base, "externalcontact/get", external_userid="nobody")["errcode"] == 40096


def test_batch_get_by_user_pages_and_limits(base: str, http: httpx.Client) -> None:
    api = "externalcontact/batch/get_by_user"
    users = ["zhangsan", "lisi", "wangwu"]
    seen, cursor, pages = [], "", 0
    while True:
        data = call(http, base, api, {"userid_list": users, "cursor": cursor, "limit": 5})
        assert data["errcode"] == 0
        assert len(data["external_contact_list"]) <= 5
        seen += [
            (i["follow_info"]["userid"], i["external_contact"]["external_userid"])
            for i in data["external_contact_list"]
        ]
        pages += 1
        cursor = data["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 12
    # batch follow_info carries tag ids only (get's follow_user carries tag details)
    follow = data["external_contact_list"][0]["follow_info"]
    assert isinstance(follow["tag_id"], list) and len(follow["tag_id"]) == 1
    assert "tags" not in follow
    assert {"userid", "remark", "createtime", "add_way", "oper_userid"} <= set(follow)
    too_many = call(http, base, api, {"userid_list": [f"u{i}" for i in range(101)]})
    assert too_many["errcode"] == 40058
    assert call(http, base, api, {"userid_list": users, "limit": 101})["errcode"] == 40058


def test_remark_and_mark_tag(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    groups = call(http, base, "externalcontact/get_corp_tag_list", {})["tag_group"]
    tag_id = groups[0]["tag"][2]["id"]
    body = {"userid": "zhangsan", "external_userid": "wmdemo0001"}
    assert call(http, base, "externalcontact/remark", {**body, "remark": "老客"})["errcode"] == 0
    marked = call(http, base, "externalcontact/mark_tag", {**body, "add_tag": [tag_id]})
    assert marked["errcode"] == 0
    follow = call(http, base, "externalcontact/get", external_userid="wmdemo0001")["follow_user"][0]
    assert follow["remark"] == "老客"
    assert tag_id in {t["tag_id"] for t in follow["tags"]}
    not_his = {"userid": "lisi", "external_userid": "wmdemo0001", "remark": "x"}
    assert call(http, base, "externalcontact/remark", not_his)["errcode"] == 84061


# ---------------------------------------------------------------------- corp tags


def test_corp_tags_crud_and_3000_limit(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    added = call(
        http,
        base,
        "externalcontact/add_corp_tag",
        {"group_name": "偏好", "tag": [{"name": "咖啡"}, {"name": "茶"}]},
    )
    group = added["tag_group"]
    assert group["group_name"] == "偏好"
    assert [t["name"] for t in group["tag"]] == ["咖啡", "茶"]
    tea = group["tag"][1]["id"]
    edited = call(http, base, "externalcontact/edit_corp_tag", {"id": tea, "name": "奶茶"})
    assert edited["errcode"] == 0
    listed = call(http, base, "externalcontact/get_corp_tag_list", {"tag_id": [tea]})["tag_group"]
    assert [t["name"] for g in listed for t in g["tag"]] == ["奶茶"]
    assert call(http, base, "externalcontact/del_corp_tag", {"tag_id": [tea]})["errcode"] == 0
    # 3 demo tags + 1 left: fill up to 3,000, then one more is refused
    room = 3000 - fake.tag_count()
    names = [{"name": f"t{i}"} for i in range(room)]
    big = call(http, base, "externalcontact/add_corp_tag", {"group_name": "满", "tag": names})
    assert big["errcode"] == 0
    over = call(
        http, base, "externalcontact/add_corp_tag", {"group_name": "多", "tag": [{"name": "x"}]}
    )
    assert over["errcode"] != 0
    assert fake.tag_count() == 3000


# ---------------------------------------------------------------------- contact ways


def test_contact_way_state_limit_and_crud(base: str, http: httpx.Client) -> None:
    api = "externalcontact/add_contact_way"
    body = {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "s" * 31}
    assert call(http, base, api, body)["errcode"] == 40058
    made = call(http, base, api, {**body, "state": "s" * 30, "remark": "门店海报"})
    assert made["errcode"] == 0
    assert made["config_id"] and made["qr_code"].startswith("https://")
    way = call(http, base, "externalcontact/get_contact_way", {"config_id": made["config_id"]})
    assert way["contact_way"]["state"] == "s" * 30
    update = {"config_id": made["config_id"], "state": "store-07"}
    assert call(http, base, "externalcontact/update_contact_way", update)["errcode"] == 0
    too_long = {"config_id": made["config_id"], "state": "x" * 31}
    assert call(http, base, "externalcontact/update_contact_way", too_long)["errcode"] == 40058
    way = call(http, base, "externalcontact/get_contact_way", {"config_id": made["config_id"]})
    assert way["contact_way"]["state"] == "store-07"
    multi = {"type": 2, "scene": 2, "user": ["zhangsan"], "party": list(range(100))}
    assert call(http, base, api, multi)["errcode"] == 40058
    gone = {"config_id": made["config_id"]}
    assert call(http, base, "externalcontact/del_contact_way", gone)["errcode"] == 0
    assert call(http, base, "externalcontact/get_contact_way", gone)["errcode"] == 40058


# ---------------------------------------------------------------------- callbacks, welcome


def test_add_friend_callback_is_signed_encrypted_and_documented(
    fake: FakeWeCom, base: str, http: httpx.Client, receiver: Receiver
) -> None:
    fake.configure(callback_url=receiver.url)
    added = http.post(
        f"{base}/fake/friends", json={"userid": "zhangsan", "state": "store-12", "wait": True}
    ).json()
    assert added["delivery"]["status"] == "delivered"
    query, body = receiver.hits[0]
    outer = parse_xml(body)
    assert set(outer) == {"ToUserName", "AgentID", "Encrypt"}
    assert outer["ToUserName"] == CORP
    crypt = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP)
    event = crypt.decrypt_message(query["msg_signature"], query["timestamp"], query["nonce"], body)
    assert event["MsgType"] == "event"
    assert event["Event"] == "change_external_contact"
    assert event["ChangeType"] == "add_external_contact"
    assert event["UserID"] == "zhangsan"
    assert event["ExternalUserID"] == added["external_userid"]
    assert event["State"] == "store-12"
    assert event["WelcomeCode"] == added["welcome_code"]
    assert event["ToUserName"] == CORP
    assert int(event["CreateTime"]) > 0
    # a wrong token does not verify
    with pytest.raises(Exception, match="bad_signature"):
        WeComCrypt("OtherToken", DEFAULT_KEY, CORP).decrypt_message(
            query["msg_signature"], query["timestamp"], query["nonce"], body
        )


def test_callbacks_retry_three_times_without_answer(fake: FakeWeCom) -> None:
    slow = Receiver(plan=[0.6, 0.6, 0.6])
    try:
        fake.configure(callback_url=slow.url, callback_timeout=0.2)
        delivery = fake.add_friend("lisi", wait=True)["delivery"]
        assert delivery["attempts"] == 3
        assert delivery["status"] == "failed"
    finally:
        slow.close()
    flaky = Receiver(plan=[500, 0.6, 200])
    try:
        fake.configure(callback_url=flaky.url, callback_timeout=0.2)
        delivery = fake.add_friend("lisi", wait=True)["delivery"]
        assert delivery["attempts"] == 3
        assert delivery["status"] == "delivered"
        # every try is a freshly signed envelope of the same event
        events = [
            WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP).decrypt_message(
                q["msg_signature"], q["timestamp"], q["nonce"], b
            )
            for q, b in flaky.hits
        ]
        assert len({e["ExternalUserID"] for e in events}) == 1
    finally:
        flaky.close()


def test_callbacks_arrive_in_order(fake: FakeWeCom, receiver: Receiver) -> None:
    fake.configure(callback_url=receiver.url)
    added = [fake.add_friend("wangwu", name=f"n{i}")["external_userid"] for i in range(5)]
    assert fake.wait_callbacks()
    crypt = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP)
    got = [
        crypt.decrypt_message(q["msg_signature"], q["timestamp"], q["nonce"], b)["ExternalUserID"]
        for q, b in receiver.hits
    ]
    assert got == added


def test_callback_url_verification(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    r = Receiver()
    try:
        fake.configure(callback_url=r.url)
        assert http.post(f"{base}/fake/callback/verify").json() == {"ok": True}
    finally:
        r.close()


def test_welcome_code_valid_20_s_and_once(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    api = "externalcontact/send_welcome_msg"
    code = fake.add_friend("zhangsan")["welcome_code"]
    assert (
        call(http, base, api, {"welcome_code": code, "text": {"content": "欢迎"}})["errcode"] == 0
    )
    assert (
        call(http, base, api, {"welcome_code": code, "text": {"content": "again"}})["errcode"]
        == 41051
    )
    late = fake.add_friend("zhangsan")["welcome_code"]
    fake.advance(20.5)
    assert (
        call(http, base, api, {"welcome_code": late, "text": {"content": "hi"}})["errcode"] == 41050
    )
    sent = http.get(f"{base}/fake/welcome_messages").json()
    assert [m["text"] for m in sent] == ["欢迎"]


def test_welcome_message_size_limits(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    api = "externalcontact/send_welcome_msg"
    code = fake.add_friend("zhangsan")["welcome_code"]
    image = {"msgtype": "image", "image": {"media_id": "m"}}
    ten = {"welcome_code": code, "attachments": [image] * 10}
    assert call(http, base, api, ten)["errcode"] == 40058
    long_text = {"welcome_code": code, "text": {"content": "好" * 1334}}  # 4,002 bytes
    assert call(http, base, api, long_text)["errcode"] == 40058
    ok = {"welcome_code": code, "text": {"content": "好" * 1333}, "attachments": [image] * 9}
    assert call(http, base, api, ok)["errcode"] == 0


# ---------------------------------------------------------------------- mass messages


def test_mass_message_waits_for_confirmation_then_reports(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    fake.configure(monthly_quota=1)
    mine = fake.customers_of("zhangsan")
    body = {
        "chat_type": "single",
        "sender": "zhangsan",
        "external_userid": [*mine[:2], "wmdemo0002", "wmunknown"],
        "text": {"content": "新品上市"},
    }
    first = call(http, base, "externalcontact/add_msg_template", body)
    assert first["errcode"] == 0
    assert first["fail_list"] == ["wmunknown"]
    msgid = first["msgid"]
    result_api = "externalcontact/get_groupmsg_send_result"
    before = call(http, base, result_api, {"msgid": msgid, "userid": "zhangsan"})["send_list"]
    assert {r["status"] for r in before} == {0}
    assert http.get(f"{base}/fake/mass_messages").json()["delivered"] == []
    task = call(http, base, "externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert task == [{"userid": "zhangsan", "status": 0}]
    # the guide confirms in the client
    assert http.post(f"{base}/fake/mass/{msgid}/confirm", json={}).status_code == 200
    after = call(http, base, result_api, {"msgid": msgid, "userid": "zhangsan"})["send_list"]
    status = {r["external_userid"]: r["status"] for r in after}
    assert status == {mine[0]: 1, mine[1]: 1, "wmdemo0002": 2}  # 0002 is lisi's customer
    assert all(r["send_time"] for r in after)
    # a second mass message this month: quota 1 is used up → status 3
    body = {**body, "external_userid": mine[:3]}
    second = call(http, base, "externalcontact/add_msg_template", body)
    fake.confirm_mass(second["msgid"])
    again = call(http, base, result_api, {"msgid": second["msgid"], "userid": "zhangsan"})
    assert {r["external_userid"]: r["status"] for r in again["send_list"]} == {
        mine[0]: 3,
        mine[1]: 3,
        mine[2]: 1,
    }
    task = call(http, base, "externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert task[0]["status"] == 2
    delivered = http.get(f"{base}/fake/mass_messages").json()["delivered"]
    assert len(delivered) == 3
    listed = call(
        http,
        base,
        "externalcontact/get_groupmsg_list_v2",
        {"chat_type": "single", "start_time": 0, "end_time": 2**31, "limit": 1},
    )
    assert len(listed["group_msg_list"]) == 1 and listed["next_cursor"]


def test_receive_quota_rules(fake: FakeWeCom) -> None:
    import calendar
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone(timedelta(hours=8)))
    month, limit = fake.quota_period()
    assert month == f"{now.year:04d}-{now.month:02d}"
    assert limit == calendar.monthrange(now.year, now.month)[1]  # the current rule
    fake.configure(quota_rule="monthly_4")  # the older rule
    assert fake.quota_period()[1] == 4
    fake.configure(quota_rule="weekly_7")
    assert fake.quota_period()[0].startswith(f"{now.isocalendar()[0]}-W")
    fake.configure(quota_rule="daily_1")
    assert fake.quota_period() == (now.date().isoformat(), 1)


def test_daily_quota_frees_up_the_next_day(fake: FakeWeCom) -> None:
    fake.configure(quota_rule="daily_1")
    xid = fake.customers_of("zhangsan")[0]
    statuses = []
    for _ in range(3):
        body = {"chat_type": "single", "sender": "zhangsan", "external_userid": [xid]}
        msgid = _create_mass(fake, {**body, "text": {"content": "x"}})
        fake.confirm_mass(msgid)
        statuses.append(fake.state.mass[msgid]["results"][("zhangsan", xid)]["status"])
        fake.advance(12 * 3600)
    # two in the same day (12 h apart may cross midnight), so at least one 3 and one 1
    assert 3 in statuses and 1 in statuses


def _create_mass(fake: FakeWeCom, body: dict[str, Any]) -> str:
    from siyu.wecom.fake_apis_more import add_msg_template

    with fake.lock:
        return str(add_msg_template(fake, {}, body)["msgid"])


def test_mass_message_limits(base: str, http: httpx.Client) -> None:
    api = "externalcontact/add_msg_template"
    text = {"content": "hi"}
    single = {"chat_type": "single", "sender": "zhangsan", "text": text}
    ok = call(http, base, api, {**single, "external_userid": ["wm"] * 10_000})
    assert ok["errcode"] == 0
    over = call(http, base, api, {**single, "external_userid": [f"wm{i}" for i in range(10_001)]})
    assert over["errcode"] == 40058
    group = {"chat_type": "group", "sender": "zhangsan", "text": text}
    assert call(http, base, api, {**group, "chat_id_list": ["wr"] * 2001})["errcode"] == 40058
    image = {"msgtype": "image", "image": {"media_id": "m"}}
    assert call(http, base, api, {**single, "attachments": [image] * 10})["errcode"] == 40058


def test_group_mass_message_results(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    chats = [c for c, chat in fake.state.group_chats.items() if chat["owner"] == "zhangsan"]
    made = call(
        http,
        base,
        "externalcontact/add_msg_template",
        {"chat_type": "group", "sender": "zhangsan", "text": {"content": "群发"}},
    )
    assert made["fail_list"] == []
    fake.confirm_mass(made["msgid"])
    rows = call(
        http,
        base,
        "externalcontact/get_groupmsg_send_result",
        {"msgid": made["msgid"], "userid": "zhangsan"},
    )["send_list"]
    assert [(r["chat_id"], r["status"]) for r in rows] == [(c, 1) for c in chats]


# ---------------------------------------------------------------------- groups


def test_groupchat_list_and_get(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    for i in range(3):
        fake.add_group_chat("wangwu", f"群{i}", customers=["wmdemo0003"])
    api = "externalcontact/groupchat/list"
    assert call(http, base, api, {"limit": 1001})["errcode"] == 40058
    first = call(http, base, api, {"limit": 2})
    assert len(first["group_chat_list"]) == 2 and first["next_cursor"]
    rest = call(http, base, api, {"limit": 1000, "cursor": first["next_cursor"]})
    assert len(rest["group_chat_list"]) == 3 and not rest["next_cursor"]
    owned = call(http, base, api, {"limit": 100, "owner_filter": {"userid_list": ["wangwu"]}})
    assert len(owned["group_chat_list"]) == 3
    chat_id = owned["group_chat_list"][0]["chat_id"]
    chat = call(http, base, "externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
    group = chat["group_chat"]
    assert group["owner"] == "wangwu"
    fields = {"chat_id", "name", "owner", "create_time", "notice", "member_list", "admin_list"}
    assert fields <= set(group)
    customer = next(m for m in group["member_list"] if m["type"] == 2)
    fields = {"userid", "type", "join_time", "join_scene", "invitor", "group_nickname", "name"}
    assert fields <= set(customer)


def test_group_change_emits_change_external_chat(fake: FakeWeCom, receiver: Receiver) -> None:
    fake.configure(callback_url=receiver.url)
    chat_id = next(iter(fake.state.group_chats))
    fake.change_group_members(chat_id, add=["wmdemo0011"])
    assert receiver.got.wait(10)
    query, body = receiver.hits[0]
    event = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP).decrypt_message(
        query["msg_signature"], query["timestamp"], query["nonce"], body
    )
    assert event["Event"] == "change_external_chat"
    assert event["ChangeType"] == "update"
    assert event["UpdateDetail"] == "add_member"
    assert event["ChatId"] == chat_id
    assert event["MemChangeCnt"] == "1"
    assert "<MemChangeList><Item><![CDATA[wmdemo0011]]></Item></MemChangeList>" in (
        fake.callbacks[0].xml
    )
    fake.dismiss_group_chat(chat_id)
    assert fake.callbacks[1].done.wait(10)
    query, body = receiver.hits[1]
    event = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP).decrypt_message(
        query["msg_signature"], query["timestamp"], query["nonce"], body
    )
    assert (event["Event"], event["ChangeType"], event["ChatId"]) == (
        "change_external_chat",
        "dismiss",
        chat_id,
    )


# ---------------------------------------------------------------------- inheritance


def test_transfer_customer_waits_completes_and_at_most_twice(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    api = "externalcontact/transfer_customer"
    xid = fake.customers_of("zhangsan")[0]
    over = {"handover_userid": "zhangsan", "takeover_userid": "lisi"}
    assert call(http, base, api, {**over, "external_userid": ["x"] * 101})["errcode"] == 40058
    out = call(http, base, api, {**over, "external_userid": [xid, "wmdemo0002"]})
    assert out["customer"] == [
        {"external_userid": xid, "errcode": 0},
        {"external_userid": "wmdemo0002", "errcode": 84061},
    ]
    result = call(http, base, "externalcontact/transfer_result", over)["customer"]
    assert [(r["external_userid"], r["status"]) for r in result] == [(xid, 2)]
    fake.advance(24 * 3600)
    result = call(http, base, "externalcontact/transfer_result", over)["customer"]
    assert result[0]["status"] == 1 and result[0]["takeover_time"] > 0
    assert xid in fake.customers_of("lisi") and xid not in fake.customers_of("zhangsan")
    back = {"handover_userid": "lisi", "takeover_userid": "zhangsan", "external_userid": [xid]}
    assert call(http, base, api, back)["customer"][0]["errcode"] == 0
    fake.decide_transfer(xid, accept=True)
    third = {"handover_userid": "zhangsan", "takeover_userid": "lisi", "external_userid": [xid]}
    assert call(http, base, api, third)["customer"][0]["errcode"] != 0
    fake.advance(90 * 86_400)  # the 90-day protection ends
    assert call(http, base, api, third)["customer"][0]["errcode"] == 0


def test_transfer_refused_is_status_3_with_transfer_fail(
    fake: FakeWeCom, base: str, http: httpx.Client, receiver: Receiver
) -> None:
    fake.configure(callback_url=receiver.url)
    xid = fake.customers_of("wangwu")[0]
    body = {"handover_userid": "wangwu", "takeover_userid": "lisi", "external_userid": [xid]}
    call(http, base, "externalcontact/resigned/transfer_customer", body)
    decided = http.post(
        f"{base}/fake/transfers/decide", json={"external_userid": xid, "accept": False}
    ).json()
    assert decided["status"] == 3
    over = {"handover_userid": "wangwu", "takeover_userid": "lisi"}
    rows = call(http, base, "externalcontact/resigned/transfer_result", over)["customer"]
    assert rows[0]["status"] == 3
    assert receiver.got.wait(10)
    query, raw = receiver.hits[0]
    event = WeComCrypt("SiyuFakeToken", DEFAULT_KEY, CORP).decrypt_message(
        query["msg_signature"], query["timestamp"], query["nonce"], raw
    )
    assert (event["ChangeType"], event["FailReason"]) == ("transfer_fail", "customer_refused")


def test_groupchat_transfer_daily_limit(fake: FakeWeCom, base: str, http: httpx.Client) -> None:
    fake.configure(group_transfer_per_day=1)
    chats = list(fake.state.group_chats)
    api = "externalcontact/groupchat/transfer"
    assert (
        call(http, base, api, {"chat_id_list": ["c"] * 101, "new_owner": "wangwu"})["errcode"]
        == 40058
    )
    out = call(http, base, api, {"chat_id_list": [*chats, "wrnone"], "new_owner": "wangwu"})
    failed = {f["chat_id"]: f["errcode"] for f in out["failed_chat_list"]}
    assert chats[0] not in failed  # the first moved
    assert set(failed) == {chats[1], "wrnone"}
    assert fake.state.group_chats[chats[0]]["owner"] == "wangwu"


# ---------------------------------------------------------------------- links, statistics


def test_acquisition_link_channel_comes_back_as_state(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    made = call(
        http,
        base,
        "externalcontact/customer_acquisition/create_link",
        {"link_name": "直播间", "range": {"user_list": ["lisi"]}},
    )["link"]
    assert made["url"].startswith("https://") and made["link_id"]
    listed = call(http, base, "externalcontact/customer_acquisition/list_link", {"limit": 100})
    assert listed["link_id_list"] == [made["link_id"]]
    got = call(http, base, "externalcontact/customer_acquisition/get", {"link_id": made["link_id"]})
    assert got["range"]["user_list"] == ["lisi"]
    too_long = {"link_id": made["link_id"], "customer_channel": "c" * 65}
    assert http.post(f"{base}/fake/acquisition", json=too_long).status_code == 400
    added = http.post(
        f"{base}/fake/acquisition", json={"link_id": made["link_id"], "customer_channel": "live-1"}
    ).json()
    follow = fake.state.follows[("lisi", added["external_userid"])]
    assert follow["state"] == "live-1"
    assert fake.callbacks[-1].event["State"] == "live-1"


def test_user_behavior_data_span_and_history(
    fake: FakeWeCom, base: str, http: httpx.Client
) -> None:
    api = "externalcontact/get_user_behavior_data"
    now = int(fake.now())
    day = 86_400
    week = {"userid": ["zhangsan"], "start_time": now - 6 * day, "end_time": now}
    ok = call(http, base, api, week)
    rows = ok["behavior_data"]
    assert len(rows) == 7
    assert {
        "stat_time",
        "chat_cnt",
        "message_cnt",
        "reply_percentage",
        "avg_reply_time",
        "negative_feedback_cnt",
        "new_apply_cnt",
        "new_contact_cnt",
    } <= set(rows[0])
    span = {"userid": ["zhangsan"], "start_time": now - 31 * day, "end_time": now}
    assert call(http, base, api, span)["errcode"] == 40058
    old = {"userid": ["zhangsan"], "start_time": now - 181 * day, "end_time": now - 175 * day}
    assert call(http, base, api, old)["errcode"] == 40058


# ---------------------------------------------------------------------- CLI


def test_cli_serves_the_fake_with_demo_seed() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "siyu.cli.main",
            "wecom",
            "fake",
            "--port",
            "0",
            "--seed",
            "demo",
            "--corp-id",
            CORP,
            "--secret",
            SECRET,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            if "local WeCom server on " in line:
                url = line.split(" on ")[1].split()[0]
        assert url
        for _ in range(100):
            try:
                state = httpx.get(f"{url}/fake/state", timeout=5).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert state["summary"]["users"] == 3
        token = httpx.get(
            f"{url}/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": SECRET}
        ).json()
        assert token["errcode"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
