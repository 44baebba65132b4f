"""A brand's WeCom app: configuration (secrets encrypted at rest), its settings, and the API
client built from it."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.customers import vault
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.wecom.crypto import WeComCrypt
from siyu.wecom.models import WecomApp

if TYPE_CHECKING:
    from siyu.org.models import Brand
    from siyu.wecom.client import WeComClient

OFFICIAL = "https://qyapi.weixin.qq.com"
MANAGE = "wecom.manage"
_AES = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{1,32}$")


@dataclass(frozen=True)
class AppSettings:
    """Per-brand connector behaviour; defaults from WECOM.md (server-configurable numbers)."""

    welcome_text: str = ""  # greeting when no SOP greets new friends (empty: none)
    welcome_valid_s: int = 20  # how long a welcome code can be used after the event
    callback_max_skew_s: int = 300  # older (or future) callback timestamps are replays
    mass_results_after_s: int = 3600  # read a mass message's results this long after sending
    transfer_max: int = 2  # a customer can be transferred at most twice …
    transfer_protect_days: int = 90  # … then is protected this long

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> AppSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})


class AppIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    corp_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    agent_id: str | None = Field(default=None, max_length=32)
    secret: str = Field(min_length=1, max_length=200)
    token: str = Field(min_length=1, max_length=32, description="callback Token (≤32 alnum)")
    aes_key: str = Field(min_length=43, max_length=43, description="EncodingAESKey (43 alnum)")
    base_url: str = Field(default=OFFICIAL, max_length=300, pattern=r"^https?://")
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)


class AppOut(BaseModel):
    corp_id: str
    agent_id: str | None
    base_url: str
    enabled: bool
    secret: str  # masked
    settings: dict[str, Any]
    last_sync_at: str | None
    last_sync: dict[str, Any]


def _check(data: AppIn) -> None:
    if not _TOKEN.match(data.token):
        raise Invalid("wecom.bad_config", field="token", reason="≤32 letters or digits")
    if not _AES.match(data.aes_key):
        raise Invalid("wecom.bad_config", field="aes_key", reason="43 letters or digits")
    unknown = set(data.settings) - {f.name for f in fields(AppSettings)}
    if unknown:
        raise Invalid("wecom.bad_config", field="settings", reason=f"unknown {sorted(unknown)}")
    try:
        AppSettings.of(data.settings)
    except TypeError as exc:
        raise Invalid("wecom.bad_config", field="settings", reason=str(exc)) from None


def configure(db: Session, actor: Actor, brand: Brand, data: AppIn) -> WecomApp:
    """Create or replace the brand's WeCom app."""
    authorize(actor, MANAGE, org_queries.brand_ref(brand))
    _check(data)
    with atomic(db):
        app = db.get(WecomApp, brand.id)
        if app is None:
            app = WecomApp(brand_id=brand.id)
            db.add(app)
        app.corp_id = data.corp_id
        app.agent_id = data.agent_id
        app.secret_enc = vault.encrypt(data.secret)
        app.token_enc = vault.encrypt(data.token)
        app.aes_key_enc = vault.encrypt(data.aes_key)
        app.base_url = data.base_url.rstrip("/")
        app.enabled = data.enabled
        app.settings = asdict(AppSettings.of(data.settings))
        app.updated_at = utcnow()
        record(
            db,
            actor,
            "wecom.configure",
            "wecom_app",
            brand.id,
            brand=brand,
            after={"corp_id": data.corp_id, "base_url": app.base_url, "enabled": data.enabled},
        )
    return app


def app_of(db: Session, brand_id: str) -> WecomApp:
    app = db.get(WecomApp, brand_id)
    if app is None or not app.enabled:
        raise NotFound("wecom.not_configured", brand=brand_id)
    return app


def settings_of(app: WecomApp) -> AppSettings:
    return AppSettings.of(app.settings)


def crypt_of(app: WecomApp) -> WeComCrypt:
    return WeComCrypt(
        token=vault.decrypt(app.token_enc),
        encoding_aes_key=vault.decrypt(app.aes_key_enc),
        receive_id=app.corp_id,
    )


_clients: dict[tuple[str, str, str], WeComClient] = {}
_clients_lock = threading.Lock()


def client_of(app: WecomApp) -> WeComClient:
    """The process's client for this app (one HTTP connection pool per app; the access
    token cache is process-wide and thread-safe)."""
    from siyu.wecom.client import WeComClient

    secret = vault.decrypt(app.secret_enc)
    key = (app.base_url, app.corp_id, hashlib.sha256(secret.encode()).hexdigest())
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            # rate limits are not waited out inside a send: the outbox row is retried later
            found = _clients[key] = WeComClient(
                app.corp_id, secret, base_url=app.base_url, rate_limit_retries=0
            )
        return found


def client_cache_clear() -> None:
    with _clients_lock:
        for c in _clients.values():
            c.close()
        _clients.clear()


def out(app: WecomApp) -> AppOut:
    secret = vault.decrypt(app.secret_enc)
    return AppOut(
        corp_id=app.corp_id,
        agent_id=app.agent_id,
        base_url=app.base_url,
        enabled=app.enabled,
        secret=(secret[:3] + "****" + secret[-2:]) if len(secret) > 6 else "****",
        settings=dict(app.settings or {}),
        last_sync_at=app.last_sync_at.isoformat() if app.last_sync_at else None,
        last_sync=dict(app.last_sync or {}),
    )
