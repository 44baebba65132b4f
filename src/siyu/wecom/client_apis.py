"""The typed WeCom APIs of :class:`siyu.wecom.client.WeComClient`, with the documented limits
(shared/WECOM.md) checked before calling. Answers are WeCom's JSON, as documented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from siyu.wecom.limits import (
    BATCH_LIMIT,
    BATCH_USERIDS,
    BEHAVIOR_HISTORY_DAYS,
    BEHAVIOR_SPAN_DAYS,
    CONTACT_WAY_MEMBERS,
    CONTACT_WAY_REMARK,
    CONTACT_WAY_STATE,
    CUSTOMER_CHANNEL_BYTES,
    GROUP_TRANSFER_BATCH,
    GROUPCHAT_LIMIT,
    GROUPMSG_LIST_LIMIT,
    MASS_CHAT_IDS,
    MASS_EXTERNAL_USERIDS,
    RESULT_LIMIT,
    TRANSFER_BATCH,
    Json,
    check,
    check_message,
    chunks,
    epoch,
)


class ApisMixin:
    """Typed wrappers; the transport (``get``/``post``/``pages``) is the client's."""

    clock: Callable[[], float]

    def get(self, api: str, params: Json | None = None) -> Json:
        raise NotImplementedError

    def post(self, api: str, body: Json | None = None) -> Json:
        raise NotImplementedError

    def pages(
        self,
        api: str,
        body: Json,
        items: str,
        *,
        cursor_field: str = "cursor",
        next_field: str = "next_cursor",
    ) -> Iterator[Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ staff

    def list_departments(self, department_id: int | None = None) -> list[Json]:
        """``department/list``: the department and its sub-departments (all when None)."""
        params = {} if department_id is None else {"id": department_id}
        return list(self.get("department/list", params).get("department") or [])

    def list_users(self, department_id: int = 1, *, fetch_child: bool = True) -> list[Json]:
        """``user/list``: members of a department (and sub-departments), in detail."""
        params = {"department_id": department_id, "fetch_child": int(fetch_child)}
        return list(self.get("user/list", params).get("userlist") or [])

    # ------------------------------------------------------------------ customers

    def list_external_contacts(self, userid: str) -> list[str]:
        """``externalcontact/list``: external_userids of one member's customers."""
        data = self.get("externalcontact/list", {"userid": userid})
        return list(data.get("external_userid") or [])

    def get_external_contact(self, external_userid: str) -> Json:
        """``externalcontact/get``: {external_contact, follow_user[]}, every follow_user page
        fetched (the ``cursor`` of this API pages the follow users)."""
        api = "externalcontact/get"
        contact: Json = {}
        follow: list[Json] = []
        cursor, seen = "", set()
        while True:
            data = self.get(api, {"external_userid": external_userid, "cursor": cursor})
            contact = data.get("external_contact") or contact
            follow.extend(data.get("follow_user") or [])
            cursor = str(data.get("next_cursor") or "")
            if not cursor or cursor in seen:
                break
            seen.add(cursor)
        return {"external_contact": contact, "follow_user": follow}

    def iter_external_contacts_by_user(
        self, userids: Iterable[str], *, limit: int = BATCH_LIMIT
    ) -> Iterator[Json]:
        """``externalcontact/batch/get_by_user``: {external_contact, follow_info} of every
        customer of the members, 100 members per call, ``limit`` per page."""
        api = "externalcontact/batch/get_by_user"
        check(1 <= limit <= BATCH_LIMIT, api, f"limit must be 1..{BATCH_LIMIT}")

        def walk() -> Iterator[Json]:
            for batch in chunks(userids, BATCH_USERIDS):
                body = {"userid_list": batch, "limit": limit}
                yield from self.pages(api, body, "external_contact_list")

        return walk()

    def remark_external_contact(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
    ) -> None:
        """``externalcontact/remark``: the member's remark on a customer."""
        body: Json = {"userid": userid, "external_userid": external_userid}
        for name, value in (
            ("remark", remark),
            ("description", description),
            ("remark_company", remark_company),
        ):
            if value is not None:
                body[name] = value
        if remark_mobiles is not None:
            body["remark_mobiles"] = list(remark_mobiles)
        self.post("externalcontact/remark", body)

    # ------------------------------------------------------------------ corp tags

    def corp_tags(
        self, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[Json]:
        """``get_corp_tag_list``: tag groups with their tags (all when no filter)."""
        body: Json = {}
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        return list(self.post("externalcontact/get_corp_tag_list", body).get("tag_group") or [])

    def add_corp_tag(
        self,
        tags: Sequence[str | Json],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> Json:
        """``add_corp_tag``: tags into an existing group (``group_id``) or a new one
        (``group_name``); the tag group as created."""
        api = "externalcontact/add_corp_tag"
        check(bool(tags), api, "at least one tag")
        check(bool(group_id) or bool(group_name), api, "group_id or group_name required")
        body: Json = {"tag": [{"name": t} if isinstance(t, str) else dict(t) for t in tags]}
        if group_id:
            body["group_id"] = group_id
        if group_name:
            body["group_name"] = group_name
        if order is not None:
            body["order"] = order
        return dict(self.post(api, body).get("tag_group") or {})

    def edit_corp_tag(self, id: str, *, name: str | None = None, order: int | None = None) -> None:
        """``edit_corp_tag``: rename or reorder a tag or a tag group."""
        body: Json = {"id": id}
        if name is not None:
            body["name"] = name
        if order is not None:
            body["order"] = order
        self.post("externalcontact/edit_corp_tag", body)

    def del_corp_tag(self, *, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()) -> None:
        """``del_corp_tag``: delete tags and/or whole groups."""
        api = "externalcontact/del_corp_tag"
        check(bool(tag_ids) or bool(group_ids), api, "tag_ids or group_ids required")
        self.post(api, {"tag_id": list(tag_ids), "group_id": list(group_ids)})

    def mark_tag(
        self,
        userid: str,
        external_userid: str,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        """``mark_tag``: add and remove corp tags on a member's customer."""
        api = "externalcontact/mark_tag"
        check(bool(add) or bool(remove), api, "add or remove required")
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": list(add),
            "remove_tag": list(remove),
        }
        self.post(api, body)

    # ------------------------------------------------------------------ contact ways

    @staticmethod
    def _contact_way_fields(api: str, fields: Json) -> Json:
        state = fields.get("state")
        if state is not None:
            check(len(state) <= CONTACT_WAY_STATE, api, f"state is at most {CONTACT_WAY_STATE}")
        remark = fields.get("remark")
        if remark is not None:
            check(
                len(remark) <= CONTACT_WAY_REMARK,
                api,
                f"remark is at most {CONTACT_WAY_REMARK}",
            )
        members = len(fields.get("user") or []) + len(fields.get("party") or [])
        check(
            members <= CONTACT_WAY_MEMBERS,
            api,
            f"user + party at most {CONTACT_WAY_MEMBERS}",
        )
        return {k: v for k, v in fields.items() if v is not None}

    def add_contact_way(
        self,
        *,
        type: int = 1,
        scene: int = 2,
        users: Sequence[str] = (),
        parties: Sequence[int] = (),
        state: str | None = None,
        remark: str | None = None,
        skip_verify: bool = True,
        style: int | None = None,
        is_temp: bool = False,
        expires_in: int | None = None,
    ) -> Json:
        """``add_contact_way``: a channel QR code (渠道活码); ``state`` (≤ 30 chars) comes back
        in the add_external_contact event. Returns {config_id, qr_code}."""
        api = "externalcontact/add_contact_way"
        check(type in (1, 2), api, "type is 1 (single) or 2 (multi)")
        check(scene in (1, 2), api, "scene is 1 (mini-program) or 2 (QR code)")
        check(bool(users) or bool(parties), api, "users or parties required")
        check(type == 2 or (len(users) == 1 and not parties), api, "type 1 takes one user")
        body = self._contact_way_fields(
            api,
            {
                "type": type,
                "scene": scene,
                "style": style,
                "remark": remark,
                "skip_verify": skip_verify,
                "state": state,
                "user": list(users) or None,
                "party": list(parties) or None,
                "is_temp": is_temp or None,
                "expires_in": expires_in,
            },
        )
        data = self.post(api, body)
        return {"config_id": data.get("config_id"), "qr_code": data.get("qr_code")}

    def get_contact_way(self, config_id: str) -> Json:
        """``get_contact_way``: the contact way's configuration."""
        data = self.post("externalcontact/get_contact_way", {"config_id": config_id})
        return dict(data.get("contact_way") or {})

    def update_contact_way(
        self,
        config_id: str,
        *,
        remark: str | None = None,
        skip_verify: bool | None = None,
        style: int | None = None,
        state: str | None = None,
        users: Sequence[str] | None = None,
        parties: Sequence[int] | None = None,
        expires_in: int | None = None,
    ) -> None:
        """``update_contact_way``: change the given fields (users/parties replace the lists)."""
        api = "externalcontact/update_contact_way"
        body = self._contact_way_fields(
            api,
            {
                "config_id": config_id,
                "remark": remark,
                "skip_verify": skip_verify,
                "style": style,
                "state": state,
                "user": None if users is None else list(users),
                "party": None if parties is None else list(parties),
                "expires_in": expires_in,
            },
        )
        self.post(api, body)

    def del_contact_way(self, config_id: str) -> None:
        self.post("externalcontact/del_contact_way", {"config_id": config_id})

    # ------------------------------------------------------------------ messages

    def send_welcome_msg(
        self, welcome_code: str, *, text: str | None = None, attachments: Sequence[Json] = ()
    ) -> None:
        """``send_welcome_msg``: within 20 s of the add event, once (41050 expired →
        WelcomeCodeExpired, 41051 used → WelcomeCodeUsed)."""
        api = "externalcontact/send_welcome_msg"
        check(bool(welcome_code), api, "welcome_code required")
        body: Json = {"welcome_code": welcome_code}
        items = check_message(api, text, attachments)
        if text:
            body["text"] = {"content": text}
        if items:
            body["attachments"] = items
        self.post(api, body)

    def add_msg_template(
        self,
        chat_type: str,
        sender: str,
        *,
        external_userids: Sequence[str] = (),
        chat_ids: Sequence[str] = (),
        text: str | None = None,
        attachments: Sequence[Json] = (),
        allow_select: bool = False,
    ) -> tuple[str, list[str]]:
        """``add_msg_template``: a mass message the ``sender`` must confirm in the client
        before anything goes out. Returns (msgid, fail_list)."""
        api = "externalcontact/add_msg_template"
        check(chat_type in ("single", "group"), api, "chat_type is single or group")
        check(bool(sender), api, "sender required")
        body: Json = {"chat_type": chat_type, "sender": sender, "allow_select": allow_select}
        if chat_type == "single":
            check(not chat_ids, api, "chat_ids are for chat_type group")
            check(
                len(external_userids) <= MASS_EXTERNAL_USERIDS,
                api,
                f"{len(external_userids)} external_userids, at most {MASS_EXTERNAL_USERIDS}",
            )
            if external_userids:
                body["external_userid"] = list(external_userids)
        else:
            check(not external_userids, api, "external_userids are for chat_type single")
            check(
                len(chat_ids) <= MASS_CHAT_IDS,
                api,
                f"{len(chat_ids)} chat ids, at most {MASS_CHAT_IDS}",
            )
            if chat_ids:
                body["chat_id_list"] = list(chat_ids)
        items = check_message(api, text, attachments)
        if text:
            body["text"] = {"content": text}
        if items:
            body["attachments"] = items
        data = self.post(api, body)
        return str(data.get("msgid") or ""), list(data.get("fail_list") or [])

    def iter_groupmsg_list(
        self,
        chat_type: str,
        start_time: int | datetime | date,
        end_time: int | datetime | date,
        *,
        creator: str | None = None,
        filter_type: int = 2,
        limit: int = GROUPMSG_LIST_LIMIT,
    ) -> Iterator[Json]:
        """``get_groupmsg_list_v2``: mass messages created in the period."""
        api = "externalcontact/get_groupmsg_list_v2"
        check(1 <= limit <= GROUPMSG_LIST_LIMIT, api, f"limit 1..{GROUPMSG_LIST_LIMIT}")
        body: Json = {
            "chat_type": chat_type,
            "start_time": epoch(start_time),
            "end_time": epoch(end_time, end=True),
            "filter_type": filter_type,
            "limit": limit,
        }
        if creator:
            body["creator"] = creator
        return self.pages(api, body, "group_msg_list")

    def iter_groupmsg_task(self, msgid: str, *, limit: int = RESULT_LIMIT) -> Iterator[Json]:
        """``get_groupmsg_task``: per sender {userid, status (0 unsent, 2 sent), send_time}."""
        api = "externalcontact/get_groupmsg_task"
        check(1 <= limit <= RESULT_LIMIT, api, f"limit 1..{RESULT_LIMIT}")
        return self.pages(api, {"msgid": msgid, "limit": limit}, "task_list")

    def iter_groupmsg_send_result(
        self, msgid: str, userid: str, *, limit: int = RESULT_LIMIT
    ) -> Iterator[Json]:
        """``get_groupmsg_send_result``: per recipient {external_userid or chat_id, userid,
        status, send_time}; status 0 unsent, 1 sent, 2 not a friend, 3 already received
        another mass message in the period (the receive quota)."""
        api = "externalcontact/get_groupmsg_send_result"
        check(1 <= limit <= RESULT_LIMIT, api, f"limit 1..{RESULT_LIMIT}")
        return self.pages(api, {"msgid": msgid, "userid": userid, "limit": limit}, "send_list")

    # ------------------------------------------------------------------ group chats

    def iter_group_chats(
        self,
        *,
        status_filter: int = 0,
        owner_userids: Sequence[str] = (),
        limit: int = GROUPCHAT_LIMIT,
    ) -> Iterator[Json]:
        """``groupchat/list``: {chat_id, status} of every customer group (of the owners)."""
        api = "externalcontact/groupchat/list"
        check(1 <= limit <= GROUPCHAT_LIMIT, api, f"limit 1..{GROUPCHAT_LIMIT}")
        body: Json = {"status_filter": status_filter, "limit": limit}
        if owner_userids:
            body["owner_filter"] = {"userid_list": list(owner_userids)}
        return self.pages(api, body, "group_chat_list")

    def get_group_chat(self, chat_id: str, *, need_name: bool = True) -> Json:
        """``groupchat/get``: name, owner, notice, member_list, admin_list."""
        body = {"chat_id": chat_id, "need_name": int(need_name)}
        return dict(self.post("externalcontact/groupchat/get", body).get("group_chat") or {})

    # ------------------------------------------------------------------ inheritance

    def transfer_customer(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        *,
        transfer_success_msg: str | None = None,
    ) -> list[Json]:
        """``transfer_customer`` (在职继承), 100 customers per call; per customer
        {external_userid, errcode}. A customer can be transferred at most twice."""
        api = "externalcontact/transfer_customer"
        check(bool(external_userids), api, "external_userids required")
        out: list[Json] = []
        for batch in chunks(external_userids, TRANSFER_BATCH):
            body: Json = {
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": batch,
            }
            if transfer_success_msg:
                body["transfer_success_msg"] = transfer_success_msg
            out.extend(self.post(api, body).get("customer") or [])
        return out

    def resigned_transfer_customer(
        self, handover_userid: str, takeover_userid: str, external_userids: Sequence[str]
    ) -> list[Json]:
        """``resigned/transfer_customer`` (离职继承; completes after 24 h)."""
        api = "externalcontact/resigned/transfer_customer"
        check(bool(external_userids), api, "external_userids required")
        out: list[Json] = []
        for batch in chunks(external_userids, TRANSFER_BATCH):
            body = {
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": batch,
            }
            out.extend(self.post(api, body).get("customer") or [])
        return out

    def iter_transfer_result(
        self, handover_userid: str, takeover_userid: str, *, resigned: bool = False
    ) -> Iterator[Json]:
        """``transfer_result`` (or ``resigned/transfer_result``): per customer
        {external_userid, status, takeover_time}; status 1 done, 2 waiting, 3 refused,
        4 taker at its limit, 5 no record."""
        api = "externalcontact/" + ("resigned/" if resigned else "") + "transfer_result"
        body = {"handover_userid": handover_userid, "takeover_userid": takeover_userid}
        return self.pages(api, body, "customer")

    def transfer_result(
        self, handover_userid: str, takeover_userid: str, *, resigned: bool = False
    ) -> list[Json]:
        return list(self.iter_transfer_result(handover_userid, takeover_userid, resigned=resigned))

    def transfer_group_chats(
        self, chat_ids: Sequence[str], new_owner: str, *, on_job: bool = False
    ) -> list[Json]:
        """``groupchat/transfer`` (groups of a departed owner; ``on_job`` uses
        ``groupchat/onjob_transfer``): failed_chat_list [{chat_id, errcode, errmsg}];
        100 chats per call, 300 per new owner per day."""
        api = "externalcontact/groupchat/" + ("onjob_transfer" if on_job else "transfer")
        check(bool(chat_ids), api, "chat_ids required")
        failed: list[Json] = []
        for batch in chunks(chat_ids, GROUP_TRANSFER_BATCH):
            data = self.post(api, {"chat_id_list": batch, "new_owner": new_owner})
            failed.extend(data.get("failed_chat_list") or [])
        return failed

    # ------------------------------------------------------------------ acquisition links

    def create_acquisition_link(
        self,
        link_name: str,
        *,
        users: Sequence[str] = (),
        departments: Sequence[int] = (),
        skip_verify: bool = True,
    ) -> Json:
        """``customer_acquisition/create_link`` (获客助手): {link_id, link_name, url,
        create_time}."""
        api = "externalcontact/customer_acquisition/create_link"
        check(bool(link_name), api, "link_name required")
        check(bool(users) or bool(departments), api, "users or departments required")
        body = {
            "link_name": link_name,
            "range": {"user_list": list(users), "department_list": list(departments)},
            "skip_verify": skip_verify,
        }
        return dict(self.post(api, body).get("link") or {})

    def iter_acquisition_links(self, *, limit: int = 100) -> Iterator[str]:
        """``customer_acquisition/list_link``: link ids."""
        api = "externalcontact/customer_acquisition/list_link"
        check(1 <= limit <= 100, api, "limit 1..100")
        return self.pages(api, {"limit": limit}, "link_id_list")

    def get_acquisition_link(self, link_id: str) -> Json:
        """``customer_acquisition/get``: {link{...}, range{user_list, department_list}}."""
        data = self.post("externalcontact/customer_acquisition/get", {"link_id": link_id})
        return {"link": data.get("link") or {}, "range": data.get("range") or {}}

    @staticmethod
    def acquisition_link_url(url: str, customer_channel: str) -> str:
        """The link ``url`` carrying ``customer_channel`` (≤ 64 bytes), which comes back as
        ``state`` in the add_external_contact event."""
        api = "externalcontact/customer_acquisition"
        size = len(customer_channel.encode("utf-8"))
        check(
            0 < size <= CUSTOMER_CHANNEL_BYTES,
            api,
            f"customer_channel is {size} bytes, 1..{CUSTOMER_CHANNEL_BYTES}",
        )
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "customer_channel"]
        query.append(("customer_channel", customer_channel))
        return urlunsplit(parts._replace(query=urlencode(query)))

    # ------------------------------------------------------------------ identifiers

    def unionid_to_external_userid(self, unionid: str, *, openid: str = "") -> Json:
        """``idconvert/unionid_to_external_userid``: {external_userid_info: [{corpid,
        external_userid}]} for a customer, or {pending_id} (valid 90 days) for a WeChat user
        who is not a customer yet (unionid only comes with a bound Open Platform account)."""
        api = "idconvert/unionid_to_external_userid"
        check(bool(unionid), api, "unionid required")
        body: Json = {"unionid": unionid, "subject_type": 1}
        if openid:
            body["openid"] = openid
        data = self.post(api, body)
        out: Json = {}
        if data.get("external_userid_info"):
            out["external_userid_info"] = list(data["external_userid_info"])
        if data.get("pending_id"):
            out["pending_id"] = data["pending_id"]
        return out

    # ------------------------------------------------------------------ statistics

    def user_behavior_data(
        self,
        start: int | datetime | date,
        end: int | datetime | date,
        *,
        userids: Sequence[str] = (),
        partyids: Sequence[int] = (),
    ) -> list[Json]:
        """``get_user_behavior_data``: per day chat_cnt, message_cnt, reply_percentage,
        avg_reply_time, new_apply_cnt, new_contact_cnt, negative_feedback_cnt (span ≤ 30
        days, within the last 180 days)."""
        api = "externalcontact/get_user_behavior_data"
        check(bool(userids) or bool(partyids), api, "userids or partyids required")
        start_s, end_s = epoch(start), epoch(end, end=True)
        check(start_s <= end_s, api, "start after end")
        check(
            end_s - start_s < BEHAVIOR_SPAN_DAYS * 86_400,
            api,
            f"span over {BEHAVIOR_SPAN_DAYS} days",
        )
        check(
            start_s >= self.clock() - BEHAVIOR_HISTORY_DAYS * 86_400,
            api,
            f"start older than {BEHAVIOR_HISTORY_DAYS} days",
        )
        body: Json = {"start_time": start_s, "end_time": end_s}
        if userids:
            body["userid"] = list(userids)
        if partyids:
            body["partyid"] = list(partyids)
        return list(self.post(api, body).get("behavior_data") or [])
