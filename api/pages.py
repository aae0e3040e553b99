"""The web pages: plain HTML files under ``api/static`` with their script inline, and the
shared stylesheet and helpers under ``api/static/assets``; no build step.

Every page is public as a page: what it shows comes from the API routes it calls,
each under its own policy, with the login cookie. A page whose data the visitor
may not read says so and links to ``/login``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

#: Route → the page's file in ``api/static``.
PAGES = {
    "/": "index.html",
    "/island": "island.html",
    "/me": "me.html",
    "/coop": "coop.html",
    "/installer": "installer.html",
}
#: The shared files a page may load, with their media types (nothing else is served).
ASSETS = {
    "commonwatt.css": "text/css; charset=utf-8",
    "commonwatt.js": "text/javascript; charset=utf-8",
    "clock.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _read(*parts: str) -> str:
    return resources.files("api").joinpath("static", *parts).read_text(encoding="utf-8")


def pages_router() -> APIRouter:
    """One ``GET`` route a page, and ``/assets/{name}`` for the shared files."""
    router = APIRouter(include_in_schema=False)

    def page_route(file: str):  # noqa: ANN202 - a FastAPI endpoint
        def page() -> HTMLResponse:
            # no-store: a page served to a logged-in browser is not kept by a shared cache
            return HTMLResponse(_read(file), headers={"Cache-Control": "no-store"})
        page.__name__ = f"page_{file.removesuffix('.html')}"
        return page

    for path, file in PAGES.items():
        router.add_api_route(path, page_route(file), methods=["GET"],
                             response_class=HTMLResponse)

    @router.get("/assets/{name}")
    def asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            raise HTTPException(404, f"name {name!r}: no such asset")
        return Response(_read("assets", name), media_type=media,
                        headers={"Cache-Control": "max-age=300"})

    return router
