"""The analytics engine adapter: one interface, declared capabilities, Ibis tables out.

Tag rules, segments and KPIs are Ibis expressions over the lake tables; an :class:`Engine`
turns a lake table into an Ibis table and runs expressions, so the same expression runs
embedded on DuckDB today and on a cluster engine later. Code that needs a feature asks the
engine's capability flags instead of testing its name (the SQLMesh ``EngineAdapter`` shape).

Only DuckDB is implemented. A Spark or ClickHouse engine is a subclass registered in
:data:`ENGINES`: Spark would read the Delta tables natively (``delta-spark``,
``SUPPORTS_DELTA_NATIVE = True``) through ``ibis.pyspark``; ClickHouse would read them with its
``deltaLake`` table function or from a replicated copy (``ibis.clickhouse``). Nothing here
pretends to support them before that code and its tests exist.

    with connect() as engine:
        events = engine.table("events", brand.id)
        daily = events.group_by(events.dt).aggregate(n=events.count())
        result = engine.execute(daily)          # pyarrow.Table
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, ClassVar

from siyu.analytics import lake


class Engine(ABC):
    """A query engine over the fact lake. Tables are always one brand's rows."""

    name: ClassVar[str]
    # Runs inside this process (no server to reach).
    EMBEDDED: ClassVar[bool] = False
    # Reads the Delta log itself (otherwise it is handed Arrow datasets by deltalake).
    SUPPORTS_DELTA_NATIVE: ClassVar[bool] = False
    # Accepts pyarrow datasets as tables, scanning them lazily with pushdown.
    SUPPORTS_ARROW_DATASETS: ClassVar[bool] = False
    SUPPORTS_WINDOW_FUNCTIONS: ClassVar[bool] = False
    SUPPORTS_APPROX_DISTINCT: ClassVar[bool] = False
    # Python scalar UDFs inside expressions.
    SUPPORTS_PYTHON_UDF: ClassVar[bool] = False

    @abstractmethod
    def table(self, name: str, brand_id: str) -> Any:
        """The lake table ``name`` restricted to ``brand_id``, as an ``ibis.Table``."""

    @abstractmethod
    def execute(self, expr: Any) -> Any:
        """Run an Ibis expression: a ``pyarrow.Table`` for tables, a ``pyarrow.Scalar`` for
        scalar expressions (``t.count()``)."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing here
        """Release connections."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DuckDBEngine(Engine):
    """DuckDB embedded. Lake tables are registered as pyarrow datasets from ``deltalake``
    (DuckDB's own delta extension would need a download), so scans stay lazy and DuckDB
    pushes projections and filters into the Parquet reads."""

    name = "duckdb"
    EMBEDDED = True
    SUPPORTS_ARROW_DATASETS = True
    SUPPORTS_WINDOW_FUNCTIONS = True
    SUPPORTS_APPROX_DISTINCT = True
    SUPPORTS_PYTHON_UDF = True

    def __init__(self, threads: int | None = None) -> None:
        import ibis

        self._con = ibis.duckdb.connect(threads=threads) if threads else ibis.duckdb.connect()
        self._registered: dict[tuple[str, str], Any] = {}

    def table(self, name: str, brand_id: str) -> Any:
        key = (name, brand_id)
        if key not in self._registered:
            view = f"{name}__{len(self._registered)}"
            # The raw DuckDB connection: Ibis' own create_table/sql entry points do not
            # accept datasets in this version.
            self._con.con.register(view, lake.dataset(name, brand_id))
            self._registered[key] = self._con.table(view)
        return self._registered[key]

    def execute(self, expr: Any) -> Any:
        return self._con.to_pyarrow(expr)

    def close(self) -> None:
        self._con.disconnect()


ENGINES: dict[str, type[Engine]] = {"duckdb": DuckDBEngine}


def connect(name: str = "duckdb", **options: Any) -> Engine:
    try:
        cls = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown analytics engine {name!r}; known: {sorted(ENGINES)}") from None
    return cls(**options)
