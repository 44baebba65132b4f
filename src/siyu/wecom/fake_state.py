"""The local WeCom server's in-memory state and platform rules (a test double built from
shared/WECOM.md, never from our client).

    fake = FakeWeCom(corp_id="wwdemo", secret="s3cret", callback_url="http://127.0.0.1:8000/…")
    fake.seed_demo()
    fake.inject("externalcontact/get", 42001, times=1)   # the next call answers 42001
    added = fake.add_friend("zhangsan", name="顾客", state="store-12")  # emits the callback
    fake.advance(21)                                     # the welcome code is now expired

Every rule the platform enforces and the fake imitates is a setting (``FakeSettings``) with
WECOM.md's value as default. All methods are thread-safe (one re-entrant lock).
"""

from __future__ import annotations

import calendar
import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from siyu.wecom.crypto import WeComCrypt
from siyu.wecom.fake_events import (
    CallbackSender,
    Delivery,
    chat_event,
    contact_event,
    event_xml,
    tag_event,
)
from siyu.wecom.fake_settings import (
    CALL_LIMIT,
    CHINA,
    CONCURRENCY_LIMIT,
    EXPIRED_TOKEN,
    INVALID_CORPID,
    INVALID_SECRET,
    INVALID_TOKEN,
    INVALID_USERID,
    MISSING_TOKEN,
    NOT_A_CUSTOMER,
    TAG_LIMIT,
    FakeError,
    FakeSettings,
    FakeState,
)


