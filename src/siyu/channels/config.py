"""Which adapter delivers a brand's row: per-brand settings first, global settings second.

``BrandAdapters(db)`` builds, for each (brand, channel) the dispatcher meets, the adapter
from the brand's ``ChannelSetting`` (secrets decrypted in memory only) and falls back to the
process settings where a channel has them (e-mail: ``SIYU_SMTP_*``). A channel with neither
gets no adapter and its rows fail ``not_configured`` (retry them from the dead letters once
configured). Other packages add channels with :func:`register_channel` (the WeCom adapters)::

    register_channel("wecom_1to1", lambda brand_id, setting, settings: WecomChannel(...))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels.base import Channel
from siyu.channels.console import ConsoleChannel
from siyu.channels.email import EmailChannel, SmtpConfig
from siyu.channels.models import ChannelSetting
from siyu.channels.sms import SmsChannel, SmsProvider, SmsTemplate
from siyu.channels.webhook import WebhookChannel, WebhookEndpoint
from siyu.core.settings import Settings, get_settings
from siyu.customers import vault


@dataclass(frozen=True)
class BrandSetting:
    """A brand's settings for one channel, its secret decrypted (kept in memory only)."""

    brand_id: str
    channel: str
    enabled: bool
    config: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None
    unreadable: bool = False  # the stored secret could not be decrypted


Factory = Callable[[str, BrandSetting | None, Settings], Channel | None]

_CONSOLE = ConsoleChannel()


def _console(brand_id: str, setting: BrandSetting | None, settings: Settings) -> Channel:
    return _CONSOLE


def _webhook(brand_id: str, setting: BrandSetting | None, settings: Settings) -> Channel | None:
    if setting is None or not setting.config.get("url") or not setting.secret:
        return None
    endpoint = WebhookEndpoint(str(setting.config["url"]), setting.secret.encode())
    return WebhookChannel({brand_id: endpoint}, timeout=settings.channel_timeout)


def _sms(brand_id: str, setting: BrandSetting | None, settings: Settings) -> Channel | None:
    if setting is None or not setting.secret:
        return None
    cfg = setting.config
    if not cfg.get("endpoint") or not cfg.get("key_id"):
        return None
    sign_name = str(cfg.get("sign_name") or "")
    templates = {
        str(code): SmsTemplate(
            str(t.get("template_id", "")),
            str(t.get("sign_name") or sign_name),
            tuple(str(v) for v in t.get("variables", ())),
        )
        for code, t in (cfg.get("templates") or {}).items()
        if isinstance(t, dict)
    }
    provider = SmsProvider(
        str(cfg["endpoint"]), str(cfg["key_id"]), setting.secret.encode(), settings.channel_timeout
    )
    return SmsChannel(provider, {brand_id: templates})


def _email(brand_id: str, setting: BrandSetting | None, settings: Settings) -> Channel | None:
    base = SmtpConfig.from_settings(settings)
    cfg = setting.config if setting is not None else {}
    host = cfg.get("smtp_host")
    if host:  # the brand's own SMTP server wins over the installation's
        config = SmtpConfig(
            host=str(host),
            port=int(cfg.get("smtp_port") or 587),
            user=cfg.get("smtp_user") or None,
            password=setting.secret if setting is not None else None,
            sender=str(cfg.get("from_address") or f"siyu@{host}"),
            starttls=bool(cfg.get("smtp_starttls", True)),
            timeout=settings.smtp_timeout,
        )
    elif base is not None:
        sender = cfg.get("from_address") or base.sender
        config = replace(base, sender=str(sender))
    else:
        return None
    return EmailChannel(config)


_FACTORIES: dict[str, Factory] = {
    "console": _console,
    "webhook": _webhook,
    "sms": _sms,
    "email": _email,
}


def _wecom(name: str) -> Factory:
    def build(brand_id: str, setting: BrandSetting | None, settings: Settings) -> Channel:
        from siyu.channels.wecom import WeComChannel
        from siyu.core.db import session_factory

        return WeComChannel(name, session_factory())

    return build


for _name in ("wecom_1to1", "wecom_mass", "wecom_group"):
    _FACTORIES[_name] = _wecom(_name)


def register_channel(name: str, factory: Factory) -> None:
    """Add (or replace) the factory of a channel's adapter."""
    _FACTORIES[name] = factory


def channels() -> list[str]:
    """The channels the dispatcher delivers (rows of other channels stay pending)."""
    return sorted(_FACTORIES)


def load_settings(db: Session, brand_ids: set[str]) -> dict[tuple[str, str], BrandSetting]:
    """The stored settings of these brands, secrets decrypted."""
    out: dict[tuple[str, str], BrandSetting] = {}
    if not brand_ids:
        return out
    rows = db.scalars(select(ChannelSetting).where(ChannelSetting.brand_id.in_(brand_ids)))
    for row in rows:
        secret, unreadable = None, False
        if row.secret_enc:
            try:
                secret = vault.decrypt(row.secret_enc)
            except Exception:  # damaged, or encrypted under another installation's key
                unreadable = True
        out[(row.brand_id, row.channel)] = BrandSetting(
            brand_id=row.brand_id,
            channel=row.channel,
            enabled=bool(row.enabled),
            config=dict(row.config or {}),
            secret=secret,
            unreadable=unreadable,
        )
    return out


class SettingsUnreadable(Exception):
    """A brand's channel secret cannot be decrypted (a wrong ``pii.key``?)."""


class BrandAdapters:
    """Adapters per brand for one dispatcher pass (settings read once per pass, so an edit
    in the console applies from the next pass on)."""

    def __init__(self, db: Session, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self._stored: dict[tuple[str, str], BrandSetting] = {}
        self._loaded: set[str] = set()
        self._built: dict[tuple[str, str], Channel | None] = {}

    def channels(self) -> list[str]:
        return channels()

    def prepare(self, brand_ids: set[str]) -> None:
        missing = brand_ids - self._loaded
        if missing:
            self._stored.update(load_settings(self.db, missing))
            self._loaded |= missing

    def get(self, brand_id: str, channel: str) -> Channel | None:
        key = (brand_id, channel)
        if key not in self._built:
            self.prepare({brand_id})
            setting = self._stored.get(key)
            factory = _FACTORIES.get(channel)
            if setting is not None and setting.unreadable:
                raise SettingsUnreadable(f"{channel} secret of brand {brand_id}")
            if factory is None or (setting is not None and not setting.enabled):
                self._built[key] = None
            else:
                self._built[key] = factory(brand_id, setting, self.settings)
        return self._built[key]


class StaticAdapters:
    """Fixed adapters for every brand (tests, benchmarks, ``dispatch(adapters=...)``)."""

    def __init__(self, adapters: Mapping[str, Channel]) -> None:
        self.adapters = adapters

    def channels(self) -> list[str]:
        return sorted(self.adapters)

    def prepare(self, brand_ids: set[str]) -> None:
        pass

    def get(self, brand_id: str, channel: str) -> Channel | None:
        return self.adapters.get(channel)
