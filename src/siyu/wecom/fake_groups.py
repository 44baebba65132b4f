"""Customer groups of the local WeCom server: creation, membership changes and dismissal,
each with its change_external_chat callback (doc 96361)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from siyu.wecom.fake_settings import GROUP_NOT_FOUND, FakeError
from siyu.wecom.fake_state import FakeWeCom


def add_group_chat(
    w: FakeWeCom,
    owner: str,
    name: str,
    *,
    members: list[str] | None = None,
    customers: list[str] | None = None,
    notice: str = "",
    chat_id: str | None = None,
    emit: bool = False,
) -> dict[str, Any]:
    with w.lock:
        w.user_or_error(owner)
        now = int(w.now())
        member_list = []
        for userid in dict.fromkeys([owner, *(members or [])]):
            member_list.append(member(w, userid, 1, owner, now))
        for xid in customers or []:
            member_list.append(member(w, xid, 2, owner, now))
        chat_id = chat_id or "wr" + secrets.token_hex(14)
        chat: dict[str, Any] = {
            "chat_id": chat_id,
            "name": name,
            "owner": owner,
            "create_time": now,
            "notice": notice,
            "member_list": member_list,
            "admin_list": [],
            "status": 0,
        }
        w.state.group_chats[chat_id] = chat
        event = w.chat_event("create", chat_id)
    if emit:
        w.emit(event)
    return chat


def member(w: FakeWeCom, userid: str, type: int, invitor: str, at: int) -> dict[str, Any]:
    member: dict[str, Any] = {
        "userid": userid,
        "type": type,
        "join_time": at,
        "join_scene": 1,
        "invitor": {"userid": invitor},
        "group_nickname": "",
        "name": "",
    }
    if type == 2:
        customer = w.state.customers.get(userid) or {}
        member["name"] = customer.get("name", "")
        if customer.get("unionid"):
            member["unionid"] = customer["unionid"]
    else:
        member["name"] = (w.state.users.get(userid) or {}).get("name", "")
    return member


def dismiss_group_chat(w: FakeWeCom, chat_id: str) -> None:
    """The owner dismisses the group: change_external_chat dismiss."""
    with w.lock:
        if w.state.group_chats.pop(chat_id, None) is None:
            raise FakeError(GROUP_NOT_FOUND, "group chat not found")
        event = w.chat_event("dismiss", chat_id)
    w.emit(event)


def change_group_members(
    w: FakeWeCom,
    chat_id: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> dict[str, Any]:
    """Customers or members join or leave: change_external_chat update (add_member /
    del_member, MemChangeCnt, MemChangeList)."""
    with w.lock:
        chat = w.state.group_chats.get(chat_id)
        if chat is None:
            raise FakeError(GROUP_NOT_FOUND, "group chat not found")
        now = int(w.now())
        events = []
        if add:
            for uid in add:
                kind = 1 if uid in w.state.users else 2
                chat["member_list"].append(member(w, uid, kind, chat["owner"], now))
            events.append(
                w.chat_event(
                    "update",
                    chat_id,
                    UpdateDetail="add_member",
                    JoinScene=1,
                    MemChangeCnt=len(add),
                    MemChangeList=list(add),
                )
            )
        if remove:
            gone = set(remove)
            chat["member_list"] = [m for m in chat["member_list"] if m["userid"] not in gone]
            events.append(
                w.chat_event(
                    "update",
                    chat_id,
                    UpdateDetail="del_member",
                    QuitScene=0,
                    MemChangeCnt=len(remove),
                    MemChangeList=list(remove),
                )
            )
    for event in events:
        w.emit(event)
    return chat
