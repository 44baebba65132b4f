"""WeCom's documented limits (shared/WECOM.md) and the client-side checks that enforce them
before a call: an argument over a limit raises :class:`InvalidArgument` and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from siyu.wecom.errors import InvalidArgument

# documented limits (shared/WECOM.md)
BATCH_USERIDS = 100
BATCH_LIMIT = 100
CONTACT_WAY_STATE = 30
CONTACT_WAY_REMARK = 30
CONTACT_WAY_MEMBERS = 100
ATTACHMENTS = 9
TEXT_BYTES = 4000
MASS_EXTERNAL_USERIDS = 10_000
MASS_CHAT_IDS = 2_000
GROUPCHAT_LIMIT = 1000
RESULT_LIMIT = 1000
GROUPMSG_LIST_LIMIT = 100
TRANSFER_BATCH = 100
GROUP_TRANSFER_BATCH = 100
CUSTOMER_CHANNEL_BYTES = 64
BEHAVIOR_SPAN_DAYS = 30
BEHAVIOR_HISTORY_DAYS = 180
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")

Json = dict[str, Any]


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of at most ``size`` (WeCom's per-call limits)."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check(ok: bool, api: str, reason: str) -> None:
    if not ok:
        raise InvalidArgument.local(api, reason)


def epoch(value: int | float | date | datetime, *, end: bool = False) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, date):
        moment = datetime(value.year, value.month, value.day).astimezone()
        return int(moment.timestamp()) + (86_399 if end else 0)
    return int(value)


def check_message(api: str, text: str | None, attachments: Sequence[Json]) -> list[Json]:
    """Text ≤ 4,000 bytes, ≤ 9 attachments of the documented types, something to send."""
    check(bool(text) or bool(attachments), api, "text or attachments required")
    if text is not None:
        size = len(text.encode("utf-8"))
        check(size <= TEXT_BYTES, api, f"text is {size} bytes, at most {TEXT_BYTES}")
    check(
        len(attachments) <= ATTACHMENTS,
        api,
        f"{len(attachments)} attachments, at most {ATTACHMENTS}",
    )
    out = []
    for i, item in enumerate(attachments):
        kind = item.get("msgtype")
        check(
            kind in ATTACHMENT_TYPES and isinstance(item.get(str(kind)), dict),
            api,
            f"attachments[{i}]: msgtype must be one of {', '.join(ATTACHMENT_TYPES)} "
            "with its object",
        )
        out.append(dict(item))
    return out
