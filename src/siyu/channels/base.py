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

# Stable reason codes stored on a failed or retried outbox row (``Outbox.reason``); the
# free text beside it (``Outbox.error``) says what exactly happened.
REASONS: tuple[str, ...] = (
    "no_recipient",  # the customer has no phone / e-mail in the vault (or no customer)
    "opted_out",  # the customer refused marketing; transactional messages still go
    "not_configured",  # the brand has no settings for this channel (and no global fallback)
    "template_not_registered",  # SMS: the template code is not in the brand's registry
    "template_params_invalid",  # SMS: a required variable missing or one not allowed
    "message_too_large",  # over the channel's size limit
    "bad_payload",  # the row's payload is not a message (not a JSON object, wrong types)
    "content_unusable",  # its template does not render, or its material expired or archived
    "recipient_invalid",  # the provider refused the address
    "rejected",  # the provider refused the message for good (4xx, content, blacklist)
    "auth_failed",  # our credentials or signature were refused
    "throttled",  # rate or quota limit: retried after the provider's delay
    "provider_timeout",  # no answer in time: retried
    "provider_unavailable",  # 5xx, busy, connection refused: retried
    "adapter_error",  # an unexpected exception in the adapter: retried
    "worker_lost",  # the row's claim expired max-attempts times (its worker died each time)
    "sop_disabled",  # its SOP was switched off after the touch was planned: never sent
)


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
    code: str | None = None  # one of ``REASONS`` for a failure

    @classmethod
    def ok(cls, provider_id: str | None = None) -> Outcome:
        return cls("sent", provider_id=provider_id)

    @classmethod
    def transient(
        cls, reason: str, retry_after: float | None = None, code: str = "provider_unavailable"
    ) -> Outcome:
        return cls("transient", reason=reason[:1000], retry_after=retry_after, code=code)

    @classmethod
    def permanent(cls, reason: str, code: str | None = None) -> Outcome:
        if code is None:  # a bare reason that is itself a code ("no_recipient")
            code = reason if reason in REASONS else "rejected"
        return cls("permanent", reason=reason[:1000], code=code)


def is_timeout(exc: BaseException) -> bool:
    """Whether a urllib / socket error is a time-out (``URLError`` wraps the real cause)."""
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


@runtime_checkable
class Channel(Protocol):
    """A channel adapter. ``send`` must not raise for provider errors (it classifies them);
    an unexpected exception is treated by the dispatcher as a transient failure."""

    name: str
    capabilities: Capabilities

    def send(self, message: Message) -> Outcome: ...
