"""The committed OpenAPI schema is the API's contract: it must match the code."""

from __future__ import annotations

import json
from pathlib import Path

from siyu.server import create_app

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_committed_openapi_schema_is_current() -> None:
    current = create_app().openapi()
    committed = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(current)), (
        "docs/openapi.json is stale: run `make openapi` and commit it"
    )


def test_console_routes_stay_out_of_the_api_schema() -> None:
    paths = create_app().openapi()["paths"]
    assert all(p.startswith("/api/v1/") for p in paths)
