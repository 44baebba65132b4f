"""The function registry: what each aggregate takes and gives.

Every function reads one event type's occurrences per customer, optionally filtered by
property conditions and a time window; ``property`` is the ``event.property`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    name: str
    # Does the function take ``event.property`` (True), only ``event`` (False)?
    takes_property: bool
    # Value types of the property it accepts (when it takes one).
    accepts: tuple[str, ...] = ()
    # Result type: number, bool, or "property" (the property's own type).
    result: str = "number"
    # With no matching occurrence: 0 / false (False) or missing (True: comparisons are false).
    missing_is_null: bool = False
    # days_since takes "first" or "last" before the event.
    takes_which: bool = False
    doc: str = ""


_SCALARS = ("number", "string", "bool", "date", "datetime")

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("count", False, doc="number of occurrences (0 if none)"),
        Function(
            "count_distinct",
            True,
            ("number", "string", "bool", "date"),
            doc="number of distinct non-missing values of the property (0 if none)",
        ),
        Function("sum", True, ("number",), doc="sum of a numeric property (0 if none)"),
        Function("avg", True, ("number",), missing_is_null=True, doc="mean of a numeric property"),
        Function(
            "min",
            True,
            ("number", "date", "datetime", "string"),
            "property",
            True,
            doc="smallest value",
        ),
        Function(
            "max",
            True,
            ("number", "date", "datetime", "string"),
            "property",
            True,
            doc="largest value",
        ),
        Function(
            "first_value",
            True,
            _SCALARS,
            "property",
            True,
            doc="the property of the earliest occurrence",
        ),
        Function(
            "last_value",
            True,
            _SCALARS,
            "property",
            True,
            doc="the property of the latest occurrence",
        ),
        Function("exists", False, result="bool", doc="at least one occurrence"),
        Function(
            "days_since",
            False,
            missing_is_null=True,
            takes_which=True,
            doc="whole brand-local days from the last (or first) occurrence to the as-of day",
        ),
    )
}

WINDOWS = {
    "last": "last N days (d) or weeks (w), the as-of day included",
    "this_month": "this calendar month up to the as-of day",
    "last_month": "the previous calendar month",
    "since": "from a day (inclusive) to the as-of day",
    "between": "from a day to a day, both inclusive",
}
