"""The standard pack and every function case on PySpark (local mode) give exactly the members
DuckDB gives, from the same facts (Parquet files)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from siyu.tags import lang
from tests.test_tag_functions import AS_OF, CASES, CATALOGUE, TZ, arrow_tables

pytestmark = [
    pytest.mark.spark,
    # PySpark 4.0 and Ibis 12 still use pandas options that pandas 3 deprecates.
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    pytest.mark.filterwarnings("ignore:The 'future.infer_string' option is deprecated"),
]


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("facts")
    out = {}
    for name, table in zip(("events", "orders", "customers"), arrow_tables(), strict=True):
        path = root / f"{name}.parquet"
        pq.write_table(table, path)
        out[name] = str(path)
    return out


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    warehouse: Path = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("siyu-tags-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .getOrCreate()
    )
    yield session
    session.stop()


def _run(con: Any, facts: lang.Facts, rules: dict[str, str]) -> dict[str, list[str]]:
    expr = lang.compile_rules(rules, CATALOGUE, facts, AS_OF, TZ)
    return lang.members(con.to_pyarrow(expr))


def test_pack_and_cases_identical_on_spark_and_duckdb(spark: Any, parquet: dict[str, str]) -> None:
    import ibis

    rules = dict(lang.pack_rules())
    rules.update({f"case_{i}": rule for i, (rule, _) in enumerate(CASES)})

    duck = ibis.duckdb.connect()
    on_duck = _run(duck, lang.facts_from_parquet(duck, **parquet), rules)
    con = ibis.pyspark.connect(spark)
    on_spark = _run(con, lang.facts_from_parquet(con, **parquet), rules)

    assert on_spark == on_duck
    for i, (_, expected) in enumerate(CASES):
        assert set(on_spark[f"case_{i}"]) == expected
    assert sum(len(v) for v in on_spark.values()) > 0
