"""Translations: zh-CN by default, English available.

Catalogues are flat JSON files in ``core/locales``; keys are dotted (``ui.login``,
``errors.auth.invalid_credentials``). Values may hold ``{name}`` placeholders.

    >>> translate("ui.login", "en")
    'Sign in'
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")
_DIR = Path(__file__).with_name("locales")


@cache
def catalogue(locale: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((_DIR / f"{locale}.json").read_text(encoding="utf-8"))
    return data


def normalise_locale(value: str | None) -> str:
    """Map a cookie value or an Accept-Language header to a supported locale."""
    if not value:
        return DEFAULT_LOCALE
    for part in value.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LOCALE


def translate(key: str, locale: str = DEFAULT_LOCALE, /, **params: Any) -> str:
    text = catalogue(normalise_locale(locale)).get(key)
    if text is None:
        text = catalogue(DEFAULT_LOCALE).get(key, key)
    if params:
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            return text
    return text
