"""WeComClient against the local WeCom server over real loopback HTTP (acceptance item 5):
token expiry and early invalidation, rate limits, system busy, pagination, typed errors,
client-side limits. Sleeps advance the fake's clock, so nothing waits for real."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu.wecom import errors as e
from siyu.wecom.client import WeComClient
from siyu.wecom.fake import FakeServer, FakeWeCom
from siyu.wecom.ratelimit import SlidingWindowLimiter
from siyu.wecom.tokens import TokenCache

CORP, SECRET = "wwclientcorp01", "client-secret"


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


class Sleeps(list[float]):
    """Records the back-off and moves the fake's clock instead of waiting."""

    def __init__(self, fake: FakeWeCom) -> None:
        super().__init__()
        self.fake = fake

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.fake.advance(seconds)


@pytest.fixture
def sleeps(fake: FakeWeCom) -> Sleeps:
    return Sleeps(fake)


@pytest.fixture
def client(fake: FakeWeCom, base: str, sleeps: Sleeps) -> Iterator[WeComClient]:
    c = WeComClient(
        CORP,
        SECRET,
        base_url=base,
        token_cache=TokenCache(clock=fake.now),
        limiter=SlidingWindowLimiter(clock=fake.now),
        sleep=sleeps,
        clock=fake.now,
    )
    yield c
    c.close()


# ---------------------------------------------------------------------- token


def test_token_is_cached_and_shared(fake: FakeWeCom, client: WeComClient, base: str) -> None:
    client.list_departments()
    client.list_users()
    other = WeComClient(CORP, SECRET, base_url=base, token_cache=client.tokens)
    other.list_departments()
    assert fake.call_count("gettoken") == 1


def test_token_expiry_mid_run_refreshes_once(fake: FakeWeCom, client: WeComClient) -> None:
    # given a token cached as fresh on our side but expired on the server's
    client.list_departments()
    fake.expire_tokens()
    # when
    users = client.list_users()
    # then one 42001, one refresh, success
    assert len(users) == 3
    assert fake.call_count("user/list", 42001) == 1
    assert fake.call_count("gettoken") == 2


def test_token_expiring_in_the_middle_of_a_paginated_run(
    fake: FakeWeCom, client: WeComClient
) -> None:
    for i in range(5):
        fake.add_group_chat("wangwu", f"群{i}")
    chats = client.iter_group_chats(limit=2)
    seen = [next(chats)["chat_id"]]
    fake.expire_tokens()  # between two pages, earlier than our cache expects
    seen += [c["chat_id"] for c in chats]
    assert len(seen) == len(set(seen)) == 7
    assert fake.call_count("externalcontact/groupchat/list", 42001) == 1
    assert fake.call_count("gettoken") == 2


def test_early_invalidation_refreshes_once(fake: FakeWeCom, client: WeComClient) -> None:
    client.list_departments()
    fake.invalidate_tokens()
    assert client.list_external_contacts("zhangsan")
    assert fake.call_count("externalcontact/list", 40014) == 1
    assert fake.call_count("gettoken") == 2


def test_token_refreshed_before_it_expires(fake: FakeWeCom, client: WeComClient) -> None:
    fake.configure(token_ttl=600)
    client.list_departments()
    fake.advance(301)  # inside the 300 s refresh margin
    client.list_departments()
    assert fake.call_count("gettoken") == 2
    assert fake.call_count("department/list", 42001) == 0


def test_token_still_refused_after_one_refresh_raises(fake: FakeWeCom, client: WeComClient) -> None:
    fake.inject("department/list", 42001, times=5)
    with pytest.raises(e.TokenInvalid) as info:
        client.list_departments()
    assert info.value.errcode == 42001 and info.value.transient
    assert fake.call_count("department/list") == 2


def test_bad_secret_is_credentials_invalid(base: str) -> None:
    c = WeComClient(CORP, "wrong", base_url=base, token_cache=TokenCache())
    with pytest.raises(e.CredentialsInvalid) as info:
        c.list_departments()
    assert info.value.errcode == 40001 and not info.value.transient


def test_concurrent_first_calls_fetch_one_token(fake: FakeWeCom, client: WeComClient) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client.list_departments()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.call_count("gettoken") == 1


# ---------------------------------------------------------------------- limits, busy


