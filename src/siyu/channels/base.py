"""The channel interface: a message to deliver, the outcome of one attempt, and the
capabilities each adapter declares.

An adapter's ``send`` makes one attempt and classifies the result:

- ``sent``: the provider accepted the message (``provider_id`` when it gave one);
- ``transient``: worth retrying later (time-outs, 5xx, throttling); the dispatcher backs off;
- ``permanent``: retrying cannot help (bad address, unknown template, 4xx); final, with reason.

Delivery is at-least-once: a worker killed after the provider accepted a message but before
the outcome was recorded sends it again once the claim times out. Every message therefore
carries the outbox row's idempotency key (``Message.idem_key``) and adapters pass it on (a
webhook header, the SMS ``out_id``, the e-mail ``Message-ID``) so the receiving side can drop
the duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

OutcomeStatus = Literal["sent", "transient", "permanent"]


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do; the planner and the console read these."""

    rich_media: bool = False  # images, links, cards beyond plain text
    delivery_receipts: bool = False  # the provider reports delivery later
    needs_confirmation: bool = False  # a person confirms before it goes out (WeCom mass)
    per_recipient_quota: int | None = None  # the platform's limit per recipient and day


@dataclass(frozen=True)
class Message:
    """One outbox row as an adapter sees it."""

    brand_id: str
    idem_key: str
    channel: str
    customer_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1

    @property
    def content(self) -> dict[str, Any]:
        value = self.payload.get("content")
        return value if isinstance(value, dict) else {}

    @property
    def to(self) -> str | None:
        """The resolved address (e-mail, mobile, URL key) when the writer put one in."""
        value = self.payload.get("to")
        return str(value) if value else None


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    reason: str | None = None
    provider_id: str | None = None
    retry_after: float | None = None  # seconds, when the provider said how long to wait

    @classmethod
    def ok(cls, provider_id: str | None = None) -> Outcome:
        return cls("sent", provider_id=provider_id)

    @classmethod
    def transient(cls, reason: str, retry_after: float | None = None) -> Outcome:
        return cls("transient", reason=reason[:1000], retry_after=retry_after)

    @classmethod
    def permanent(cls, reason: str) -> Outcome:
        return cls("permanent", reason=reason[:1000])


@runtime_checkable
class Channel(Protocol):
    """A channel adapter. ``send`` must not raise for provider errors (it classifies them);
    an unexpected exception is treated by the dispatcher as a transient failure."""

    name: str
    capabilities: Capabilities

    def send(self, message: Message) -> Outcome: ...
