"""The ASGI application: the API under ``/api/v1`` and the console at ``/``.

uvicorn siyu.server:create_app --factory
"""

from __future__ import annotations

from fastapi import FastAPI

from siyu import __version__


def create_app() -> FastAPI:
    from siyu.api.app import install as install_api
    from siyu.web.app import install as install_web

    app = FastAPI(
        title="Siyu",
        version=__version__,
        description="Siyu private-domain growth engine API",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    install_api(app)
    install_web(app)
    return app
