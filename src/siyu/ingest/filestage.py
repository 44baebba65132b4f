"""The vectorised file path: a :class:`~siyu.ingest.files.RawTable` → :class:`Staged`.

Columns are mapped to canonical fields, converted and checked whole (``ingest.columns``);
rows are grouped by event type and each group's properties are checked against its schema
and assembled into JSON without a Python loop. Only a group that uses a nested property
(``tracking_event.props`` as JSON text, ``referral`` identifier lists) is validated row by
row with its pydantic schema. Orders have their own grouping (``ingest.orderstage``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from siyu.core.errors import Invalid, SiyuError
from siyu.core.validation import field_errors
from siyu.customers import vault
from siyu.ingest import columns as C
from siyu.ingest.catalogue import EventSpec
from siyu.ingest.files import RawTable
from siyu.ingest.mapping import Mapping
from siyu.ingest.registry import FieldDesc, Registry
from siyu.ingest.staging import FUTURE_SLACK, Staged, events_schema, items_schema, orders_schema

if TYPE_CHECKING:
    import numpy as np

ENVELOPE = ("event_id", "event_type", "schema_version", "occurred_at", "source")
PROFILE = ("name", "nickname", "gender", "birthday", "city")


@dataclass
class Context:
    brand_id: str
    tz: str
    registry: Registry
    id_types: list[str]
    source: str
    kind: str
    now: datetime


@dataclass
class Frame:
    """Canonical text columns of one file plus where each came from."""

    cols: dict[str, Any]
    raw: RawTable
    problems: C.Problems
    ignored: list[str]
    n: int


def frame(raw: RawTable, mapping: Mapping, ctx: Context, known: set[str]) -> Frame:
    import pyarrow as pa

    headers = raw.table.column_names
    resolved = mapping.resolve(headers, ctx.kind, known)
    cols: dict[str, Any] = {}
    header_of: dict[str, str] = {}
    ignored = []
    for header in headers:
        target = resolved.get(header)
        if target is None or target in cols:
            ignored.append(header)
            continue
        col = C.text(raw.table.column(header))
        vmap = mapping.value_map(target)
        cols[target] = _map_values(col, vmap) if vmap else col
        header_of[target] = header
    n = raw.table.num_rows
    for target, value in mapping.defaults.items():
        if target not in cols:
            cols[target] = pa.array([value] * n, pa.string())
            header_of[target] = f"{target} (default)"
    problems = C.Problems(raw.lines, header_of)
    problems.errors.extend(raw.errors)
    return Frame(cols, raw, problems, ignored, n)


def _map_values(col: Any, vmap: dict[str, str]) -> Any:
    import pyarrow as pa

    lowered = {k.lower(): v for k, v in vmap.items()}
    enc = C.flat(col).dictionary_encode()
    distinct = enc.dictionary.to_pylist()
    values = [vmap.get(v, lowered.get(v.lower(), v)) for v in distinct]
    if values == distinct:
        return col  # nothing to translate: skip rebuilding the column
    return pa.array(values, pa.string()).take(enc.indices)


def deterministic_ids(fr: Frame, ctx: Context) -> Any:
    """Hash of brand, source, kind and the row's own cells: the same row gives the same id."""
    from siyu.analytics.hashing import row_digests

    prefix = "\x1f".join((ctx.brand_id, ctx.source, ctx.kind))
    cells = [fr.raw.table.column(h) for h in fr.raw.table.column_names]
    return row_digests(prefix, cells, tag="r:")


def identifier_columns(fr: Frame, ctx: Context) -> dict[str, Any]:
    """Normalised identifier columns; malformed values are row errors."""
    import pyarrow as pa

    out: dict[str, Any] = {}
    for t in ctx.id_types:
        col = fr.cols.get(t)
        if col is None:
            continue

        def normalise(value: str, id_type: str = t) -> str:
            return vault.normalise(id_type, value)

        norm, bad, reasons = C.per_distinct(col, normalise, pa.string())
        fr.problems.add(bad, t, "ingest.bad_identifier", reasons)
        out[t] = norm
    return out


def times(fr: Frame, ctx: Context, required: bool) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = fr.cols.get("occurred_at")
    if col is None:
        if required:
            raise Invalid("ingest.missing_column", column="occurred_at")
        return pa.array([ctx.now] * fr.n, pa.timestamp("us", tz="UTC"))
    ts, bad = C.parse_times(col, ctx.tz)
    fr.problems.add(bad, "occurred_at", "ingest.bad_time", "not a date and time")
    missing = C.mask_of(pc.is_null(col))
    if required:
        fr.problems.add(missing, "occurred_at", "ingest.required", "required")
    else:
        ts = pc.coalesce(ts, pa.scalar(ctx.now, pa.timestamp("us", tz="UTC")))
    late = C.mask_of(pc.greater(ts, pa.scalar(ctx.now + FUTURE_SLACK, ts.type)))
    fr.problems.add(late & ~bad, "occurred_at", "ingest.occurred_in_future", "in the future")
    return ts if isinstance(ts, pa.Array) else ts.combine_chunks()