def test_call_limit_backs_off_then_succeeds(
    fake: FakeWeCom, client: WeComClient, sleeps: Sleeps
) -> None:
    fake.configure(api_limit_per_minute=2)
    fake.advance(61 - fake.now() % 60)  # 1 s into a minute: the three calls share it
    client.list_departments()
    client.list_departments()
    # the third call in the minute answers 45009: back off 60 s, then it goes through
    assert client.list_departments()
    assert fake.call_count("department/list", 45009) == 1
    assert sleeps == [60.0]


def test_persistent_call_limit_raises_rate_limited(
    fake: FakeWeCom, client: WeComClient, sleeps: Sleeps
) -> None:
    fake.inject("externalcontact/list", 45009, times=10)
    with pytest.raises(e.RateLimited) as info:
        client.list_external_contacts("zhangsan")
    assert info.value.errcode == 45009
    assert info.value.retry_after == 60.0
    assert info.value.transient
    assert sleeps == [60.0]
    assert fake.call_count("externalcontact/list") == 2


def test_block_duration_and_retries_are_configurable(
    fake: FakeWeCom, base: str, sleeps: Sleeps
) -> None:
    c = WeComClient(
        CORP,
        SECRET,
        base_url=base,
        token_cache=TokenCache(),
        limiter=SlidingWindowLimiter(clock=fake.now),
        sleep=sleeps,
        minute_block=5.0,
        rate_limit_retries=3,
    )
    fake.inject("department/list", 45009, times=3)
    assert c.list_departments()
    assert sleeps == [5.0, 5.0, 5.0]


def test_no_wait_client_raises_at_once_and_respects_the_block(
    fake: FakeWeCom, base: str, sleeps: Sleeps
) -> None:
    # an outbox worker's client: never sleeps on a limit, reschedules instead
    c = WeComClient(
        CORP,
        SECRET,
        base_url=base,
        token_cache=TokenCache(),
        limiter=SlidingWindowLimiter(clock=fake.now),
        sleep=sleeps,
        rate_limit_retries=0,
    )
    fake.inject("externalcontact/list", 45009, times=1)
    with pytest.raises(e.RateLimited) as first:
        c.list_external_contacts("zhangsan")
    assert first.value.retry_after == 60.0
    # the API is blocked on our side for the minute: refused without calling WeCom
    with pytest.raises(e.RateLimited) as second:
        c.list_external_contacts("zhangsan")
    assert 0 < second.value.retry_after <= 60.0
    assert fake.call_count("externalcontact/list") == 1
    assert sleeps == []
    fake.advance(60)
    assert c.list_external_contacts("zhangsan")


def test_concurrency_limit_backs_off_briefly(
    fake: FakeWeCom, client: WeComClient, sleeps: Sleeps
) -> None:
    fake.inject("department/list", 45033, times=1)
    assert client.list_departments()
    assert sleeps == [1.0]


def test_system_busy_retried_at_most_three_times(
    fake: FakeWeCom, client: WeComClient, sleeps: Sleeps
) -> None:
    fake.inject("user/list", -1, times=3)
    assert client.list_users()
    assert sleeps == [1.0, 2.0, 4.0]  # exponential back-off
    sleeps.clear()
    fake.inject("user/list", -1, times=4)
    with pytest.raises(e.SystemBusy) as info:
        client.list_users()
    assert info.value.transient
    assert sleeps == [1.0, 2.0, 4.0]
    assert fake.call_count("user/list", -1) == 7  # 3 + 4: no fifth try


def test_client_side_limiter_waits_instead_of_hitting_the_server(
    fake: FakeWeCom, base: str, sleeps: Sleeps
) -> None:
    c = WeComClient(
        CORP,
        SECRET,
        base_url=base,
        token_cache=TokenCache(),
        limiter=SlidingWindowLimiter([(60.0, 2)], clock=fake.now),
        sleep=sleeps,
    )
    fake.configure(api_limit_per_minute=2)
    for _ in range(5):
        c.list_departments()
    assert fake.call_count("department/list", 45009) == 0
    assert fake.call_count("department/list", 0) == 5
    # 5 calls at 2 a minute span two full windows, waited out on our side
    assert 119 < sum(sleeps) <= 120 and max(sleeps) <= 60, sleeps


