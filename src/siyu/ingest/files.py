"""Reading import files into Arrow: CSV (UTF-8, UTF-8 BOM, GB18030), XLSX and JSONL.

CSV goes through ``pyarrow.csv`` (multi-threaded C++ parser, every column as text); the
encoding is detected with ``core.tabular.decode`` and GB18030 is re-encoded to UTF-8 first.
Line numbers are those a person sees (header = line 1). They are ``row + 2`` unless the
file has blank lines, quoted line breaks or malformed rows; then they are recounted with
Python's ``csv`` module, which only happens for such files.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siyu.core.errors import FieldError, Invalid
from siyu.core.tabular import decode, read_rows

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FORMATS = (".csv", ".txt", ".xlsx", ".xlsm", ".jsonl", ".ndjson")


@dataclass
class RawTable:
    """Every column as text, keyed by the file's own headers, with line numbers."""

    table: pa.Table
    lines: np.ndarray
    errors: list[FieldError] = field(default_factory=list)


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ""):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise Invalid("import.unsupported_format", suffix=suffix)


def read_table(path: Path, data: bytes) -> RawTable:
    fmt = file_format(path)
    if fmt == "xlsx":
        return _xlsx(path, data)
    if fmt == "csv":
        return _csv(data)
    raise Invalid("import.unsupported_format", suffix=path.suffix)


def _header(text: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text[: text.find("\n") + 1 or len(text)])), [])
    headers = [h.strip() for h in first]
    if len(set(headers)) != len(headers):
        dup = sorted({h for h in headers if headers.count(h) > 1})
        raise Invalid("ingest.duplicate_columns", columns=", ".join(dup))
    return headers


def _csv(data: bytes) -> RawTable:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    text, encoding = decode(data)
    if encoding != "utf-8-sig" or data.startswith(b"\xef\xbb\xbf"):
        data = text.encode("utf-8")
    headers = _header(text)
    if not headers:
        return RawTable(pa.table({}), np.empty(0, dtype=np.int64))
    invalid: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    # Quotes in the header line alone do not affect record boundaries.
    quoted = '"' in text[text.find("\n") + 1 :]

    def parse(threads: bool) -> pa.Table:
        return pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(
                column_names=headers, skip_rows=1, use_threads=threads, block_size=1 << 22
            ),
            parse_options=pcsv.ParseOptions(
                newlines_in_values=quoted, invalid_row_handler=on_invalid
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={h: pa.string() for h in headers},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        table = parse(True)
        if invalid and any(num is None for num, _ in invalid):
            invalid.clear()
            table = parse(False)  # the single-threaded parser knows line numbers
    except pa.ArrowInvalid as exc:
        raise Invalid("import.bad_csv", reason=str(exc)[:200]) from exc
    errors = [
        FieldError(
            code="ingest.bad_row",
            row=num,
            reason=f"expected {len(headers)} columns: {line[:80]}",
        )
        for num, line in invalid
    ]
    body = text.replace("\r\n", "\n")
    simple = not quoted and not invalid and "\n\n" not in body.rstrip("\n")
    if simple:
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    else:
        lines = _recount(text, len(headers), table.num_rows)
    return RawTable(table, lines, errors)


def _recount(text: str, width: int, rows: int) -> np.ndarray:
    """Line of each record pyarrow kept (not blank, right number of fields)."""
    import numpy as np

    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    out: list[int] = []
    start = 2
    for values in reader:
        if values and len(values) == width:
            out.append(start)
        start = reader.line_num + 1
    if len(out) != rows:  # should not happen; keep positions rather than fail the import
        out = list(range(2, rows + 2))
    return np.asarray(out, dtype=np.int64)


def _xlsx(path: Path, data: bytes) -> RawTable:
    import numpy as np
    import pyarrow as pa

    lines: list[int] = []
    columns: dict[str, list[str]] = {}
    for line, row in read_rows(path, data):
        if not columns:
            columns = {h: [] for h in row}
        for h in columns:
            columns[h].append(row.get(h, ""))
        lines.append(line)
    table = pa.table({h: pa.array(v, pa.string()) for h, v in columns.items()})
    return RawTable(table, np.asarray(lines, dtype=np.int64))


def jsonl_items(data: bytes) -> tuple[list[tuple[int, Any]], list[FieldError]]:
    """(line, parsed object) per non-blank line; malformed lines become errors."""
    import json

    text, _ = decode(data)
    items: list[tuple[int, Any]] = []
    errors: list[FieldError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.append(FieldError("ingest.bad_json", None, number, exc.msg))
    return items, errors
