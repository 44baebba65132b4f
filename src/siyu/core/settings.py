"""Settings read from the environment (prefix ``SIYU_``) with safe defaults.

Usage::

    from siyu.core.settings import get_settings
    settings = get_settings()
    settings.database_url  # sqlite:///…/siyu-data/siyu.db unless SIYU_DATABASE_URL is set

Secrets (the session-signing key and the PII key) are generated on first use into the data
directory with mode 600, so a fresh install is secure without any set-up step.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Keys read once per process and path (they never change while running).
_KEYS: dict[tuple[str, str, str], bytes] = {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIYU_", extra="ignore")

    data_dir: Path = Field(default=Path("./siyu-data"))
    database_url: str | None = None
    default_timezone: str = "Asia/Shanghai"
    # None = decide per request: Secure when the request came over https.
    cookie_secure: bool | None = None
    session_hours: int = 12
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    node_modules: Path | None = None
    # "default" (argon2id library defaults) or "fast" (tests only: cheap hashes).
    argon2_profile: str = "default"
    # Fact lake (Delta tables): a local path or an object-store URI (s3://…); default
    # <data_dir>/lake. Object-store credentials come from the usual environment variables.
    lake_uri: str | None = None
    # `siyu worker` computes each brand's tags when its last run is older than this
    tags_interval_minutes: int = 60
    # E-mail channel (SMTP). No host = the e-mail adapter is not registered and e-mail rows
    # stay pending. STARTTLS is on by default; turn it off only for a local relay.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str | None = None
    smtp_starttls: bool = True
    smtp_timeout: float = 10.0
    # Outbox dispatcher (``siyu worker``): rows claimed per pass, how long a claim lasts before
    # another worker may take the row over (longer than any adapter time-out), attempts before
    # a transient failure becomes final, and the HTTP adapters' (webhook, SMS) time-out.
    outbox_batch: int = Field(default=50, ge=1, le=5000)
    outbox_lease_seconds: float = Field(default=300.0, gt=0)
    outbox_max_attempts: int = Field(default=8, ge=1, le=100)
    channel_timeout: float = Field(default=10.0, gt=0)

    @field_validator("default_timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'siyu.db'}"

    @property
    def lake_location(self) -> str:
        return self.lake_uri or str(self.resolved_data_dir / "lake")

    def ensure_data_dir(self) -> Path:
        path = self.resolved_data_dir
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _key(self, name: str) -> bytes:
        cache_key = (os.getcwd(), str(self.data_dir), name)
        cached = _KEYS.get(cache_key)
        if cached is not None:
            return cached
        path = self.resolved_data_dir / name
        self.ensure_data_dir()
        if not path.exists():
            # O_EXCL so two processes starting at once cannot both write a different key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
        key = _KEYS[cache_key] = bytes.fromhex(path.read_text().strip())
        return key

    @property
    def secret_key(self) -> bytes:
        """Key for signing session cookies and CSRF tokens."""
        return self._key("secret.key")

    @property
    def pii_key(self) -> bytes:
        """Key for PII encryption (AES-GCM) and keyed hashes (HMAC-SHA256)."""
        return self._key("pii.key")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (after the environment changed, e.g. ``--data-dir``)."""
    get_settings.cache_clear()