def test_sliding_window_counts_per_key() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter([(60.0, 3), (3600.0, 5)], clock=lambda: now[0])
    assert [limiter.try_acquire("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.try_acquire("a") == pytest.approx(60.0)
    assert limiter.try_acquire("b") == 0  # another API has its own window
    now[0] = 61.0
    assert limiter.try_acquire("a") == 0
    assert limiter.try_acquire("a") == 0
    # the hour window: 5 calls in the hour
    assert limiter.try_acquire("a") == pytest.approx(3600.0 - 61.0)
    limiter.block("b", 30)
    assert limiter.try_acquire("b") == pytest.approx(30.0)


def test_unreachable_server_is_unavailable_and_transient() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    c = WeComClient(CORP, SECRET, base_url=f"http://127.0.0.1:{port}", token_cache=TokenCache())
    with pytest.raises(e.Unavailable) as info:
        c.list_departments()
    assert info.value.transient


# ---------------------------------------------------------------------- pagination


def test_batch_by_user_pages_and_splits_userids(fake: FakeWeCom, client: WeComClient) -> None:
    # 150 more members, one customer each: 153 userids → two calls of ≤ 100 userids
    for i in range(150):
        fake.add_user(f"guide{i:03d}", f"导购{i}")
        c = fake.add_customer(f"c{i}")
        fake.follow(f"guide{i:03d}", c["external_userid"])
    userids = ["zhangsan", "lisi", "wangwu"] + [f"guide{i:03d}" for i in range(150)]
    items = list(client.iter_external_contacts_by_user(userids, limit=40))
    pairs = {(i["follow_info"]["userid"], i["external_contact"]["external_userid"]) for i in items}
    assert len(items) == len(pairs) == 162
    # 100 userids → 112 relations → 3 pages; 53 userids → 50 relations → 2 pages
    assert fake.call_count("externalcontact/batch/get_by_user") == 5


def test_group_chats_iterate_across_pages(fake: FakeWeCom, client: WeComClient) -> None:
    for i in range(5):
        fake.add_group_chat("wangwu", f"群{i}")
    chats = list(client.iter_group_chats(limit=2))
    assert len({c["chat_id"] for c in chats}) == len(chats) == 7
    assert fake.call_count("externalcontact/groupchat/list") == 4
    owned = list(client.iter_group_chats(owner_userids=["wangwu"]))
    assert len(owned) == 5
    detail = client.get_group_chat(owned[0]["chat_id"])
    assert detail["owner"] == "wangwu"


def test_get_external_contact_merges_follow_users(fake: FakeWeCom, client: WeComClient) -> None:
    fake.follow("lisi", "wmdemo0001", state="second")
    got = client.get_external_contact("wmdemo0001")
    assert got["external_contact"]["external_userid"] == "wmdemo0001"
    assert {f["userid"] for f in got["follow_user"]} == {"zhangsan", "lisi"}
    with pytest.raises(e.WeComNotFound):
        client.get_external_contact("wmnobody")


# ---------------------------------------------------------------------- messages


def test_mass_message_results_show_status_3(fake: FakeWeCom, client: WeComClient) -> None:
    fake.configure(monthly_quota=1)
    mine = fake.customers_of("zhangsan")
    first, fail = client.add_msg_template(
        "single", "zhangsan", external_userids=mine[:2], text="第一条"
    )
    assert fail == []
    assert {r["status"] for r in client.iter_groupmsg_send_result(first, "zhangsan")} == {0}
    fake.confirm_mass(first)
    second, _ = client.add_msg_template(
        "single", "zhangsan", external_userids=mine[:3], text="第二条"
    )
    fake.confirm_mass(second)
    results = {
        r["external_userid"]: r["status"]
        for r in client.iter_groupmsg_send_result(second, "zhangsan", limit=1)
    }
    assert results == {mine[0]: 3, mine[1]: 3, mine[2]: 1}
    tasks = list(client.iter_groupmsg_task(second))
    assert tasks[0]["userid"] == "zhangsan" and tasks[0]["status"] == 2
    now = datetime.now(UTC)
    listed = list(
        client.iter_groupmsg_list("single", now - timedelta(days=1), now + timedelta(days=1))
    )
    assert {m["msgid"] for m in listed} == {first, second}


def test_welcome_message_typed_errors(fake: FakeWeCom, client: WeComClient) -> None:
    code = fake.add_friend("zhangsan", state="poster")["welcome_code"]
    image = {"msgtype": "image", "image": {"media_id": "m1"}}
    client.send_welcome_msg(code, text="欢迎光临", attachments=[image])
    assert fake.state.welcome_sent[0]["text"] == "欢迎光临"
    with pytest.raises(e.WelcomeCodeUsed) as used:
        client.send_welcome_msg(code, text="again")
    assert not used.value.transient
    late = fake.add_friend("zhangsan")["welcome_code"]
    fake.advance(21)
    with pytest.raises(e.WelcomeCodeExpired) as expired:
        client.send_welcome_msg(late, text="late")
    assert expired.value.errcode == 41050 and not expired.value.transient


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.send_welcome_msg("code", text="好" * 1334),
        lambda c: c.send_welcome_msg("code", attachments=[{"msgtype": "image", "image": {}}] * 10),
        lambda c: c.send_welcome_msg("code", attachments=[{"msgtype": "voice", "voice": {}}]),
        lambda c: c.send_welcome_msg("code"),
        lambda c: c.add_msg_template("single", "u", external_userids=["x"] * 10_001, text="t"),
        lambda c: c.add_msg_template("group", "u", chat_ids=["x"] * 2001, text="t"),
        lambda c: c.add_msg_template("broadcast", "u", text="t"),
        lambda c: c.add_contact_way(users=["zhangsan"], state="s" * 31),
        lambda c: c.add_contact_way(type=2, users=["a"], parties=list(range(100))),
        lambda c: c.update_contact_way("cfg", state="s" * 31),
        lambda c: c.iter_group_chats(limit=1001),
        lambda c: c.iter_external_contacts_by_user(["zhangsan"], limit=101),
        lambda c: c.acquisition_link_url("https://work.weixin.qq.com/ca/x", "c" * 65),
        lambda c: c.user_behavior_data(
            datetime.now(UTC) - timedelta(days=31), datetime.now(UTC), userids=["zhangsan"]
        ),
        lambda c: c.user_behavior_data(
            datetime.now(UTC) - timedelta(days=200),
            datetime.now(UTC) - timedelta(days=190),
            userids=["zhangsan"],
        ),
        lambda c: c.mark_tag("zhangsan", "wm"),
    ],
)
def test_arguments_over_documented_limits_never_reach_the_server(
    fake: FakeWeCom, client: WeComClient, call: object
) -> None:
    with pytest.raises(e.InvalidArgument) as info:
        call(client)  # type: ignore[operator]
    assert info.value.errcode == e.CLIENT_VALIDATION
    assert [c for c in fake.calls if c["api"] != "gettoken"] == []


