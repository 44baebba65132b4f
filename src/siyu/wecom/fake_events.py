"""Callback events of the local WeCom server: the documented XML (doc 96361) and delivery
like WeCom's (signed, AES-encrypted with :mod:`siyu.wecom.crypto`, POSTed with
``msg_signature``/``timestamp``/``nonce``; up to 3 tries when no answer within 5 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import httpx

from siyu.wecom.crypto import WeComCrypt, signature

log = logging.getLogger("siyu.wecom.fake")

# fields WeCom sends as numbers, not CDATA
_NUMERIC = frozenset({"CreateTime", "MemChangeCnt", "JoinScene", "QuitScene", "AgentID"})


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(fields: Mapping[str, Any]) -> str:
    """A flat ``<xml>`` in WeCom's style: strings in CDATA, counters as numbers; a list value
    becomes repeated ``<Item>`` children (MemChangeList)."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            inner = "".join(f"<Item>{_cdata(str(v))}</Item>" for v in value)
            parts.append(f"<{name}>{inner}</{name}>")
        elif name in _NUMERIC or isinstance(value, int):
            parts.append(f"<{name}>{escape(str(value))}</{name}>")
        else:
            parts.append(f"<{name}>{_cdata(str(value))}</{name}>")
    parts.append("</xml>")
    return "".join(parts)


def contact_event(
    corp_id: str,
    change_type: str,
    userid: str,
    external_userid: str,
    created: int,
    **extra: Any,
) -> dict[str, Any]:
    """``change_external_contact`` (add_external_contact with State and WelcomeCode,
    edit_…, del_external_contact with Source, del_follow_user, transfer_fail with
    FailReason, add_half_external_contact)."""
    fields: dict[str, Any] = {
        "ToUserName": corp_id,
        "FromUserName": "sys",
        "CreateTime": created,
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": change_type,
        "UserID": userid,
        "ExternalUserID": external_userid,
    }
    fields.update({k: v for k, v in extra.items() if v is not None})
    return fields


def chat_event(
    corp_id: str, change_type: str, chat_id: str, created: int, **extra: Any
) -> dict[str, Any]:
    """``change_external_chat``: create | update (UpdateDetail add_member, del_member,
    change_owner, change_name, change_notice; JoinScene, QuitScene, MemChangeCnt,
    MemChangeList) | dismiss."""
    fields: dict[str, Any] = {
        "ToUserName": corp_id,
        "FromUserName": "sys",
        "CreateTime": created,
        "MsgType": "event",
        "Event": "change_external_chat",
        "ChatId": chat_id,
        "ChangeType": change_type,
    }
    fields.update({k: v for k, v in extra.items() if v is not None})
    return fields


def tag_event(
    corp_id: str, change_type: str, tag_id: str, tag_type: str, created: int
) -> dict[str, Any]:
    """``change_external_tag``: Id, TagType tag | tag_group, ChangeType create | update |
    delete | shuffle."""
    return {
        "ToUserName": corp_id,
        "FromUserName": "sys",
        "CreateTime": created,
        "MsgType": "event",
        "Event": "change_external_tag",
        "Id": tag_id,
        "TagType": tag_type,
        "ChangeType": change_type,
    }


@dataclass
class Delivery:
    """One callback and what became of it."""

    event: dict[str, Any]
    xml: str
    url: str | None
    attempts: int = 0
    status: str = "pending"  # pending | delivered | failed | no_url
    answers: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "url": self.url,
            "attempts": self.attempts,
            "status": self.status,
            "answers": list(self.answers),
        }


class CallbackSender:
    """Encrypts, signs and POSTs events to the configured callback URL."""

    def __init__(
        self,
        crypt: WeComCrypt,
        agent_id: str,
        *,
        timeout: float = 5.0,
        tries: int = 3,
    ) -> None:
        self.crypt = crypt
        self.agent_id = agent_id
        self.timeout = timeout
        self.tries = tries

    def envelope(self, xml: str) -> tuple[dict[str, str], str]:
        """(query, body) of one POST: ``<xml><ToUserName/><AgentID/><Encrypt/></xml>``."""
        encrypted = self.crypt.encrypt(xml)
        timestamp = str(int(time.time()))
        nonce = str(int.from_bytes(os.urandom(4), "big"))
        query = {
            "msg_signature": signature(self.crypt.token, timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        body = (
            f"<xml><ToUserName>{_cdata(self.crypt.receive_id)}</ToUserName>"
            f"<AgentID>{_cdata(self.agent_id)}</AgentID>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
        )
        return query, body

    def deliver(self, delivery: Delivery) -> Delivery:
        """Up to ``tries`` POSTs; a try fails on timeout, connection error or non-2xx."""
        try:
            if not delivery.url:
                delivery.status = "no_url"
                return delivery
            with httpx.Client(timeout=self.timeout) as http:
                for _ in range(self.tries):
                    delivery.attempts += 1
                    # each retry is a fresh envelope, as WeCom signs every request anew
                    query, body = self.envelope(delivery.xml)
                    try:
                        resp = http.post(
                            delivery.url,
                            params=query,
                            content=body.encode(),
                            headers={"Content-Type": "text/xml"},
                        )
                    except httpx.HTTPError as exc:
                        delivery.answers.append(type(exc).__name__)
                        continue
                    delivery.answers.append(f"HTTP {resp.status_code}")
                    if 200 <= resp.status_code < 300:
                        delivery.status = "delivered"
                        return delivery
                delivery.status = "failed"
                log.warning("callback to %s failed after %d tries", delivery.url, self.tries)
                return delivery
        finally:
            delivery.done.set()

    def verify_url(self, url: str) -> bool:
        """WeCom's URL check: GET with an encrypted ``echostr``; the answer must be the
        plaintext exactly."""
        plain = str(int.from_bytes(os.urandom(8), "big"))
        echostr = self.crypt.encrypt(plain)
        timestamp = str(int(time.time()))
        nonce = str(int.from_bytes(os.urandom(4), "big"))
        query = {
            "msg_signature": signature(self.crypt.token, timestamp, nonce, echostr),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        try:
            resp = httpx.get(url, params=query, timeout=self.timeout)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200 and resp.text == plain


def member_change_list(userids: Sequence[str]) -> list[str]:
    return list(userids)
