"""Read tabular files the way Chinese brands hand them over.

CSV in UTF-8, UTF-8 with BOM or GB18030 (what Excel in China writes), and XLSX. Rows come
out as ``(line_number, {header: value})`` with the header stripped; line numbers are those
a person sees when opening the file (the header is line 1).

    for line, row in read_rows(Path("staff.csv")):
        ...
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from siyu.core.errors import Invalid

ENCODINGS = ("utf-8-sig", "gb18030")


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-8 (with or without BOM), else GB18030. Returns (text, encoding)."""
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise Invalid("import.bad_encoding")


def _clean(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # Excel stores "10086" typed into a cell as 10086.0.
        return str(int(value))
    return str(value).strip()


def read_rows(path: Path, data: bytes | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV or XLSX file (chosen by suffix), keyed by header."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        yield from _xlsx_rows(data if data is not None else path.read_bytes())
    elif suffix in (".csv", ".txt", ""):
        yield from _csv_rows(data if data is not None else path.read_bytes())
    else:
        raise Invalid("import.unsupported_format", suffix=suffix)


def _csv_rows(data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    text, _ = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise Invalid("import.bad_csv", reason=str(exc)) from exc
    line = 1
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            row = {h: _clean(values[i]) if i < len(values) else "" for i, h in enumerate(header)}
            if len(values) > len(header):
                row["__extra__"] = "|".join(values[len(header) :])
            yield line, row
    except csv.Error as exc:
        raise Invalid("import.bad_csv", reason=f"line {line + 1}: {exc}") from exc


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise Invalid("import.bad_xlsx", reason=type(exc).__name__) from exc
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        try:
            header = [_clean(h) for h in next(rows)]
        except StopIteration:
            return
        for offset, values in enumerate(rows, start=2):
            cells = [_clean(v) for v in values]
            if not any(cells):
                continue
            yield offset, {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header) if h}
    finally:
        book.close()