# ---------------------------------------------------------------------- the other APIs


def test_tags_contact_ways_remarks(fake: FakeWeCom, client: WeComClient) -> None:
    group = client.add_corp_tag(["咖啡", {"name": "茶", "order": 2}], group_name="偏好")
    tea = next(t["id"] for t in group["tag"] if t["name"] == "茶")
    client.edit_corp_tag(tea, name="奶茶")
    names = {t["name"] for g in client.corp_tags() for t in g["tag"]}
    assert {"咖啡", "奶茶"} <= names
    client.mark_tag("zhangsan", "wmdemo0001", add=[tea])
    client.remark_external_contact("zhangsan", "wmdemo0001", remark="常客", remark_mobiles=["1"])
    follow = client.get_external_contact("wmdemo0001")["follow_user"][0]
    assert follow["remark"] == "常客" and tea in {t["tag_id"] for t in follow["tags"]}
    client.del_corp_tag(tag_ids=[tea])
    assert "奶茶" not in {t["name"] for g in client.corp_tags() for t in g["tag"]}

    way = client.add_contact_way(users=["zhangsan"], state="store-07", remark="海报")
    assert way["config_id"] and way["qr_code"]
    client.update_contact_way(way["config_id"], state="store-08")
    assert client.get_contact_way(way["config_id"])["state"] == "store-08"
    client.del_contact_way(way["config_id"])
    with pytest.raises(e.InvalidArgument):
        client.get_contact_way(way["config_id"])


