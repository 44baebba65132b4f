"""Core: ids, money, time zones, i18n, error codes, settings and keys."""

from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siyu.core.clock import local_midnight_utc, local_today
from siyu.core.errors import Invalid, NotFound
from siyu.core.i18n import catalogue, normalise_locale, translate
from siyu.core.ids import new_id
from siyu.core.money import format_fen, parse_yuan
from siyu.core.settings import Settings


def test_ids_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.30", 1230), ("¥1,234.5", 123450), ("0.01", 1), ("-3", -300), ("￥8", 800)],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["1.234", "abc", "NaN", "", "1e400"])
def test_parse_yuan_refuses_bad_amounts(text: str) -> None:
    with pytest.raises(ValueError):
        parse_yuan(text)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_money_round_trips_through_text(fen: int) -> None:
    assert parse_yuan(format_fen(fen)) == fen


def test_brand_day_boundaries_follow_its_time_zone() -> None:
    # 2026-03-01 16:30 UTC is already 2 March in Shanghai (UTC+8)
    now = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    assert local_today("Asia/Shanghai", now) == date(2026, 3, 2)
    assert local_today("Europe/London", now) == date(2026, 3, 1)
    assert local_midnight_utc(date(2026, 3, 2), "Asia/Shanghai") == datetime(
        2026, 3, 1, 16, 0, tzinfo=UTC
    )


def test_every_error_code_has_both_languages() -> None:
    zh, en = catalogue("zh-CN"), catalogue("en")
    assert set(zh) == set(en)
    assert all(zh[k] and en[k] for k in zh)


def test_errors_carry_codes_and_translate() -> None:
    exc = NotFound("org.unit_not_found", unit="SH01")
    assert exc.code == "org.unit_not_found"
    assert exc.status == 404
    assert "SH01" in exc.message("en")
    assert "SH01" in exc.message("zh-CN")
    assert Invalid("validation.failed").status == 422


def test_locale_negotiation() -> None:
    assert normalise_locale(None) == "zh-CN"
    assert normalise_locale("en-US,en;q=0.9") == "en"
    assert normalise_locale("zh-TW") == "zh-CN"
    assert normalise_locale("fr") == "zh-CN"
    assert translate("errors.auth.not_signed_in", "en") == "Please sign in"


def test_keys_are_generated_once_with_mode_600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    first = settings.secret_key
    assert settings.secret_key == first
    assert settings.pii_key != first
    for name in ("secret.key", "pii.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "d" / name).st_mode)
        assert mode == 0o600


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.db_url == f"sqlite:///{(tmp_path / 'd' / 'siyu.db').resolve()}"
    assert settings.default_timezone == "Asia/Shanghai"


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError):
        Settings(default_timezone="Mars/Olympus")
