"""Mounts the API routers under ``/api/v1`` and installs the problem handlers."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import text

from siyu import __version__
from siyu.api import (
    channels,
    content,
    content_koc,
    contracts,
    customers,
    ingest,
    metrics,
    org,
    sop,
    tags,
    wecom,
)
from siyu.api.deps import Db
from siyu.api.problems import install_handlers

PREFIX = "/api/v1"


class Health(BaseModel):
    status: str
    version: str
    database: str


health_router = APIRouter(tags=["meta"])


@health_router.get("/health", response_model=Health)
def health(db: Db) -> Health:
    db.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__, database=db.get_bind().dialect.name)


def install(app: FastAPI) -> None:
    install_handlers(app)
    app.include_router(health_router, prefix=PREFIX)
    app.include_router(org.router, prefix=PREFIX)
    app.include_router(customers.router, prefix=PREFIX)
    app.include_router(ingest.router, prefix=PREFIX)
    app.include_router(tags.router, prefix=PREFIX)
    app.include_router(sop.router, prefix=PREFIX)
    app.include_router(wecom.router, prefix=PREFIX)
    app.include_router(wecom.callback_router)
    app.include_router(channels.router, prefix=PREFIX)
    app.include_router(content_koc.router, prefix=PREFIX)
    app.include_router(content.router, prefix=PREFIX)
    app.include_router(content.public_router)
    app.include_router(contracts.router, prefix=PREFIX)
    app.include_router(metrics.router, prefix=PREFIX)
