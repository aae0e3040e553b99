"""``/docs`` and ``/redoc`` with their assets served from the package ``fastapi-offline``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a coop's controller
with no internet ``/docs`` is blank. ``fastapi-offline`` ships the built assets (Swagger
UI 5, which renders OpenAPI 3.1 as FastAPI writes it); only its static folder is used
here, so the app is still a plain :class:`~fastapi.FastAPI` built by ``create_app``.
Create the app with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not
registered first.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the assets are mounted.
ASSETS_URL = "/static/docs"


def install_offline_docs(app: FastAPI, docs_url: str = "/docs",
                         redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local assets."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
    oauth_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    def base(request: Request) -> str:
        # Behind a proxy under a prefix, the page must ask for its assets there too.
        return str(request.scope.get("root_path") or "")

    @app.get(docs_url, include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = base(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — API",
            oauth2_redirect_url=f"{root}{oauth_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # The validator badge would be an image from swagger.io: off, as offline.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})})

    @app.get(oauth_url, include_in_schema=False)
    def oauth_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = base(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)
