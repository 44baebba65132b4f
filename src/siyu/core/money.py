"""Money is integer fen (分). Never floats.

>>> parse_yuan("12.30")
1230
>>> format_fen(1230)
'¥12.30'
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import NewType

Fen = NewType("Fen", int)


def parse_yuan(text: str | int | Decimal) -> Fen:
    """Parse an amount in yuan ("12.3", "¥1,234.50") into fen; refuses more than 2 decimals."""
    raw = str(text).strip().replace("¥", "").replace("￥", "").replace(",", "")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"more than two decimals: {text!r}")
    return Fen(int(fen.to_integral_value(rounding=ROUND_HALF_UP)))


def format_fen(amount: int, symbol: str = "¥") -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{symbol}{whole:,}.{cents:02d}"
