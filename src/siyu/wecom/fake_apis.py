"""The local WeCom server's ``/cgi-bin/`` APIs: staff, customers, tags, contact ways, welcome
messages and group chats, in the documented formats (shared/WECOM.md). Mass messages,
inheritance, acquisition links and statistics are in :mod:`siyu.wecom.fake_apis_more`.

A handler takes (fake, query, body) and returns the answer without errcode; a
:class:`FakeError` becomes ``{"errcode": n, "errmsg": "…"}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from siyu.wecom.fake_settings import (
    GROUP_NOT_FOUND,
    INVALID_EXTERNAL_USERID,
    NOT_A_CUSTOMER,
    WELCOME_CODE_EXPIRED,
    WELCOME_CODE_USED,
    FakeError,
    invalid,
)
from siyu.wecom.fake_state import FakeWeCom

Json = dict[str, Any]
Handler = Callable[[FakeWeCom, dict[str, str], Json], Json]
APIS: dict[str, tuple[str, Handler]] = {}

ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")


def api(path: str, method: str = "POST") -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        APIS[path] = (method, fn)
        return fn

    return register


def need(body: Json, name: str) -> Any:
    value = body.get(name)
    if value in (None, "", []):
        raise invalid(f"{name} required")
    return value


def int_arg(body: Json, name: str, default: int, low: int, high: int) -> int:
    raw = body.get(name, default)
    try:
        value = int(raw if raw not in (None, "") else default)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be {low}..{high}")
    return value


def page(items: list[Any], cursor: str | None, limit: int) -> tuple[list[Any], str]:
    """Offset cursors (opaque to callers)."""
    try:
        start = int(cursor or 0)
    except ValueError:
        raise invalid("bad cursor") from None
    chunk = items[start : start + limit]
    nxt = str(start + limit) if start + limit < len(items) else ""
    return chunk, nxt


def check_message(body: Json) -> None:
    """Text ≤ 4,000 bytes; ≤ 9 attachments of the documented types."""
    text = (body.get("text") or {}).get("content")
    attachments = body.get("attachments") or []
    if not text and not attachments:
        raise invalid("text or attachments required")
    if text is not None and len(str(text).encode()) > 4000:
        raise invalid("text over 4000 bytes")
    if len(attachments) > 9:
        raise invalid("attachments at most 9")
    for item in attachments:
        kind = item.get("msgtype") if isinstance(item, dict) else None
        if kind not in ATTACHMENT_TYPES or not isinstance(item.get(kind), dict):
            raise invalid(f"bad attachment msgtype {kind!r}")


# ---------------------------------------------------------------------- staff


@api("department/list", "GET")
def department_list(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    deps = w.state.departments
    root = int(q["id"]) if q.get("id") else None
    if root is None:
        return {"department": sorted(deps.values(), key=lambda d: d["id"])}
    if root not in deps:
        raise FakeError(60123, "invalid department id")
    keep, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for d in deps.values():
            if d["parentid"] == parent and d["id"] not in keep:
                keep.add(d["id"])
                frontier.append(d["id"])
    return {"department": [deps[i] for i in sorted(keep)]}


@api("user/list", "GET")
def user_list(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    if not q.get("department_id"):
        raise invalid("department_id required")
    dep_id = int(q["department_id"])
    if dep_id not in w.state.departments:
        raise FakeError(60123, "invalid department id")
    deps = {dep_id}
    if q.get("fetch_child") == "1":
        deps = {d["id"] for d in department_list(w, {"id": str(dep_id)}, {})["department"]}
    users = [u for u in w.state.users.values() if deps & set(u["department"])]
    return {"userlist": users}


# ---------------------------------------------------------------------- customers


def _customer(w: FakeWeCom, xid: str) -> Json:
    customer = w.state.customers.get(xid)
    if customer is None:
        raise FakeError(INVALID_EXTERNAL_USERID, "invalid external userid")
    return customer


@api("externalcontact/list", "GET")
def externalcontact_list(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    w.user_or_error(q.get("userid", ""))
    xids = w.customers_of(q["userid"])
    if not xids:
        raise FakeError(NOT_A_CUSTOMER, "no external contact")
    return {"external_userid": xids}


@api("externalcontact/get", "GET")
def externalcontact_get(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    xid = q.get("external_userid", "")
    customer = _customer(w, xid)
    follows = [w.follow_info(f) for (u, x), f in w.state.follows.items() if x == xid]
    # follow_user pages of 500, as WeCom pages customers with many followers
    chunk, nxt = page(follows, q.get("cursor"), 500)
    out: Json = {"external_contact": customer, "follow_user": chunk}
    if nxt:
        out["next_cursor"] = nxt
    return out


@api("externalcontact/batch/get_by_user")
def batch_get_by_user(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    userids = need(b, "userid_list")
    if not isinstance(userids, list) or len(userids) > 100:
        raise invalid("userid_list at most 100")
    limit = int_arg(b, "limit", 50, 1, 100)
    for userid in userids:
        w.user_or_error(userid)
    items = [
        {"external_contact": w.state.customers[x], "follow_info": w.follow_info(f, batch=True)}
        for (u, x), f in w.state.follows.items()
        if u in userids
    ]
    chunk, nxt = page(items, b.get("cursor"), limit)
    return {"external_contact_list": chunk, "next_cursor": nxt}


def _follow(w: FakeWeCom, b: Json) -> Json:
    userid, xid = need(b, "userid"), need(b, "external_userid")
    w.user_or_error(userid)
    _customer(w, xid)
    info = w.state.follows.get((userid, xid))
    if info is None:
        raise FakeError(NOT_A_CUSTOMER, "not a customer of this member")
    return info


@api("externalcontact/remark")
def remark(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    info = _follow(w, b)
    for name in ("remark", "description"):
        if name in b:
            info[name] = str(b[name])
    if "remark_company" in b:
        info["remark_corp_name"] = str(b["remark_company"])
    if "remark_mobiles" in b:
        info["remark_mobiles"] = list(b["remark_mobiles"])
    event = w.contact_event("edit_external_contact", info["userid"], b["external_userid"])
    w.emit(event)
    return {}


# ---------------------------------------------------------------------- corp tags


def _all_tags(w: FakeWeCom) -> dict[str, tuple[Json, Json]]:
    return {tid: (g, t) for g in w.state.tag_groups.values() for tid, t in g["tags"].items()}


def _group_out(group: Json, only: set[str] | None = None) -> Json:
    out = {k: v for k, v in group.items() if k != "tags"}
    out["tag"] = [t for tid, t in group["tags"].items() if only is None or tid in only]
    return out


@api("externalcontact/get_corp_tag_list")
def get_corp_tag_list(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    tag_ids, group_ids = set(b.get("tag_id") or []), set(b.get("group_id") or [])
    groups = []
    for gid, group in w.state.tag_groups.items():
        if group_ids and gid not in group_ids and not tag_ids:
            continue
        if tag_ids:
            hits = tag_ids & set(group["tags"])
            if hits:
                groups.append(_group_out(group, hits))
            continue
        groups.append(_group_out(group))
    return {"tag_group": groups}


@api("externalcontact/add_corp_tag")
def add_corp_tag(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    tags = need(b, "tag")
    names = [str(t.get("name") or "") for t in tags]
    if any(not n or len(n) > 30 for n in names):
        raise invalid("tag name 1..30 chars")
    gid = b.get("group_id")
    if gid and gid not in w.state.tag_groups:
        raise invalid("group_id not found")
    if not gid and not b.get("group_name"):
        raise invalid("group_id or group_name required")
    before = set(_all_tags(w))
    group = w.add_tag_group(
        str(b.get("group_name") or ""), names, group_id=gid, order=int(b.get("order") or 0)
    )
    new = set(group["tags"]) - before
    for tid in new:
        w.emit(w.tag_event("create", tid, "tag"))
    return {"tag_group": _group_out(group, new)}


@api("externalcontact/edit_corp_tag")
def edit_corp_tag(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    tid = need(b, "id")
    tags = _all_tags(w)
    if tid in w.state.tag_groups:
        target, kind, key = w.state.tag_groups[tid], "tag_group", "group_name"
    elif tid in tags:
        target, kind, key = tags[tid][1], "tag", "name"
    else:
        raise invalid("tag or group not found")
    if "name" in b:
        target[key] = str(b["name"])
    if "order" in b:
        target["order"] = int(b["order"])
    w.emit(w.tag_event("update", tid, kind))
    return {}


@api("externalcontact/del_corp_tag")
def del_corp_tag(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    tag_ids, group_ids = list(b.get("tag_id") or []), list(b.get("group_id") or [])
    if not tag_ids and not group_ids:
        raise invalid("tag_id or group_id required")
    tags = _all_tags(w)
    for tid in tag_ids:
        if tid not in tags:
            raise invalid(f"tag {tid} not found")
    for gid in group_ids:
        if gid not in w.state.tag_groups:
            raise invalid(f"group {gid} not found")
    for tid in tag_ids:
        tags[tid][0]["tags"].pop(tid, None)
        w.emit(w.tag_event("delete", tid, "tag"))
    for gid in group_ids:
        w.state.tag_groups.pop(gid, None)
        w.emit(w.tag_event("delete", gid, "tag_group"))
    gone = set(tag_ids) | {t for t, (g, _) in tags.items() if g["group_id"] in group_ids}
    for info in w.state.follows.values():
        info["tag_ids"] = [t for t in info["tag_ids"] if t not in gone]
    return {}


@api("externalcontact/mark_tag")
def mark_tag(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    info = _follow(w, b)
    add, remove = list(b.get("add_tag") or []), list(b.get("remove_tag") or [])
    if not add and not remove:
        raise invalid("add_tag or remove_tag required")
    tags = _all_tags(w)
    for tid in add + remove:
        if tid not in tags:
            raise invalid(f"tag {tid} not found")
    info["tag_ids"] = [t for t in info["tag_ids"] if t not in remove]
    info["tag_ids"] += [t for t in add if t not in info["tag_ids"]]
    return {}


# ---------------------------------------------------------------------- contact ways


def _contact_way_fields(w: FakeWeCom, b: Json, way: Json) -> None:
    if "state" in b:
        state = str(b["state"] or "")
        if len(state) > 30:
            raise invalid("state at most 30 chars")
        way["state"] = state
    if "remark" in b:
        if len(str(b["remark"] or "")) > 30:
            raise invalid("remark at most 30 chars")
        way["remark"] = str(b["remark"] or "")
    for name in ("user", "party"):
        if name in b:
            way[name] = list(b[name] or [])
    if len(way.get("user", [])) + len(way.get("party", [])) > 100:
        raise invalid("user + party at most 100")
    for userid in way.get("user", []):
        w.user_or_error(userid)
    for name in ("skip_verify", "style", "expires_in", "chat_expires_in", "is_temp"):
        if name in b:
            way[name] = b[name]


@api("externalcontact/add_contact_way")
def add_contact_way(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    type_, scene = b.get("type"), b.get("scene")
    if type_ not in (1, 2):
        raise invalid("type must be 1 or 2")
    if scene not in (1, 2):
        raise invalid("scene must be 1 or 2")
    way: Json = {"type": type_, "scene": scene, "skip_verify": True, "state": "", "remark": ""}
    _contact_way_fields(w, b, way)
    if not way.get("user") and not way.get("party"):
        raise invalid("user or party required")
    if type_ == 1 and (len(way.get("user", [])) != 1 or way.get("party")):
        raise invalid("type 1 takes exactly one user")
    config_id = secrets.token_hex(16)
    way["config_id"] = config_id
    if scene == 2:
        way["qr_code"] = f"https://wework.qpic.cn/wwpic/fake_{config_id}/0"
    w.state.contact_ways[config_id] = way
    return {"config_id": config_id, "qr_code": way.get("qr_code", "")}


def _way(w: FakeWeCom, b: Json) -> Json:
    way = w.state.contact_ways.get(need(b, "config_id"))
    if way is None:
        raise invalid("config_id not found")
    return way


@api("externalcontact/get_contact_way")
def get_contact_way(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    return {"contact_way": _way(w, b)}


@api("externalcontact/update_contact_way")
def update_contact_way(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    way = _way(w, b)
    updated = dict(way)
    _contact_way_fields(w, b, updated)
    way.update(updated)
    return {}


@api("externalcontact/del_contact_way")
def del_contact_way(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    _way(w, b)
    del w.state.contact_ways[b["config_id"]]
    return {}


# ---------------------------------------------------------------------- welcome message


@api("externalcontact/send_welcome_msg")
def send_welcome_msg(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    code = w.state.welcome_codes.get(need(b, "welcome_code"))
    if code is None:
        raise invalid("invalid welcome_code")
    check_message(b)
    if code["used"]:
        raise FakeError(WELCOME_CODE_USED, "welcome code already used")
    if w.now() - code["issued_at"] > w.settings.welcome_code_ttl:
        raise FakeError(WELCOME_CODE_EXPIRED, "welcome code expired")
    code["used"] = True
    w.state.welcome_sent.append(
        {
            "welcome_code": b["welcome_code"],
            "userid": code["userid"],
            "external_userid": code["external_userid"],
            "text": (b.get("text") or {}).get("content"),
            "attachments": list(b.get("attachments") or []),
            "sent_at": w.now(),
            "seconds_after_event": round(w.now() - code["issued_at"], 3),
        }
    )
    return {}


# ---------------------------------------------------------------------- group chats


@api("externalcontact/groupchat/list")
def groupchat_list(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    status_filter = int_arg(b, "status_filter", 0, 0, 3)
    limit = int_arg(b, "limit", 0, 1, 1000)
    owners = set((b.get("owner_filter") or {}).get("userid_list") or [])
    chats = [
        {"chat_id": c["chat_id"], "status": c["status"]}
        for c in w.state.group_chats.values()
        if (not owners or c["owner"] in owners)
        and (status_filter == 0 or c["status"] == status_filter)
    ]
    chunk, nxt = page(chats, b.get("cursor"), limit)
    return {"group_chat_list": chunk, "next_cursor": nxt}


@api("externalcontact/groupchat/get")
def groupchat_get(w: FakeWeCom, q: dict[str, str], b: Json) -> Json:
    chat = w.state.group_chats.get(need(b, "chat_id"))
    if chat is None:
        raise FakeError(GROUP_NOT_FOUND, "group chat not found")
    out = {k: v for k, v in chat.items() if k != "status"}
    if not int(b.get("need_name") or 0):
        out["member_list"] = [
            {k: v for k, v in m.items() if k != "name"} for m in chat["member_list"]
        ]
    return {"group_chat": out}
