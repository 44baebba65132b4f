"""The local WeCom server's mass messages (add_msg_template and results, with the guide's
confirmation and the per-customer receive quota), inheritance (在职/离职继承, group
transfer), acquisition links and behaviour statistics (shared/WECOM.md)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from siyu.wecom.fake_apis import Json, api, check_message, int_arg, need, page
from siyu.wecom.fake_groups import member
from siyu.wecom.fake_settings import (
    CHINA,
    GROUP_NOT_FOUND,
    GROUP_TRANSFER_DAILY,
    NOT_A_CUSTOMER,
    TRANSFER_LIMIT,
    invalid,
)
from siyu.wecom.fake_state import FakeWeCom

OWNER_UNCHANGED = 90504  # the group's owner is already the new owner

# ---------------------------------------------------------------------- mass messages


@api("externalcontact/add_msg_template")
def add_msg_template(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    chat_type = b.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise invalid("chat_type must be single or group")
    check_message(b)
    sender = str(b.get("sender") or "")
    if sender:
        w.user_or_error(sender)
    fail: list[str] = []
    targets: dict[str, list[str]] = {}
    if chat_type == "single":
        xids = list(b.get("external_userid") or [])
        if len(xids) > 10_000:
            raise invalid("external_userid at most 10000")
        if not xids and not sender:
            raise invalid("external_userid or sender required")
        if not xids:
            xids = w.customers_of(sender)
        for xid in dict.fromkeys(xids):
            if xid not in w.state.customers:
                fail.append(xid)
            elif sender:
                targets.setdefault(sender, []).append(xid)
            else:
                # no sender: every member who has the customer gets a task
                for userid, x in w.state.follows:
                    if x == xid:
                        targets.setdefault(userid, []).append(xid)
    else:
        if not sender:
            raise invalid("sender required for chat_type group")
        chat_ids = list(b.get("chat_id_list") or [])
        if len(chat_ids) > 2000:
            raise invalid("chat_id_list at most 2000")
        if not chat_ids:
            chat_ids = [c for c, chat in w.state.group_chats.items() if chat["owner"] == sender]
        for chat_id in dict.fromkeys(chat_ids):
            if chat_id not in w.state.group_chats:
                fail.append(chat_id)
            else:
                targets.setdefault(sender, []).append(chat_id)
    msgid = "msg" + secrets.token_hex(12)
    w.state.mass[msgid] = {
        "msgid": msgid,
        "chat_type": chat_type,
        "creator": sender,
        "create_time": int(w.now()),
        "create_type": 0,
        "text": b.get("text"),
        "attachments": list(b.get("attachments") or []),
        "targets": targets,
        "tasks": {u: {"userid": u, "status": 0} for u in targets},
        "results": {(u, t): {"status": 0} for u, ts in targets.items() for t in ts},
    }
    return {"fail_list": fail, "msgid": msgid}


def confirm_mass(w: FakeWeCom, msgid: str, userid: str | None = None) -> dict[str, int]:
    """The sender confirms in the WeCom client: each recipient gets status 1 (sent), 2 (not
    a friend / group gone) or 3 (already received its quota of mass messages in the period)."""
    with w.lock:
        msg = w.state.mass.get(msgid)
        if msg is None:
            raise invalid("msgid not found")
        counts = {"sent": 0, "not_friend": 0, "quota": 0}
        now = w.now()
        period, quota = w.quota_period(now)
        for sender, ids in msg["targets"].items():
            task = msg["tasks"][sender]
            if (userid and sender != userid) or task["status"] != 0:
                continue
            for target in ids:
                result = msg["results"][(sender, target)]
                if msg["chat_type"] == "single":
                    reachable = (sender, target) in w.state.follows
                else:
                    chat = w.state.group_chats.get(target)
                    reachable = bool(chat) and chat["owner"] == sender  # type: ignore[index]
                used = w.state.quota_used.get((target, period), 0)
                if not reachable:
                    result["status"], key = 2, "not_friend"
                elif used >= quota:
                    result["status"], key = 3, "quota"
                else:
                    result["status"], key = 1, "sent"
                    w.state.quota_used[(target, period)] = used + 1
                    w.state.delivered.append(
                        {
                            "msgid": msgid,
                            "sender": sender,
                            "chat_type": msg["chat_type"],
                            "to": target,
                            "text": (msg["text"] or {}).get("content"),
                            "attachments": msg["attachments"],
                            "at": now,
                        }
                    )
                result["send_time"] = int(now)
                counts[key] += 1
            task["status"], task["send_time"] = 2, int(now)
        return counts


def _msg(w: FakeWeCom, b: Json) -> Json:
    msg = w.state.mass.get(need(b, "msgid"))
    if msg is None:
        raise invalid("msgid not found")
    return msg


@api("externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    chat_type = need(b, "chat_type")
    start, end = int(need(b, "start_time")), int(need(b, "end_time"))
    filter_type = int_arg(b, "filter_type", 2, 0, 2)
    limit = int_arg(b, "limit", 100, 1, 100)
    creator = b.get("creator")
    rows = [
        {
            "msgid": m["msgid"],
            "creator": m["creator"],
            "create_time": str(m["create_time"]),
            "create_type": m["create_type"],
            "text": m["text"],
            "attachments": m["attachments"],
        }
        for m in w.state.mass.values()
        if m["chat_type"] == chat_type
        and start <= m["create_time"] <= end
        and (not creator or m["creator"] == creator)
        and (filter_type == 2 or m["create_type"] == filter_type)
    ]
    chunk, nxt = page(rows, b.get("cursor"), limit)
    return {"group_msg_list": chunk, "next_cursor": nxt}


@api("externalcontact/get_groupmsg_task")
def get_groupmsg_task(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    msg = _msg(w, b)
    limit = int_arg(b, "limit", 500, 1, 1000)
    chunk, nxt = page(list(msg["tasks"].values()), b.get("cursor"), limit)
    return {"task_list": chunk, "next_cursor": nxt}


@api("externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    msg = _msg(w, b)
    userid = need(b, "userid")
    limit = int_arg(b, "limit", 500, 1, 1000)
    key = "external_userid" if msg["chat_type"] == "single" else "chat_id"
    rows = [
        {key: target, "userid": sender, **result}
        for (sender, target), result in msg["results"].items()
        if sender == userid
    ]
    chunk, nxt = page(rows, b.get("cursor"), limit)
    return {"send_list": chunk, "next_cursor": nxt}


# ---------------------------------------------------------------------- inheritance


def _protected(w: FakeWeCom, xid: str) -> bool:
    """Transferred ``transfer_max_times`` already: no more until 90 days after the last."""
    times = w.state.transfer_times.get(xid, [])
    if len(times) < w.settings.transfer_max_times:
        return False
    if w.now() - times[-1] >= w.settings.transfer_protection_seconds:
        w.state.transfer_times[xid] = []
        return False
    return True


def _transfer(w: FakeWeCom, b: Json, kind: str) -> Json:
    handover, takeover = need(b, "handover_userid"), need(b, "takeover_userid")
    w.user_or_error(handover)
    w.user_or_error(takeover)
    xids = list(need(b, "external_userid"))
    if len(xids) > 100:
        raise invalid("external_userid at most 100")
    out = []
    for xid in xids:
        pending = any(t["external_userid"] == xid and t["status"] == 2 for t in w.state.transfers)
        if (handover, xid) not in w.state.follows:
            errcode = NOT_A_CUSTOMER
        elif pending or _protected(w, xid):
            errcode = TRANSFER_LIMIT
        else:
            errcode = 0
            w.state.transfer_times.setdefault(xid, []).append(w.now())
            w.state.transfers.append(
                {
                    "kind": kind,
                    "handover_userid": handover,
                    "takeover_userid": takeover,
                    "external_userid": xid,
                    "status": 2,
                    "due": w.now() + w.settings.transfer_wait_seconds,
                    "takeover_time": 0,
                }
            )
        out.append({"external_userid": xid, "errcode": errcode})
    return {"customer": out}


@api("externalcontact/transfer_customer")
def transfer_customer(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    return _transfer(w, b, "onjob")


@api("externalcontact/resigned/transfer_customer")
def resigned_transfer_customer(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    return _transfer(w, b, "resigned")


def decide_transfer(
    w: FakeWeCom, external_userid: str, *, accept: bool = True, reason: str = "customer_refused"
) -> dict[str, Any]:
    """The customer accepts (status 1, the relation moves) or refuses (status 3,
    transfer_fail with FailReason) a waiting transfer now."""
    with w.lock:
        for t in w.state.transfers:
            if t["external_userid"] == external_userid and t["status"] == 2:
                _settle(w, t, accept=accept, reason=reason)
                return dict(t)
        raise invalid("no waiting transfer for this customer")


def settle_transfers(w: FakeWeCom) -> None:
    """Waiting transfers past their 24 h complete (or fail when the taker is full)."""
    with w.lock:
        for t in w.state.transfers:
            if t["status"] == 2 and w.now() >= t["due"]:
                _settle(w, t, accept=True, reason="")


def _settle(w: FakeWeCom, t: Json, *, accept: bool, reason: str) -> None:
    xid, takeover = t["external_userid"], t["takeover_userid"]
    limit = w.settings.takeover_customer_limit
    if accept and limit is not None and len(w.customers_of(takeover)) >= limit:
        accept, reason, status = False, "customer_limit_exceed", 4
    else:
        status = 1 if accept else 3
    t["status"] = status
    if not accept:
        w.emit(w.contact_event("transfer_fail", takeover, xid, FailReason=reason))
        return
    info = w.state.follows.pop((t["handover_userid"], xid), None)
    if info is not None:
        info["userid"] = takeover
        w.state.follows[(takeover, xid)] = info
    t["takeover_time"] = int(w.now())
    w.emit(
        w.contact_event(
            "del_external_contact", t["handover_userid"], xid, Source="DELETE_BY_TRANSFER"
        )
    )


def _transfer_result(w: FakeWeCom, b: Json, kind: str) -> Json:
    handover, takeover = need(b, "handover_userid"), need(b, "takeover_userid")
    settle_transfers(w)
    rows = [
        {
            "external_userid": t["external_userid"],
            "status": t["status"],
            "takeover_time": t["takeover_time"],
        }
        for t in w.state.transfers
        if t["kind"] == kind
        and t["handover_userid"] == handover
        and t["takeover_userid"] == takeover
    ]
    chunk, nxt = page(rows, b.get("cursor"), w.settings.transfer_result_page)
    return {"customer": chunk, "next_cursor": nxt}


@api("externalcontact/transfer_result")
def transfer_result(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    return _transfer_result(w, b, "onjob")


@api("externalcontact/resigned/transfer_result")
def resigned_transfer_result(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    return _transfer_result(w, b, "resigned")


def _group_transfer(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    chat_ids = list(need(b, "chat_id_list"))
    if len(chat_ids) > 100:
        raise invalid("chat_id_list at most 100")
    new_owner = need(b, "new_owner")
    w.user_or_error(new_owner)
    day = (new_owner, w.today_key())
    failed = []
    for chat_id in chat_ids:
        chat = w.state.group_chats.get(chat_id)
        if chat is None:
            failed.append({"chat_id": chat_id, "errcode": GROUP_NOT_FOUND, "errmsg": "not found"})
            continue
        if chat["owner"] == new_owner:
            failed.append({"chat_id": chat_id, "errcode": OWNER_UNCHANGED, "errmsg": "same owner"})
            continue
        if w.state.group_transfers.get(day, 0) >= w.settings.group_transfer_per_day:
            failed.append(
                {"chat_id": chat_id, "errcode": GROUP_TRANSFER_DAILY, "errmsg": "daily limit"}
            )
            continue
        w.state.group_transfers[day] = w.state.group_transfers.get(day, 0) + 1
        chat["owner"] = new_owner
        if all(m["userid"] != new_owner for m in chat["member_list"]):
            chat["member_list"].append(member(w, new_owner, 1, new_owner, int(w.now())))
        w.emit(w.chat_event("update", chat_id, UpdateDetail="change_owner"))
    return {"failed_chat_list": failed}


api("externalcontact/groupchat/transfer")(_group_transfer)
api("externalcontact/groupchat/onjob_transfer")(_group_transfer)


# ---------------------------------------------------------------------- acquisition links


@api("externalcontact/customer_acquisition/create_link")
def create_link(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    name = str(need(b, "link_name"))
    scope = b.get("range") or {}
    users, deps = list(scope.get("user_list") or []), list(scope.get("department_list") or [])
    if not users and not deps:
        raise invalid("range.user_list or range.department_list required")
    for userid in users:
        w.user_or_error(userid)
    link_id = "cawcde" + secrets.token_hex(8)
    link = {
        "link_id": link_id,
        "link_name": name,
        "url": f"https://work.weixin.qq.com/ca/{link_id}",
        "create_time": int(w.now()),
        "skip_verify": bool(b.get("skip_verify", True)),
    }
    w.state.links[link_id] = {"link": link, "range": {"user_list": users, "department_list": deps}}
    return {"link": link}


@api("externalcontact/customer_acquisition/list_link")
def list_link(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    limit = int_arg(b, "limit", 100, 1, 100)
    chunk, nxt = page(list(w.state.links), b.get("cursor"), limit)
    return {"link_id_list": chunk, "next_cursor": nxt}


@api("externalcontact/customer_acquisition/get")
def get_link(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    found = w.state.links.get(need(b, "link_id"))
    if found is None:
        raise invalid("link_id not found")
    return {"link": found["link"], "range": found["range"]}


def acquisition_add(
    w: FakeWeCom, link_id: str, customer_channel: str = "", **friend: Any
) -> dict[str, Any]:
    """A customer opens the link (``?customer_channel=…``, ≤ 64 bytes) and adds a member of
    its range: add_external_contact with State = customer_channel."""
    with w.lock:
        found = w.state.links.get(link_id)
        if found is None:
            raise invalid("link_id not found")
        if len(customer_channel.encode()) > 64:
            raise invalid("customer_channel at most 64 bytes")
        users = found["range"]["user_list"] or list(w.state.users)
        userid = friend.pop("userid", None) or users[0]
    return w.add_friend(userid, state=customer_channel or None, add_way=16, **friend)


# ---------------------------------------------------------------------- statistics


@api("externalcontact/get_user_behavior_data")
def get_user_behavior_data(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    userids, parties = list(b.get("userid") or []), list(b.get("partyid") or [])
    if not userids and not parties:
        raise invalid("userid or partyid required")
    for userid in userids:
        w.user_or_error(userid)
    start, end = int(need(b, "start_time")), int(need(b, "end_time"))
    if end < start or end - start >= 30 * 86_400:
        raise invalid("span at most 30 days")
    if start < w.now() - 180 * 86_400:
        raise invalid("start_time within the last 180 days")
    members = set(userids) | {
        u["userid"] for u in w.state.users.values() if set(u["department"]) & set(parties)
    }
    day0 = datetime.fromtimestamp(start, CHINA).replace(hour=0, minute=0, second=0)
    rows = []
    stamp = int(day0.timestamp())
    while stamp <= end:
        seed = hashlib.sha256(f"{sorted(members)}{stamp}".encode()).digest()
        new_contacts = sum(
            1
            for (u, _), f in w.state.follows.items()
            if u in members and stamp <= f["createtime"] < stamp + 86_400
        )
        chats = seed[0] % 40
        rows.append(
            {
                "stat_time": stamp,
                "chat_cnt": chats,
                "message_cnt": chats * (1 + seed[1] % 5),
                "reply_percentage": round(60 + seed[2] % 40 + seed[3] / 256, 2),
                "avg_reply_time": 1 + seed[4] % 30,
                "negative_feedback_cnt": seed[5] % 2,
                "new_apply_cnt": new_contacts + seed[6] % 3,
                "new_contact_cnt": new_contacts,
            }
        )
        stamp += 86_400
    return {"behavior_data": rows}


# ---------------------------------------------------------------------- identifiers


@api("idconvert/unionid_to_external_userid")
def unionid_to_external_userid(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    """The customer's external_userid, or a pending_id (valid 90 days) when the person is
    not a customer yet; the same pending_id for the same unionid."""
    unionid = str(need(b, "unionid"))
    found = [
        {"corpid": w.settings.corp_id, "external_userid": c["external_userid"]}
        for c in w.state.customers.values()
        if c.get("unionid") == unionid
    ]
    if found:
        return {"external_userid_info": found}
    digest = hashlib.sha256(f"{w.settings.corp_id}:{unionid}".encode()).hexdigest()
    return {"pending_id": "p" + digest[:24]}
