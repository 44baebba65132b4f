"""Staged input: validated rows in one Arrow shape, whatever they came from.

Both paths end here — the item path (HTTP batches, the inbox, JSONL files: one pydantic
validation per item, fine at 10,000 items) and the vectorised file path
(``ingest.files``). :func:`ingest.pipeline.commit` takes a :class:`Staged` to OneID and
the lake.

Columns of ``Staged.events``: ``_row`` (file line or item index), ``event_id``,
``event_type``, ``schema_version``, ``occurred_at`` (UTC), ``source``, ``properties``
(JSON, PII removed), ``_profile`` (JSON for the PII vault, customer_upserted only),
``_owner`` / ``_unit`` (owner staff and org unit for OneID), ``_gen`` (the id was derived
from the row's content) and one ``id_<type>`` column per identifier type (normalised value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from siyu.core.errors import FieldError, SiyuError
from siyu.core.validation import field_errors
from siyu.customers import vault
from siyu.ingest.catalogue import ORDER_TYPES, Envelope
from siyu.ingest.registry import Registry

if TYPE_CHECKING:
    import pyarrow as pa

FUTURE_SLACK = timedelta(days=1)


def events_schema(id_types: list[str]) -> pa.Schema:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("_row", pa.int64()),
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("schema_version", pa.int16()),
            ("occurred_at", ts),
            ("source", pa.string()),
            ("properties", pa.string()),
            ("_profile", pa.string()),
            ("_owner", pa.string()),
            ("_unit", pa.string()),
            ("_gen", pa.bool_()),
        ]
        + [(f"id_{t}", pa.string()) for t in id_types]
    )


def orders_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("_pos", pa.int64()),  # position of the order's event in Staged.events
            ("event_id", pa.string()),
            ("order_id", pa.string()),
            ("kind", pa.string()),
            ("refund_id", pa.string()),
            ("channel", pa.string()),
            ("store_code", pa.string()),
            ("total_fen", pa.int64()),
            ("discount_fen", pa.int64()),
            ("paid_fen", pa.int64()),
            ("refund_fen", pa.int64()),
            ("item_count", pa.int32()),
            ("coupon_codes", pa.list_(pa.string())),
        ]
    )


def items_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("_pos", pa.int64()),
            ("line_no", pa.int32()),
            ("sku", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("qty", pa.int32()),
            ("unit_price_fen", pa.int64()),
            ("amount_fen", pa.int64()),
        ]
    )


@dataclass
class Staged:
    events: pa.Table
    orders: pa.Table
    items: pa.Table
    errors: list[FieldError] = field(default_factory=list)
    total: int = 0
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> set[int]:
        return {e.row for e in self.errors if e.row is not None}


def order_key(kind: str, order_id: str, refund_id: str | None, event_id: str) -> str:
    """What "the same order fact" means: one payment per order, one refund per refund id
    (or per event when the source gives refunds no id of their own)."""
    if kind == "order_paid":
        return f"paid:{order_id}"
    return f"refund:{order_id}:{refund_id or event_id}"


def lake_properties(spec_pii: frozenset[str], data: dict[str, Any]) -> str:
    clean = {k: v for k, v in data.items() if k not in spec_pii and v is not None}
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":"), default=str)


PROFILE_FIELDS = ("name", "nickname", "gender", "birthday", "city")


def profile_of(props: dict[str, Any]) -> str | None:
    """The PII-vault part of a customer_upserted event (``ProfileIn`` shape)."""
    profile = {k: props[k] for k in PROFILE_FIELDS if props.get(k) is not None}
    attrs = dict(props.get("attributes") or {})
    if props.get("level") is not None:
        attrs["level"] = props["level"]
    if attrs:
        profile["attributes"] = attrs
    return json.dumps(profile, ensure_ascii=False, default=str) if profile else None


# ---------------------------------------------------------------- the item path


class _Columns:
    def __init__(self, id_types: list[str]):
        self.id_types = id_types
        self.rows: dict[str, list[Any]] = {n: [] for n in events_schema(id_types).names}
        self.orders: dict[str, list[Any]] = {n: [] for n in orders_schema().names}
        self.items: dict[str, list[Any]] = {n: [] for n in items_schema().names}


def _prefixed(errors: list[FieldError], prefix: str) -> list[FieldError]:
    for err in errors:
        err.field = f"{prefix}.{err.field}" if err.field else prefix
    return errors


class ItemStager:
    """Validates envelopes one by one (HTTP batches, inbox rows, JSONL lines)."""

    def __init__(
        self,
        brand_id: str,
        registry: Registry,
        id_types: list[str],
        now: datetime,
        default_source: str = "api",
    ):
        self.brand_id = brand_id
        self.registry = registry
        self.id_types = id_types
        self.allowed = set(id_types)
        self.now = now
        self.default_source = default_source
        self.cols = _Columns(id_types)
        self.errors: list[FieldError] = []
        self.total = 0
        self._norm: dict[tuple[str, str], str] = {}
        self._keys = vault.keys()

    def _normalise(self, id_type: str, value: str) -> str:
        key = (id_type, value)
        got = self._norm.get(key)
        if got is None:
            got = self._norm[key] = vault.normalise(id_type, value)
        return got

    def _identifiers(
        self, row: int, idents: list[Any], where: str, errors: list[FieldError]
    ) -> dict[str, str]:
        found: dict[str, str] = {}
        for pos, ident in enumerate(idents):
            place = f"{where}.{pos}"
            if ident.type not in self.allowed:
                errors.append(
                    FieldError(
                        "ingest.unknown_identifier_type",
                        f"{place}.type",
                        row,
                        f"unknown identifier type {ident.type!r}",
                    )
                )
                continue
            try:
                norm = self._normalise(ident.type, ident.value)
            except SiyuError as exc:
                errors.append(FieldError(exc.code, f"{place}.value", row, exc.message("en")))
                continue
            if found.get(ident.type, norm) != norm:
                errors.append(
                    FieldError(
                        "ingest.duplicate_identifier_type",
                        f"{place}.type",
                        row,
                        f"two different {ident.type} values",
                    )
                )
                continue
            found[ident.type] = norm
        return found

    def add(self, row: int, raw: Any, *, generated_id: bool = False) -> str | None:
        """Validate one item; returns its event_id when it was staged."""
        self.total += 1
        if not isinstance(raw, dict):
            self.errors.append(FieldError("ingest.not_an_object", None, row, "not a JSON object"))
            return None
        errors: list[FieldError] = []
        try:
            env = Envelope.model_validate(raw)
        except ValidationError as exc:
            self.errors.extend(field_errors(exc, row))
            return None
        spec = self.registry.get(env.event_type, env.schema_version)
        if spec is None:
            self.errors.append(
                FieldError(
                    "ingest.unknown_event_type",
                    "event_type",
                    row,
                    f"unknown event type {env.event_type} v{env.schema_version}",
                )
            )
            return None
        props_model: BaseModel | None = None
        try:
            props_model = spec.model.model_validate(env.properties)
        except ValidationError as exc:
            errors.extend(_prefixed(field_errors(exc, row), "properties"))
        if env.occurred_at > self.now + FUTURE_SLACK:
            errors.append(
                FieldError("ingest.occurred_in_future", "occurred_at", row, "more than a day ahead")
            )
        ids = self._identifiers(row, env.identifiers, "identifiers", errors)
        props = props_model.model_dump(mode="json") if props_model is not None else {}
        # WeCom events name the customer in their properties: no need to repeat them.
        for id_type in ("external_userid", "unionid"):
            if props.get(id_type) and id_type in self.allowed and id_type not in ids:
                try:
                    ids[id_type] = self._normalise(id_type, props[id_type])
                except SiyuError as exc:
                    errors.append(
                        FieldError(exc.code, f"properties.{id_type}", row, exc.message("en"))
                    )
        for name in spec.identity_lists:
            if props_model is None:
                break
            found = self._identifiers(row, getattr(props_model, name), f"properties.{name}", [])
            props[name] = sorted(
                vault.identity_key(self.brand_id, t, v, self._keys) for t, v in found.items()
            )
            if not found:
                errors.append(
                    FieldError(
                        "ingest.identity_required",
                        f"properties.{name}",
                        row,
                        "no usable identifier",
                    )
                )
        if spec.needs_identity and not ids and not errors:
            errors.append(
                FieldError("ingest.identity_required", "identifiers", row, "the event names nobody")
            )
        if errors:
            self.errors.extend(errors)
            return None
        self._stage(row, env, spec.pii, props, ids, generated_id)
        return env.event_id

    def _stage(
        self,
        row: int,
        env: Envelope,
        pii: frozenset[str],
        props: dict[str, Any],
        ids: dict[str, str],
        generated_id: bool,
    ) -> None:
        c = self.cols.rows
        c["_row"].append(row)
        c["event_id"].append(env.event_id)
        c["event_type"].append(env.event_type)
        c["schema_version"].append(env.schema_version)
        c["occurred_at"].append(env.occurred_at)
        c["source"].append(env.source or self.default_source)
        c["properties"].append(lake_properties(pii, props))
        c["_gen"].append(generated_id)
        is_customer = env.event_type == "customer_upserted"
        c["_profile"].append(profile_of(props) if is_customer else None)
        owner = props.get("owner_wecom_userid") if is_customer else None
        if env.event_type == "wecom_contact_added":
            owner = props.get("staff_userid")
        c["_owner"].append(owner)
        c["_unit"].append(props.get("unit_code") if is_customer else None)
        for t in self.id_types:
            c[f"id_{t}"].append(ids.get(t))
        if env.event_type in ORDER_TYPES:
            self._stage_order(env, props)

    def _stage_order(self, env: Envelope, props: dict[str, Any]) -> None:
        o = self.cols.orders
        paid = env.event_type == "order_paid"
        items = props.get("items") or []
        pos = len(self.cols.rows["_row"]) - 1
        o["_pos"].append(pos)
        o["event_id"].append(env.event_id)
        o["order_id"].append(props["order_id"])
        o["kind"].append("paid" if paid else "refunded")
        o["refund_id"].append(None if paid else props.get("refund_id"))
        o["channel"].append(props["channel"])
        o["store_code"].append(props.get("store_code"))
        o["total_fen"].append(props.get("total_fen") if paid else None)
        o["discount_fen"].append(props.get("discount_fen") if paid else None)
        o["paid_fen"].append(props.get("paid_fen") if paid else None)
        o["refund_fen"].append(None if paid else props.get("refund_fen"))
        o["item_count"].append(sum(int(i.get("qty", 1)) for i in items))
        o["coupon_codes"].append(props.get("coupon_codes") or [])
        it = self.cols.items
        for line_no, item in enumerate(items, start=1):
            it["_pos"].append(pos)
            it["line_no"].append(line_no)
            for name in ("sku", "name", "category", "qty", "unit_price_fen", "amount_fen"):
                it[name].append(item.get(name))

    def staged(self) -> Staged:
        import pyarrow as pa

        return Staged(
            events=pa.table(self.cols.rows, schema=events_schema(self.id_types)),
            orders=pa.table(self.cols.orders, schema=orders_schema()),
            items=pa.table(self.cols.items, schema=items_schema()),
            errors=self.errors,
            total=self.total,
        )