class FakeWeCom:
    """One corp with one self-built app, in memory."""

    def __init__(self, settings: FakeSettings | None = None, **overrides: Any) -> None:
        self.settings = settings or FakeSettings()
        for name, value in overrides.items():
            if not hasattr(self.settings, name):
                raise TypeError(f"unknown setting {name!r}")
            setattr(self.settings, name, value)
        self.lock = threading.RLock()
        self.offset = 0.0
        self.state = FakeState()
        self.tokens: dict[str, dict[str, Any]] = {}
        self.injected: dict[str, list[list[int]]] = {}
        self.rate: dict[tuple[str, int], int] = {}
        self.blocked: dict[str, float] = {}
        self.in_flight: dict[str, int] = {}
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[Delivery] = []
        self._ids = itertools.count(1)
        self._outbox: deque[tuple[Delivery, CallbackSender]] = deque()
        self._outbox_lock = threading.Lock()
        self._sending = False
        # every corp has its root department, id 1
        self.add_department(1, "企业", 0)

    # ------------------------------------------------------------------ clock, ids

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (token and welcome-code expiry, rate windows,
        transfer completion, quota months)."""
        with self.lock:
            self.offset += seconds

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{secrets.token_hex(4)}"

    @property
    def crypt(self) -> WeComCrypt:
        s = self.settings
        return WeComCrypt(s.token, s.aes_key, s.corp_id)

    def configure(self, **values: Any) -> None:
        with self.lock:
            for name, value in values.items():
                if not hasattr(self.settings, name):
                    raise TypeError(f"unknown setting {name!r}")
                setattr(self.settings, name, value)

    # ------------------------------------------------------------------ tokens

    def issue_token(self, corpid: str, corpsecret: str) -> dict[str, Any]:
        with self.lock:
            if corpid != self.settings.corp_id:
                raise FakeError(INVALID_CORPID, "invalid corpid")
            if corpsecret != self.settings.secret:
                raise FakeError(INVALID_SECRET, "invalid credential, invalid secret")
            token = secrets.token_urlsafe(48)
            ttl = self.settings.token_ttl
            self.tokens[token] = {"expires_at": self.now() + ttl}
            return {"access_token": token, "expires_in": ttl}

    def check_token(self, token: str | None) -> None:
        with self.lock:
            if not token:
                raise FakeError(MISSING_TOKEN, "access_token missing")
            found = self.tokens.get(token)
            if found is None:
                raise FakeError(INVALID_TOKEN, "invalid access_token")
            if self.now() >= found["expires_at"]:
                raise FakeError(EXPIRED_TOKEN, "access_token expired")

    def expire_tokens(self) -> int:
        """Every issued token answers 42001 from now on."""
        with self.lock:
            for t in self.tokens.values():
                t["expires_at"] = min(t["expires_at"], self.now())
            return len(self.tokens)

    def invalidate_tokens(self) -> int:
        """Every issued token answers 40014 from now on (invalidated early)."""
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return n

    # ------------------------------------------------------------------ errors, limits

    def inject(self, api: str, errcode: int, *, times: int = 1) -> None:
        """The next ``times`` calls of ``api`` (``*`` for any API but gettoken) answer
        ``errcode`` before anything else is checked."""
        with self.lock:
            self.injected.setdefault(api, []).append([errcode, times])

    def take_injected(self, api: str) -> int | None:
        with self.lock:
            for key in (api, "*") if api != "gettoken" else (api,):
                queue = self.injected.get(key) or []
                while queue:
                    errcode, left = queue[0]
                    if left <= 0:
                        queue.pop(0)
                        continue
                    queue[0][1] = left - 1
                    return errcode
            return None

    def count_call(self, api: str) -> None:
        """Per corp per API per minute; a hit blocks the API for ``api_block_seconds``."""
        with self.lock:
            now = self.now()
            if self.blocked.get(api, 0.0) > now:
                raise FakeError(CALL_LIMIT, "api freq out of limit")
            window = (api, int(now // 60))
            self.rate[window] = self.rate.get(window, 0) + 1
            if self.rate[window] > self.settings.api_limit_per_minute:
                self.blocked[api] = now + self.settings.api_block_seconds
                raise FakeError(CALL_LIMIT, "api freq out of limit")

    def enter(self, api: str) -> None:
        with self.lock:
            limit = self.settings.max_concurrent_per_api
            if limit is not None and self.in_flight.get(api, 0) >= limit:
                raise FakeError(CONCURRENCY_LIMIT, "api concurrent out of limit")
            self.in_flight[api] = self.in_flight.get(api, 0) + 1

    def leave(self, api: str) -> None:
        with self.lock:
            self.in_flight[api] = max(0, self.in_flight.get(api, 0) - 1)

    def record_call(self, api: str, errcode: int) -> None:
        with self.lock:
            self.calls.append({"api": api, "errcode": errcode, "at": self.now()})

    def call_count(self, api: str, errcode: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for c in self.calls
                if c["api"] == api and (errcode is None or c["errcode"] == errcode)
            )

    # ------------------------------------------------------------------ callbacks

    def emit(self, event: dict[str, Any], *, wait: bool = False) -> Delivery:
        """Queue one event for the callback URL (``wait`` blocks until delivered or given
        up). Events are delivered in order by one background thread, started when there is
        work and gone when the queue is empty. Without a URL the event is only recorded."""
        s = self.settings
        delivery = Delivery(event=event, xml=event_xml(event), url=s.callback_url)
        sender = CallbackSender(
            self.crypt, s.agent_id, timeout=s.callback_timeout, tries=s.callback_tries
        )
        with self.lock:
            self.callbacks.append(delivery)
        with self._outbox_lock:
            self._outbox.append((delivery, sender))
            if not self._sending:
                self._sending = True
                threading.Thread(target=self._drain, daemon=True).start()
        if wait:
            delivery.done.wait()
        return delivery

    def _drain(self) -> None:
        while True:
            with self._outbox_lock:
                if not self._outbox:
                    self._sending = False
                    return
                delivery, sender = self._outbox.popleft()
            sender.deliver(delivery)

    def wait_callbacks(self, timeout: float = 30.0) -> bool:
        """Block until every queued callback is delivered or given up."""
        with self.lock:
            pending = list(self.callbacks)
        deadline = time.monotonic() + timeout
        return all(d.done.wait(max(0.0, deadline - time.monotonic())) for d in pending)

    def verify_callback_url(self) -> bool:
        s = self.settings
        if not s.callback_url:
            return False
        sender = CallbackSender(self.crypt, s.agent_id, timeout=s.callback_timeout)
        return sender.verify_url(s.callback_url)

    def contact_event(
        self, change_type: str, userid: str, external_userid: str, **extra: Any
    ) -> dict[str, Any]:
        return contact_event(
            self.settings.corp_id, change_type, userid, external_userid, int(self.now()), **extra
        )

    def chat_event(self, change_type: str, chat_id: str, **extra: Any) -> dict[str, Any]:
        return chat_event(self.settings.corp_id, change_type, chat_id, int(self.now()), **extra)

    def tag_event(self, change_type: str, tag_id: str, tag_type: str) -> dict[str, Any]:
        return tag_event(self.settings.corp_id, change_type, tag_id, tag_type, int(self.now()))

    # ------------------------------------------------------------------ quota

    def quota_period(self, at: float | None = None) -> tuple[str, int]:
        """(period key, mass messages a customer or group may receive in it) under the
        ``quota_rule``: monthly_days (as many a month as the month has days, the current
        rule), monthly_4 (the older rule), weekly_7, daily_1; ``monthly_quota`` overrides."""
        moment = datetime.fromtimestamp(self.now() if at is None else at, CHINA)
        month = f"{moment.year:04d}-{moment.month:02d}"
        if self.settings.monthly_quota is not None:
            return month, self.settings.monthly_quota
        rule = self.settings.quota_rule
        if rule == "monthly_days":
            return month, calendar.monthrange(moment.year, moment.month)[1]
        if rule == "monthly_4":
            return month, 4
        if rule == "weekly_7":
            year, week, _ = moment.isocalendar()
            return f"{year:04d}-W{week:02d}", 7
        if rule == "daily_1":
            return moment.date().isoformat(), 1
        raise ValueError(f"unknown quota_rule {rule!r}")

    def today_key(self) -> str:
        return datetime.fromtimestamp(self.now(), CHINA).date().isoformat()

    # ------------------------------------------------------------------ staff, customers

    def add_department(
        self, id: int, name: str, parentid: int = 0, order: int = 0
    ) -> dict[str, Any]:
        with self.lock:
            dep = {"id": id, "name": name, "parentid": parentid, "order": order}
            self.state.departments[id] = dep
            return dep

    def add_user(
        self, userid: str, name: str, department: list[int] | None = None, **extra: Any
    ) -> dict[str, Any]:
        with self.lock:
            user = {
                "userid": userid,
                "name": name,
                "department": department or [1],
                "status": 1,
                **extra,
            }
            self.state.users[userid] = user
            return user

    def user_or_error(self, userid: str) -> dict[str, Any]:
        user = self.state.users.get(userid)
        if user is None:
            raise FakeError(INVALID_USERID, f"invalid userid {userid}")
        return user

    def add_customer(
        self,
        name: str,
        *,
        external_userid: str | None = None,
        type: int = 1,
        gender: int = 0,
        unionid: str | None = None,
        corp_name: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            xid = external_userid or "wm" + secrets.token_hex(14)
            contact: dict[str, Any] = {
                "external_userid": xid,
                "name": name,
                "avatar": f"https://wework.qpic.cn/fake/{xid}/0",
                "type": type,
                "gender": gender,
            }
            if unionid:
                contact["unionid"] = unionid
            if type == 2:
                contact["corp_name"] = corp_name or "某公司"
            self.state.customers[xid] = contact
            return contact

    def follow(
        self,
        userid: str,
        external_userid: str,
        *,
        state: str | None = None,
        add_way: int = 1,
        remark: str = "",
        tag_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            info: dict[str, Any] = {
                "userid": userid,
                "remark": remark,
                "description": "",
                "createtime": int(self.now()),
                "tag_ids": list(tag_ids or []),
                "remark_corp_name": "",
                "remark_mobiles": [],
                "oper_userid": external_userid,
                "add_way": add_way,
            }
            if state:
                info["state"] = state
            self.state.follows[(userid, external_userid)] = info
            return info

    def add_friend(
        self,
        userid: str,
        *,
        name: str = "微信用户",
        external_userid: str | None = None,
        state: str | None = None,
        unionid: str | None = None,
        add_way: int = 1,
        welcome_code: bool = True,
        wait: bool = False,
    ) -> dict[str, Any]:
        """A customer adds the member (scanning a contact way with ``state``): the relation,
        a welcome code valid ``welcome_code_ttl`` seconds, and the add_external_contact
        callback (with State and WelcomeCode)."""
        with self.lock:
            self.user_or_error(userid)
            customer = self.state.customers.get(external_userid or "")
            if customer is None:
                customer = self.add_customer(name, external_userid=external_userid, unionid=unionid)
            xid = customer["external_userid"]
            self.follow(userid, xid, state=state, add_way=add_way)
            code = None
            if welcome_code:
                code = secrets.token_urlsafe(24)
                self.state.welcome_codes[code] = {
                    "userid": userid,
                    "external_userid": xid,
                    "issued_at": self.now(),
                    "used": False,
                }
            event = self.contact_event(
                "add_external_contact", userid, xid, State=state, WelcomeCode=code
            )
        delivery = self.emit(event, wait=wait)
        return {"external_userid": xid, "welcome_code": code, "delivery": delivery.as_dict()}

    def remove_friend(self, userid: str, external_userid: str, *, by: str = "member") -> None:
        """The member deletes the customer (del_external_contact) or the customer deletes
        the member (del_follow_user)."""
        with self.lock:
            if self.state.follows.pop((userid, external_userid), None) is None:
                raise FakeError(NOT_A_CUSTOMER, "not a customer of this member")
            change = "del_external_contact" if by == "member" else "del_follow_user"
            event = self.contact_event(change, userid, external_userid)
        self.emit(event)

    def customers_of(self, userid: str) -> list[str]:
        with self.lock:
            return [x for (u, x) in self.state.follows if u == userid]

    def follow_info(self, info: dict[str, Any], *, batch: bool = False) -> dict[str, Any]:
        """A follow record as the APIs show it: ``get``'s follow_user carries ``tags``
        [{group_name, tag_name, tag_id, type}], ``batch/get_by_user``'s follow_info only
        ``tag_id`` []."""
        out = {k: v for k, v in info.items() if k != "tag_ids"}
        tags = []
        for tag_id in info["tag_ids"]:
            for group in self.state.tag_groups.values():
                tag = group["tags"].get(tag_id)
                if tag is not None:
                    tags.append(
                        {
                            "group_name": group["group_name"],
                            "tag_name": tag["name"],
                            "tag_id": tag_id,
                            "type": 1,
                        }
                    )
        if batch:
            out["tag_id"] = [t["tag_id"] for t in tags]
        else:
            out["tags"] = tags
        return out

    # ------------------------------------------------------------------ control hooks

    def confirm_mass(self, msgid: str, userid: str | None = None) -> dict[str, int]:
        """The sender confirms a mass message in the WeCom client (nothing goes out before)."""
        from siyu.wecom.fake_apis_more import confirm_mass

        return confirm_mass(self, msgid, userid)

    def decide_transfer(
        self, external_userid: str, *, accept: bool = True, reason: str = "customer_refused"
    ) -> dict[str, Any]:
        from siyu.wecom.fake_apis_more import decide_transfer

        return decide_transfer(self, external_userid, accept=accept, reason=reason)

    def acquisition_add(
        self, link_id: str, customer_channel: str = "", **friend: Any
    ) -> dict[str, Any]:
        from siyu.wecom.fake_apis_more import acquisition_add

        return acquisition_add(self, link_id, customer_channel, **friend)

    # ------------------------------------------------------------------ seeding

    def seed_demo(self, *, customers: int = 12) -> dict[str, int]:
        """A small corp: two departments, three members, customers split between them, one
        tag group, two customer groups."""
        with self.lock:
            self.add_department(1, "思屿演示", 0)
            self.add_department(2, "上海门店", 1)
            self.add_user("zhangsan", "张三", [1, 2])
            self.add_user("lisi", "李四", [2])
            self.add_user("wangwu", "王五", [1])
            members = ["zhangsan", "lisi", "wangwu"]
            group = self.add_tag_group("客户等级", ["普通", "银卡", "金卡"])
            tag_ids = [t["id"] for t in group["tags"].values()]
            for i in range(customers):
                c = self.add_customer(f"顾客{i + 1:02d}", external_userid=f"wmdemo{i + 1:04d}")
                self.follow(
                    members[i % 3],
                    c["external_userid"],
                    state="demo",
                    tag_ids=tag_ids[i % 3 : i % 3 + 1],
                )
            xids = list(self.state.customers)
            self.add_group_chat(
                "zhangsan", "思屿福利群", members=["zhangsan", "lisi"], customers=xids[:5]
            )
            self.add_group_chat("lisi", "新品尝鲜群", members=["lisi"], customers=xids[5:9])
            return self.summary()

    def summary(self) -> dict[str, int]:
        with self.lock:
            st = self.state
            return {
                "departments": len(st.departments),
                "users": len(st.users),
                "customers": len(st.customers),
                "follows": len(st.follows),
                "tag_groups": len(st.tag_groups),
                "group_chats": len(st.group_chats),
                "contact_ways": len(st.contact_ways),
                "mass_messages": len(st.mass),
                "welcome_sent": len(st.welcome_sent),
                "delivered": len(st.delivered),
                "callbacks": len(self.callbacks),
            }

    # ------------------------------------------------------------------ tags

    def tag_count(self) -> int:
        return sum(len(g["tags"]) for g in self.state.tag_groups.values())

    def add_tag_group(
        self, group_name: str, names: list[str], *, group_id: str | None = None, order: int = 0
    ) -> dict[str, Any]:
        with self.lock:
            if self.tag_count() + len(names) > self.settings.max_corp_tags:
                raise FakeError(TAG_LIMIT, f"corp tags at most {self.settings.max_corp_tags}")
            group = self.state.tag_groups.get(group_id or "")
            if group is None:
                group = {
                    "group_id": group_id or self.new_id("et"),
                    "group_name": group_name,
                    "create_time": int(self.now()),
                    "order": order,
                    "deleted": False,
                    "tags": {},
                }
                self.state.tag_groups[group["group_id"]] = group
            for i, name in enumerate(names):
                tag_id = self.new_id("et")
                group["tags"][tag_id] = {
                    "id": tag_id,
                    "name": name,
                    "create_time": int(self.now()),
                    "order": i,
                    "deleted": False,
                }
            return group

    # ------------------------------------------------------------------ group chats

    def add_group_chat(
        self,
        owner: str,
        name: str,
        *,
        members: list[str] | None = None,
        customers: list[str] | None = None,
        notice: str = "",
        chat_id: str | None = None,
        emit: bool = False,
    ) -> dict[str, Any]:
        """A customer group owned by ``owner`` (change_external_chat create if ``emit``)."""
        from siyu.wecom import fake_groups

        return fake_groups.add_group_chat(
            self,
            owner,
            name,
            members=members,
            customers=customers,
            notice=notice,
            chat_id=chat_id,
            emit=emit,
        )

    def change_group_members(
        self, chat_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Join or leave: change_external_chat update (add_member / del_member)."""
        from siyu.wecom import fake_groups

        return fake_groups.change_group_members(self, chat_id, add=add, remove=remove)

    def dismiss_group_chat(self, chat_id: str) -> None:
        """The owner dismisses the group: change_external_chat dismiss."""
        from siyu.wecom import fake_groups

        fake_groups.dismiss_group_chat(self, chat_id)
