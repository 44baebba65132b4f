"""What rules may name: event types with their property kinds, and profile columns.

The tags domain does not read the ingest registry itself: the caller hands a
:class:`EventCatalogue` in (``EventCatalogue.from_registry`` adapts anything shaped like
``siyu.ingest.registry.Registry``; tests build one from literal data).

Kinds are those of ingest's field descriptors: ``str int float bool date datetime fen
str_list complex``. Value types in rules: number (int, float, fen), string, bool, date,
datetime, list (str_list). ``complex`` properties cannot be used in rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("str", "int", "float", "bool", "date", "datetime", "fen", "str_list", "complex")
VALUE_TYPE = {
    "str": "string",
    "int": "number",
    "float": "number",
    "fen": "number",
    "bool": "bool",
    "date": "date",
    "datetime": "datetime",
    "str_list": "list",
}
# Envelope fields every event has, usable like properties.
ENVELOPE: dict[str, str] = {"source": "str"}
# Order events read the orders table (typed columns) when every property they use is one of
# these; anything else reads the event's JSON properties.
ORDER_KIND = {"order_paid": "paid", "order_refunded": "refunded"}
ORDER_COLUMNS: dict[str, dict[str, str]] = {
    "order_paid": {
        "order_id": "str",
        "channel": "str",
        "store_code": "str",
        "paid_fen": "fen",
        "total_fen": "fen",
        "discount_fen": "fen",
        "coupon_codes": "str_list",
        "source": "str",
    },
    "order_refunded": {
        "order_id": "str",
        "refund_id": "str",
        "channel": "str",
        "store_code": "str",
        "refund_fen": "fen",
        "source": "str",
    },
}


@dataclass(frozen=True)
class Prop:
    name: str
    kind: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EventCatalogue:
    """Event types → their properties, and the customers' profile columns."""

    events: Mapping[str, Mapping[str, Prop]]
    profile: Mapping[str, Prop] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        events: Mapping[str, Mapping[str, str | tuple[str, Iterable[str]]]],
        profile: Mapping[str, str] | None = None,
    ) -> EventCatalogue:
        """From literal data: ``{"order_paid": {"paid_fen": "fen", "channel": ("str",
        ["pos", "mini_mall"])}}`` (a kind, or a kind with its allowed values)."""
        out: dict[str, dict[str, Prop]] = {}
        for event, props in events.items():
            out[event] = {}
            for name, spec in props.items():
                if isinstance(spec, tuple):
                    kind, choices = spec[0], tuple(spec[1])
                    out[event][name] = Prop(name, kind, choices)
                else:
                    out[event][name] = Prop(name, spec)
        prof = {n: Prop(n, k) for n, k in (profile or {}).items()}
        return cls(out, prof)

    @classmethod
    def from_registry(
        cls, registry: Any, profile: Mapping[str, str] | None = None
    ) -> EventCatalogue:
        """Adapt an ingest registry (``types()``, ``latest(t)``, ``fields(t, v)`` giving
        descriptors with ``name``, ``kind``, ``choices``). Every version's fields are
        included; the latest version's description of a field wins."""
        out: dict[str, dict[str, Prop]] = {}
        for event in sorted(registry.types()):
            latest = registry.latest(event)
            versions = (
                sorted(v for t, v in registry.specs if t == event)
                if hasattr(registry, "specs")
                else [latest]
            )
            props: dict[str, Prop] = {}
            for version in versions:
                for f in registry.fields(event, version):
                    choices = tuple(f.choices) if getattr(f, "choices", None) else None
                    props[f.name] = Prop(f.name, f.kind, choices)
            out[event] = props
        prof = {n: Prop(n, k) for n, k in (profile or {}).items()}
        return cls(out, prof)

    def prop(self, event: str, name: str) -> Prop | None:
        """A property (or envelope field) of an event type."""
        props = self.events.get(event, {})
        if name in props:
            return props[name]
        if name in ENVELOPE:
            return Prop(name, ENVELOPE[name])
        return None

    def names(self, event: str) -> list[str]:
        return sorted(set(self.events.get(event, {})) | set(ENVELOPE))
