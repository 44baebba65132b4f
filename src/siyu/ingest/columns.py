"""Vectorised column checks and conversions for the file fast path (pyarrow.compute).

Each parser takes a string column and returns the converted column plus a boolean mask of
rows whose non-empty value could not be converted (and, where it helps, a reason per row).
Work that needs our own Python rules (phone normalisation, yuan parsing) runs once per
*distinct* value and is mapped back through a dictionary encoding, so 1,000,000 rows with
50,000 distinct phone numbers cost 50,000 calls.

:class:`Problems` collects the per-row errors; JSON helpers assemble the ``properties``
column without a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from siyu.core.errors import FieldError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Array = Any  # pa.Array | pa.ChunkedArray (kept loose: pyarrow ships no precise stubs)


class Problems:
    """Per-row errors of one file: ``bad[i]`` is set once row ``i`` has any error."""

    def __init__(self, lines: np.ndarray, header_of: dict[str, str]):
        import numpy as np

        self.lines = lines
        self.header_of = header_of
        self.bad = np.zeros(len(lines), dtype=bool)
        self.errors: list[FieldError] = []

    def add(self, mask: np.ndarray, field: str | None, code: str, reason: Any) -> None:
        """Record ``code`` for rows in ``mask``; ``reason`` is one text or one per row."""
        import numpy as np

        rows = np.flatnonzero(mask)
        if not isinstance(reason, str):
            reason = np.asarray(reason, dtype=object)[rows]
        self.add_at(rows, field, code, reason)

    def add_at(self, rows: np.ndarray, field: str | None, code: str, reason: Any) -> None:
        """Like :meth:`add` for row positions; a per-row ``reason`` is aligned with ``rows``.
        A reason ``"code|text"`` (from :func:`per_distinct`) carries its own code."""
        if rows.size == 0:
            return
        column = self.header_of.get(field, field) if field else None
        reasons = [reason] * rows.size if isinstance(reason, str) else [str(r) for r in reason]
        for line, text in zip(self.lines[rows].tolist(), reasons, strict=True):
            own, sep, rest = text.partition("|")
            if sep and own.count(".") == 1 and " " not in own:
                self.errors.append(FieldError(code=own, field=column, row=line, reason=rest))
            else:
                self.errors.append(FieldError(code=code, field=column, row=line, reason=text))
        self.bad[rows] = True

    def sorted_errors(self) -> list[FieldError]:
        return sorted(self.errors, key=lambda e: (e.row or 0, e.field or ""))


def flat(col: Array) -> Any:
    """One contiguous ``pa.Array``. (Never ``pa.chunked_array([chunked])``: pyarrow would
    iterate the chunked array value by value.)"""
    import pyarrow as pa

    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def const(value: str, n: int) -> Any:
    """A string column holding one value (via a dictionary: ``pa.repeat`` of a string scalar
    is 20x slower, a Python list 5x)."""
    import numpy as np
    import pyarrow as pa

    codes = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(codes, pa.array([value])).cast(pa.string())


def mask_of(arr: Array) -> np.ndarray:
    """A boolean pyarrow array (nulls as False) as a numpy mask."""
    import numpy as np
    import pyarrow.compute as pc

    out: np.ndarray = np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False))
    return out.astype(bool)


def text(col: Array) -> Array:
    """Trimmed strings, with empty cells as null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def per_distinct(
    col: Array, fn: Callable[[str], Any], out_type: pa.DataType
) -> tuple[Array, np.ndarray, np.ndarray]:
    """Apply ``fn`` once per distinct non-null value. ``fn`` raises ``ValueError`` (or a
    ``SiyuError``) for a bad value. Returns (converted, bad mask, reason per row)."""
    import numpy as np
    import pyarrow as pa

    from siyu.core.errors import SiyuError

    encoded = flat(col).dictionary_encode()
    values: list[Any] = []
    reasons: list[str | None] = []
    for raw in encoded.dictionary.to_pylist():
        try:
            values.append(fn(raw))
            reasons.append(None)
        except SiyuError as exc:
            values.append(None)
            reasons.append(exc.code + "|" + exc.message("en"))
        except ValueError as exc:
            values.append(None)
            reasons.append(str(exc))
    indices = encoded.indices
    converted = pa.array(values, out_type).take(indices)
    # Per row by numpy gathers over the distinct values (no Python object per row).
    codes = indices.to_numpy(zero_copy_only=False)
    null_rows = np.asarray(indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    codes = np.where(null_rows, 0, codes).astype(np.int64)
    distinct_reasons = np.asarray([*reasons, None], dtype=object)
    codes[null_rows] = len(reasons)
    reason_arr = distinct_reasons[codes]
    bad = np.asarray([r is not None for r in reasons] + [False], dtype=bool)[codes]
    return converted, bad, reason_arr


_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_times(col: Array, tz: str) -> tuple[Array, np.ndarray]:
    """ISO-like timestamps (``2026-03-01 10:00[:00]``, ``2026/3/1 10:00``, ``…T…+08:00``,
    ``…Z``). Naive values are read in the brand's time zone ``tz``. Returns UTC."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts_type = pa.timestamp("us", tz="UTC")
    s = pc.replace_substring(pc.replace_substring(flat(col), "/", "-"), "T", " ")
    valid = pc.is_valid(s)
    # Try formats until every value has one (exports use one format: usually one pass).
    naive = pc.strptime(s, format=_NAIVE_FORMATS[0], unit="us", error_is_null=True)
    aware = pa.nulls(len(s), pa.timestamp("us", tz="UTC"))
    if pc.any(pc.and_(valid, pc.is_null(naive))).as_py():
        aware = pc.strptime(s, format="%Y-%m-%d %H:%M:%S%z", unit="us", error_is_null=True)
        for fmt in _NAIVE_FORMATS[1:]:
            left = pc.and_(pc.and_(valid, pc.is_null(naive)), pc.is_null(aware))
            if not pc.any(left).as_py():
                break
            naive = pc.coalesce(naive, pc.strptime(s, format=fmt, unit="us", error_is_null=True))
    local = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
    out = pc.coalesce(pc.cast(aware, ts_type), pc.cast(local, ts_type))
    missing = mask_of(pc.and_(pc.is_valid(col), pc.is_null(out)))
    if missing.any():
        # Rare shapes (fractional seconds, odd offsets): Python's parser, per distinct value.
        rows = np.flatnonzero(missing)
        fixed, bad, _ = per_distinct(pc.take(col, pa.array(rows)), _py_time(tz), ts_type)
        full = out.to_pylist()
        for pos, value in zip(rows.tolist(), fixed.to_pylist(), strict=True):
            full[pos] = value
        out = pa.array(full, ts_type)
        missing[rows] = bad
    return out, missing


def _py_time(tz: str) -> Callable[[str], datetime]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)

    def parse(raw: str) -> datetime:
        value = datetime.fromisoformat(raw.strip().replace("/", "-"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)

    return parse


def parse_ints(col: Array) -> tuple[Array, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pc.match_substring_regex(col, r"^[+-]?\d{1,17}$")
    bad = mask_of(pc.and_(pc.is_valid(col), pc.invert(ok)))
    good = pc.if_else(ok, col, pa.scalar(None, pa.string()))
    return pc.cast(good, pa.int64()), bad


def parse_floats(col: Array) -> tuple[Array, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pc.match_substring_regex(col, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    bad = mask_of(pc.and_(pc.is_valid(col), pc.invert(ok)))
    good = pc.if_else(ok, col, pa.scalar(None, pa.string()))
    return pc.cast(good, pa.float64()), bad


def parse_fen(col: Array) -> tuple[Array, np.ndarray, np.ndarray]:
    """Yuan text (``12.30``, ``¥1,234.5``) → integer fen, through ``core.money.parse_yuan``."""
    import pyarrow as pa

    from siyu.core.money import parse_yuan

    return per_distinct(col, lambda raw: int(parse_yuan(raw)), pa.int64())


_TRUE = {"true", "1", "yes", "y", "是", "t"}
_FALSE = {"false", "0", "no", "n", "否", "f"}


def parse_bools(col: Array) -> tuple[Array, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    low = pc.utf8_lower(col)
    is_true = pc.is_in(low, value_set=pa.array(sorted(_TRUE)))
    is_false = pc.is_in(low, value_set=pa.array(sorted(_FALSE)))
    bad = mask_of(pc.and_(pc.is_valid(col), pc.invert(pc.or_(is_true, is_false))))
    out = pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
    return out, bad


def parse_dates(col: Array) -> tuple[Array, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    s = pc.replace_substring(col, "/", "-")
    got = pc.strptime(s, format="%Y-%m-%d", unit="s", error_is_null=True)
    bad = mask_of(pc.and_(pc.is_valid(col), pc.is_null(got)))
    return pc.cast(got, pa.date32()), bad


# ---------------------------------------------------------------- JSON assembly


def json_str(col: Array) -> Array:
    """Strings as JSON string literals (null stays null)."""
    import pyarrow.compute as pc

    # Escaping costs seven passes; most columns need none, which three cheap scans tell.
    needs = (
        pc.any(pc.match_substring(col, '"')).as_py()
        or pc.any(pc.match_substring(col, "\\")).as_py()
        or not pc.all(pc.utf8_is_printable(col)).as_py()
    )
    s = col
    if needs:
        s = pc.replace_substring(s, "\\", "\\\\")
        s = pc.replace_substring(s, '"', '\\"')
        s = pc.replace_substring(s, "\n", "\\n")
        s = pc.replace_substring(s, "\r", "\\r")
        s = pc.replace_substring(s, "\t", "\\t")
        # Other control characters are not worth an escape table: they become spaces.
        s = pc.replace_substring_regex(s, r"[\x00-\x1f]", " ")
    return pc.binary_join_element_wise('"', s, '"', "")


def json_literal(col: Array) -> Array:
    """Numbers, booleans, dates and timestamps as JSON literals."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(col.type):
        return pc.if_else(col, "true", "false")
    if pa.types.is_timestamp(col.type):
        return json_str(pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ"))
    if pa.types.is_date(col.type):
        return json_str(pc.strftime(col, format="%Y-%m-%d"))
    return pc.cast(col, pa.string())


def json_str_list(col: Array) -> Array:
    """Comma/semicolon/、-separated text as a JSON array of strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = pc.split_pattern_regex(col, r"\s*[,;，；、|]\s*")
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    flat = pc.replace_substring(parts.values, "\\", "\\\\")
    flat = pc.replace_substring(flat, '"', '\\"')
    rebuilt = pa.ListArray.from_arrays(parts.offsets, flat, mask=parts.is_null())
    inner = pc.binary_join(rebuilt, '","')
    return pc.binary_join_element_wise('["', inner, '"]', "")


def json_object(pairs: list[tuple[str, Array]], n: int) -> Array:
    """``{"k": v, …}`` per row from (key, JSON-literal column) pairs, omitting nulls."""
    import json

    import pyarrow as pa
    import pyarrow.compute as pc

    if not pairs:
        return pa.array(["{}"] * n, pa.string())
    # Each member carries its own leading comma, nulls become "", and the first comma goes.
    # (binary_join_element_wise with null_handling="skip" drops all-null rows in pyarrow 26.)
    members = [
        pc.fill_null(pc.binary_join_element_wise("," + json.dumps(k) + ":", v, ""), "")
        for k, v in pairs
    ]
    body = pc.binary_join_element_wise(*members, "")
    body = pc.utf8_slice_codeunits(body, start=1)
    return pc.binary_join_element_wise("{", body, "}", "")
