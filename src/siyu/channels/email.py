"""E-mail over SMTP (``smtplib``), optionally upgraded with STARTTLS.

Settings: ``SIYU_SMTP_HOST``, ``SIYU_SMTP_PORT``, ``SIYU_SMTP_USER``, ``SIYU_SMTP_PASSWORD``,
``SIYU_SMTP_FROM``, ``SIYU_SMTP_STARTTLS`` (default on), ``SIYU_SMTP_TIMEOUT``.

The message's content: ``subject``, ``text`` (or ``body``), optional ``html`` and optional
``attachments`` (``[{"filename", "content_type", "data": base64}]``); the address
is ``payload["to"]``. The ``Message-ID`` is derived from the idempotency key, so a message
sent twice (at-least-once delivery) carries the same id both times.

Classification: SMTP 4xx replies, connection errors and time-outs are transient; 5xx replies
are permanent, except 535 (authentication), which is a configuration fault that may be fixed
and is retried until the attempts run out. A message over ``MAX_BYTES`` (text plus HTML) or
with a subject over ``MAX_SUBJECT`` characters is refused before connecting
(``message_too_large``).
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from siyu.channels.base import Capabilities, Message, Outcome, is_timeout
from siyu.core.settings import Settings

MAX_BYTES = 1_000_000  # text + HTML, UTF-8
MAX_SUBJECT = 998  # RFC 5322 line limit


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "siyu@localhost"
    starttls: bool = True
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.smtp_from or f"siyu@{settings.smtp_host}",
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )


def _classify(code: int, text: str) -> Outcome:
    reason = f"smtp {code}: {text}"
    if code == 535:
        return Outcome.transient(reason, code="auth_failed")
    if 400 <= code < 500:
        return Outcome.transient(
            reason, code="throttled" if code == 421 else "provider_unavailable"
        )
    if code in (550, 551, 553):
        return Outcome.permanent(reason, code="recipient_invalid")
    return Outcome.permanent(reason, code="rejected")


class EmailChannel:
    name = "email"
    capabilities = Capabilities(rich_media=True, delivery_receipts=False)

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def build(self, message: Message) -> EmailMessage:
        content = message.content
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = message.to or ""
        mail["Subject"] = str(content.get("subject", ""))
        digest = hashlib.sha256(f"{message.brand_id}:{message.idem_key}".encode()).hexdigest()
        mail["Message-ID"] = f"<{digest[:32]}@siyu>"
        mail["X-Siyu-Idempotency-Key"] = message.idem_key
        mail.set_content(str(content.get("text") or content.get("body") or ""))
        if content.get("html"):
            mail.add_alternative(str(content["html"]), subtype="html")
        for item in content.get("attachments") or []:
            # {"filename", "content_type", "data": base64} (e.g. a client report's XLSX)
            maintype, _, subtype = str(item.get("content_type", "")).partition("/")
            mail.add_attachment(
                base64.b64decode(str(item.get("data", ""))),
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=str(item.get("filename") or "attachment"),
            )
        return mail

    def send(self, message: Message) -> Outcome:
        if not message.to or "@" not in message.to:
            return Outcome.permanent("no_recipient")
        content = message.content
        size = sum(
            len(str(content.get(k) or "").encode()) for k in ("text", "body", "html", "subject")
        )
        if size > MAX_BYTES or len(str(content.get("subject", ""))) > MAX_SUBJECT:
            return Outcome.permanent(
                f"message_too_large: {size} bytes (limit {MAX_BYTES})", code="message_too_large"
            )
        cfg = self.config
        try:
            mail = self.build(message)
        except (ValueError, TypeError) as exc:  # e.g. a header with a line break
            return Outcome.permanent(f"bad_payload: {exc}", code="bad_payload")
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.user:
                    smtp.login(cfg.user, cfg.password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return _classify(code, text.decode(errors="replace"))
        except smtplib.SMTPResponseException as exc:
            raw = exc.smtp_error
            said = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            return _classify(exc.smtp_code, said)
        except smtplib.SMTPNotSupportedError as exc:  # e.g. STARTTLS not offered
            return Outcome.permanent(f"smtp: {exc}", code="not_configured")
        except (smtplib.SMTPException, OSError) as exc:  # connection, time-out, TLS
            why = "provider_timeout" if is_timeout(exc) else "provider_unavailable"
            return Outcome.transient(f"smtp: {type(exc).__name__}: {exc}", code=why)
        if refused:
            code, text = next(iter(refused.values()))
            return _classify(code, text.decode(errors="replace"))
        return Outcome.ok(provider_id=str(mail["Message-ID"]))
