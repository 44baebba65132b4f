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
# Amounts must fit a signed 64-bit column with room to sum: about 10^15 yuan.
MAX_FEN = 10**17


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
    if abs(fen) > MAX_FEN:
        raise ValueError(f"amount out of range: {text!r}")
    if fen != fen.to_integral_value():
        raise ValueError(f"more than two decimals: {text!r}")
    return Fen(int(fen.to_integral_value(rounding=ROUND_HALF_UP)))


def format_fen(amount: int, symbol: str = "¥") -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{symbol}{whole:,}.{cents:02d}"