# ---------------------------------------------------------------- property checks


def convert(col: Any, f: FieldDesc, tz: str) -> tuple[Any, np.ndarray, Any]:
    """(converted column, bad mask, reasons) for one property column."""
    import numpy as np

    reasons: Any = f"not a valid {f.kind}"
    if f.kind in ("str", "str_list"):
        return col, np.zeros(len(col), dtype=bool), reasons
    if f.kind == "fen":
        return C.parse_fen(col)
    if f.kind == "int":
        value, bad = C.parse_ints(col)
    elif f.kind == "float":
        value, bad = C.parse_floats(col)
    elif f.kind == "bool":
        value, bad = C.parse_bools(col)
    elif f.kind == "date":
        value, bad = C.parse_dates(col)
    elif f.kind == "datetime":
        value, bad = C.parse_times(col, tz)
    else:
        raise ValueError(f.kind)
    return value, bad, reasons


def check_field(value: Any, raw: Any, f: FieldDesc, rows: np.ndarray, problems: C.Problems) -> None:
    """Constraint checks (length, range, choices) over a converted column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if f.max_length is not None and f.kind in ("str",):
        long = C.mask_of(pc.greater(pc.utf8_length(value), f.max_length))
        problems.add_at(rows[long], f.name, "ingest.too_long", f"longer than {f.max_length}")
    if f.choices is not None:
        valid = pc.is_in(value, value_set=pa.array(list(f.choices)))
        wrong = C.mask_of(pc.and_(pc.is_valid(value), pc.invert(valid)))
        problems.add_at(
            rows[wrong], f.name, "ingest.not_allowed", "one of: " + ", ".join(f.choices)
        )
    if f.ge is not None and f.kind in ("int", "fen", "float"):
        low = C.mask_of(pc.less(value, f.ge))
        problems.add_at(rows[low], f.name, "ingest.out_of_range", f"less than {f.ge:g}")
    if f.le is not None and f.kind in ("int", "fen", "float"):
        high = C.mask_of(pc.greater(value, f.le))
        problems.add_at(rows[high], f.name, "ingest.out_of_range", f"more than {f.le:g}")
    del raw


def group_properties(
    sub: dict[str, Any],
    spec: EventSpec,
    fields: list[FieldDesc],
    rows: np.ndarray,
    fr: Frame,
    tz: str,
) -> tuple[Any, Any] | None:
    """(lake properties JSON, profile JSON or None) for one event-type group, or None when
    the group needs the row-by-row path."""
    import pyarrow.compute as pc

    n = rows.size
    lake_pairs: list[tuple[str, Any]] = []
    literal: dict[str, Any] = {}
    for f in fields:
        col = sub.get(f.name)
        if f.kind == "complex":
            if f.name == "attributes":
                attrs = [
                    (k.split(".", 1)[1], C.json_str(v))
                    for k, v in sub.items()
                    if k.startswith("attributes.")
                ]
                if attrs:
                    literal["attributes"] = C.json_object(attrs, n)
                    lake_pairs.append(("attributes", literal["attributes"]))
                continue
            if col is not None and pc.any(pc.is_valid(col)).as_py():
                return None
            if f.required:
                fr.problems.add_at(rows, f.name, "ingest.required", "required")
            continue
        if col is None:
            if f.required:
                fr.problems.add_at(rows, f.name, "ingest.required", "required")
            continue
        if f.required:
            missing = C.mask_of(pc.is_null(col))
            fr.problems.add_at(rows[missing], f.name, "ingest.required", "required")
        value, bad, reasons = convert(col, f, tz)
        if bad.any():
            picked = reasons if isinstance(reasons, str) else reasons[bad]
            fr.problems.add_at(rows[bad], f.name, "ingest.bad_value", picked)
        check_field(value, col, f, rows, fr.problems)
        if f.kind == "str_list":
            lit = C.json_str_list(value)
        elif f.kind == "str":
            lit = C.json_str(value)
        else:
            lit = C.json_literal(value)
        literal[f.name] = lit
        if f.name not in spec.pii:
            lake_pairs.append((f.name, lit))
    props = C.json_object(lake_pairs, n)
    profile = None
    if spec.event_type == "customer_upserted":
        pairs = [(k, literal[k]) for k in PROFILE if k in literal]
        if "level" in literal or "attributes" in literal:
            attr_pairs = [("level", literal["level"])] if "level" in literal else []
            if "attributes" in literal:
                # merge: level first, then the attributes object's members
                inner = pc.replace_substring_regex(literal["attributes"], r"^\{|\}$", "")
                attr_pairs.append(("", inner))
            pairs.append(("attributes", _merge_objects(attr_pairs, n)))
        profile = C.json_object(pairs, n)
    return props, profile


def _merge_objects(pairs: list[tuple[str, Any]], n: int) -> Any:
    import pyarrow.compute as pc

    parts = []
    for key, value in pairs:
        if key:
            member = pc.binary_join_element_wise(json.dumps(key) + ":", value, "")
        else:
            member = pc.if_else(pc.equal(value, ""), None, value)
        parts.append(pc.fill_null(pc.binary_join_element_wise(member, ",", ""), ""))
    body = pc.replace_substring_regex(pc.binary_join_element_wise(*parts, ""), ",$", "")
    return pc.binary_join_element_wise("{", body, "}", "")


def rowwise_properties(
    sub: dict[str, Any],
    spec: EventSpec,
    fields: list[FieldDesc],
    rows: np.ndarray,
    fr: Frame,
    ctx: Context,
) -> tuple[list[str | None], list[str | None]]:
    """The slow path for groups with nested properties: pydantic per row."""
    from siyu.ingest.staging import lake_properties, profile_of

    names = {f.name: f for f in fields}
    columns = {k: v.to_pylist() for k, v in sub.items() if k in names}
    props_out: list[str | None] = []
    profiles: list[str | None] = []
    keys = vault.keys()
    for i in range(rows.size):
        data: dict[str, Any] = {}
        bad = False
        for name, values in columns.items():
            value = values[i]
            if value is None:
                continue
            if names[name].kind in ("complex", "str_list") and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    fr.problems.add_at(rows[i : i + 1], name, "ingest.bad_json", exc.msg)
                    bad = True
                    continue
            data[name] = value
        try:
            model = spec.model.model_validate(data)
        except ValidationError as exc:
            for err in field_errors(exc):
                top = (err.field or "").split(".")[0] or None
                fr.problems.add_at(rows[i : i + 1], top, err.code, err.reason)
            bad = True
        if bad:
            props_out.append(None)
            profiles.append(None)
            continue
        props = model.model_dump(mode="json")
        for name in spec.identity_lists:
            found = {}
            for ident in getattr(model, name):
                try:
                    found[ident.type] = vault.normalise(ident.type, ident.value)
                except SiyuError as exc:
                    fr.problems.add_at(rows[i : i + 1], name, exc.code, exc.message("en"))
            props[name] = sorted(
                vault.identity_key(ctx.brand_id, t, v, keys) for t, v in found.items()
            )
        props_out.append(lake_properties(spec.pii, props))
        profiles.append(profile_of(props) if spec.event_type == "customer_upserted" else None)
    return props_out, profiles


# ---------------------------------------------------------------- events and customers


def stage_events(fr: Frame, ctx: Context) -> Staged:
    """Kind ``events`` (any catalogue event) and ``customers`` (customer_upserted)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = fr.n
    if ctx.kind == "customers":
        types = C.const("customer_upserted", n)
    else:
        if "event_type" not in fr.cols:
            raise Invalid("ingest.missing_column", column="event_type")
        types = fr.cols["event_type"]
    occurred = times(fr, ctx, required=ctx.kind != "customers")
    ids = identifier_columns(fr, ctx)
    given = fr.cols.get("event_id")
    generated = deterministic_ids(fr, ctx)
    event_id = generated if given is None else pc.coalesce(given, generated)
    is_gen = np.ones(n, dtype=bool) if given is None else C.mask_of(pc.is_null(given))
    if given is not None:
        long = C.mask_of(pc.greater(pc.utf8_length(given), 128))
        fr.problems.add(long, "event_id", "ingest.too_long", "longer than 128")
    versions = None
    if "schema_version" in fr.cols:
        versions, bad = C.parse_ints(fr.cols["schema_version"])
        fr.problems.add(bad, "schema_version", "ingest.bad_value", "not an integer")
    has_id = np.zeros(n, dtype=bool)
    for col in ids.values():
        has_id |= C.mask_of(pc.is_valid(col))
    # Per group: its rows and its Arrow columns; put back in row order with one take.
    pieces: list[tuple[np.ndarray, Any, Any]] = []
    version_out = np.zeros(n, dtype=np.int16)
    # Group rows by (type, version) with numpy, not a Python loop over every row.
    enc = C.flat(pc.fill_null(types, "")).dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ver = (
        np.zeros(n, dtype=np.int64)
        if versions is None
        else np.asarray(pc.fill_null(versions, 0).to_numpy(zero_copy_only=False), np.int64)
    )
    combo = codes * 10_000 + np.clip(ver, 0, 9_999)
    uniq, inverse = np.unique(combo, return_inverse=True)
    names = enc.dictionary.to_pylist()
    group_of: dict[tuple[str, int], np.ndarray] = {}
    for g, value in enumerate(uniq.tolist()):
        t, v = names[value // 10_000], value % 10_000
        version = v or ctx.registry.latest(t) or 0
        rows = np.flatnonzero(inverse == g)
        key = (t, version)
        group_of[key] = rows if key not in group_of else np.union1d(group_of[key], rows)
    for (t, version), rows in group_of.items():
        spec = ctx.registry.get(t, version)
        if spec is None:
            reason = (
                "required"
                if not t
                else f"unknown event type {t}" + (f" v{version}" if version else "")
            )
            code = "ingest.required" if not t else "ingest.unknown_event_type"
            fr.problems.add_at(rows, "event_type", code, reason)
            continue
        version_out[rows] = version
        take = pa.array(rows)
        sub = {k: pc.take(v, take) for k, v in fr.cols.items()}
        sub.update({k: pc.take(v, take) for k, v in ids.items()})
        fields = ctx.registry.fields(t, version)
        got = group_properties(sub, spec, fields, rows, fr, ctx.tz)
        if got is None:
            p_list, prof_list = rowwise_properties(sub, spec, fields, rows, fr, ctx)
            pieces.append((rows, pa.array(p_list, pa.string()), pa.array(prof_list, pa.string())))
        else:
            prof = got[1] if got[1] is not None else pa.nulls(rows.size, pa.string())
            pieces.append((rows, C.flat(got[0]), C.flat(prof)))
        if spec.needs_identity:
            # A row whose only identifier was malformed is already reported as such.
            nobody = rows[~has_id[rows] & ~fr.problems.bad[rows]]
            fr.problems.add_at(nobody, None, "ingest.identity_required", "the row names nobody")
    props, profile = _in_row_order(pieces, n)
    owner = _owner_column(fr, types)
    unit = fr.cols.get("unit_code") if ctx.kind == "customers" else None
    good = pa.array(~fr.problems.bad)
    table = pa.table(
        {
            "_row": pa.array(fr.raw.lines),
            "event_id": event_id,
            "event_type": types,
            "schema_version": pa.array(version_out, pa.int16()),
            "occurred_at": occurred,
            "source": C.const(ctx.source, n),
            "properties": props,
            "_profile": profile,
            "_owner": owner,
            "_unit": unit if unit is not None else pa.nulls(n, pa.string()),
            "_gen": pa.array(is_gen),
            **{f"id_{t}": ids.get(t, pa.nulls(n, pa.string())) for t in ctx.id_types},
        },
        schema=events_schema(ctx.id_types),
    )
    return Staged(
        events=table.filter(good),
        orders=orders_schema().empty_table(),
        items=items_schema().empty_table(),
        errors=fr.problems.sorted_errors(),
        total=n + len(fr.raw.errors),
        ignored_columns=fr.ignored,
    )


def _in_row_order(pieces: list[tuple[np.ndarray, Any, Any]], n: int) -> tuple[Any, Any]:
    """Concatenate per-group (rows, properties, profile) columns back into row order;
    rows of no group (rejected event types) are null."""
    import numpy as np
    import pyarrow as pa

    covered = np.zeros(n, dtype=bool)
    for rows, _, _ in pieces:
        covered[rows] = True
    rest = np.flatnonzero(~covered)
    order = np.concatenate([rows for rows, _, _ in pieces] + [rest]).astype(np.int64)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n, dtype=np.int64)
    take = pa.array(position)
    nulls = pa.nulls(rest.size, pa.string())
    props = pa.concat_arrays([p.cast(pa.string()) for _, p, _ in pieces] + [nulls])
    profile = pa.concat_arrays([q.cast(pa.string()) for _, _, q in pieces] + [nulls])
    return props.take(take), profile.take(take)


def _owner_column(fr: Frame, types: Any) -> Any:
    """Owner staff for OneID: the customer's guide, or who added them on WeCom."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = fr.n
    out = np.full(n, None, dtype=object)
    for name, etype in (
        ("owner_wecom_userid", "customer_upserted"),
        ("staff_userid", "wecom_contact_added"),
    ):
        col = fr.cols.get(name)
        if col is not None:
            mask = C.mask_of(pc.equal(types, etype))
            out[mask] = np.asarray(col.to_pylist(), dtype=object)[mask]
    return pa.array(out.tolist(), pa.string())