def test_inheritance_links_and_statistics(fake: FakeWeCom, client: WeComClient) -> None:
    xids = fake.customers_of("zhangsan")
    out = client.transfer_customer("zhangsan", "lisi", [*xids, "wmdemo0002"])
    assert [c["errcode"] for c in out] == [0] * len(xids) + [84061]
    assert {r["status"] for r in client.transfer_result("zhangsan", "lisi")} == {2}
    fake.advance(24 * 3600)
    assert {r["status"] for r in client.transfer_result("zhangsan", "lisi")} == {1}
    resigned = client.resigned_transfer_customer("wangwu", "lisi", fake.customers_of("wangwu"))
    assert all(c["errcode"] == 0 for c in resigned)
    assert len(client.transfer_result("wangwu", "lisi", resigned=True)) == len(resigned)
    chats = [c["chat_id"] for c in client.iter_group_chats()]
    failed = client.transfer_group_chats(chats, "wangwu")
    assert failed == []

    link = client.create_acquisition_link("直播", users=["lisi"])
    assert list(client.iter_acquisition_links()) == [link["link_id"]]
    assert client.get_acquisition_link(link["link_id"])["range"]["user_list"] == ["lisi"]
    url = client.acquisition_link_url(link["url"], "live-1")
    assert url.endswith("customer_channel=live-1")

    today = datetime.now(UTC).date()
    rows = client.user_behavior_data(today - timedelta(days=6), today, userids=["zhangsan"])
    assert 7 <= len(rows) <= 8 and all("chat_cnt" in r for r in rows)


def test_unionid_to_external_userid(fake: FakeWeCom, client: WeComClient) -> None:
    added = fake.add_friend("lisi", unionid="ounion_1")
    got = client.unionid_to_external_userid("ounion_1")
    assert got["external_userid_info"][0]["external_userid"] == added["external_userid"]
    pending = client.unionid_to_external_userid("ounion_stranger")
    assert pending["pending_id"] and "external_userid_info" not in pending
    assert client.unionid_to_external_userid("ounion_stranger") == pending


def test_error_classes_and_transient_flags() -> None:
    assert isinstance(e.error_for(45033, "x", "api"), e.RateLimited)
    assert isinstance(e.error_for(41050), e.WelcomeCodeExpired)
    assert isinstance(e.error_for(41051), e.WelcomeCodeUsed)
    assert isinstance(e.error_for(40058), e.InvalidArgument)
    unknown = e.error_for(99999, "odd", "x/y")
    assert type(unknown) is e.WeComError and not unknown.transient
    assert unknown.code == "wecom.api_error"
    assert "99999" in unknown.message("en")
    assert e.error_for(-1).transient and e.error_for(42001).transient


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=200),
    limit=st.integers(min_value=1, max_value=8),
)
@settings(max_examples=60, deadline=None)
def test_limiter_never_allows_more_than_the_limit_in_any_window(
    gaps: list[float], limit: int
) -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter([(60.0, limit)], clock=lambda: now[0])
    allowed: list[float] = []
    for gap in gaps:
        now[0] += gap
        if limiter.try_acquire("api") == 0:
            allowed.append(now[0])
    # any window of 60 s holds at most `limit` allowed calls
    for i, start in enumerate(allowed):
        assert sum(1 for t in allowed[i:] if t < start + 60.0) <= limit
    # and a refused call is told a wait after which it is allowed
    wait = limiter.try_acquire("api")
    if wait > 0:
        now[0] += wait
        assert limiter.try_acquire("api") == 0


def test_cli_ping_checks_credentials(fake: FakeWeCom, base: str) -> None:
    from typer.testing import CliRunner

    from siyu.cli.main import app

    runner = CliRunner()
    ok = runner.invoke(
        app, ["wecom", "ping", "--base-url", base, "--corp-id", CORP, "--secret", SECRET]
    )
    assert ok.exit_code == 0, ok.output
    assert "ok: 2 departments, 3 staff" in ok.output
    bad = runner.invoke(
        app, ["wecom", "ping", "--base-url", base, "--corp-id", CORP, "--secret", "nope"]
    )
    assert bad.exit_code == 2
    assert "wecom.credentials_invalid" in bad.output
