"""Web login: paste a token at ``/login``, or follow a one-time link ``/login?once=CODE``.

Either way the browser gets a *session* secret in an HttpOnly, SameSite=Strict
cookie, never the token itself, living no longer than the token; ``POST
/logout`` ends it. A one-time code is spent by its first use, so the copy
that the access log or the browser history may keep opens nothing; the
uvicorn access log is also given a filter that blanks the code
(:func:`redact_access_log`), so no secret is written to a log at all.
"""

from __future__ import annotations

import html
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth.deps import COOKIE, Authority, viewer_of
from api.contract import answers
from api.route_models import WhoAmI
from controller.governance.tokens import Token, TokenError

_ONCE = re.compile(r"(once=)[^&\s]+")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Log in · Commonwatt</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/commonwatt.css">
<style>main{{max-width:30rem}}
.card form{{margin:.6rem 0 0}}
input,button{{font:inherit;font-size:1rem;padding:.6rem .7rem;width:100%;box-sizing:border-box;
margin:.3rem 0;border-radius:8px}}
input{{border:1px solid #c8d1cc;background:#fff}}
button{{border:0;background:var(--leaf);color:#fff;font-weight:600;cursor:pointer}}
button.quiet{{background:transparent;color:var(--ink);border:1px solid #c8d1cc;font-weight:400}}
.msg{{color:var(--bad);font-weight:600}} .msg:empty{{display:none}}
.who{{color:var(--muted)}}</style></head>
<body><header><h1>Commonwatt — log in</h1>
<p>Members see their own household; installers and coordinators their tools.</p>
<nav class="site"><a href="/">Live</a><a href="/coop">Coop</a><a href="/me">My household</a>
<a href="/island">Island</a><a href="/installer">Installer</a>
<a href="/login" class="login" aria-current="page">Log in</a></nav></header>
<main><div class="card">
<p>Paste the token the coop gave you (from <code>commonwatt token create</code>), or
follow the login link it came with. Without one you see what the coop shows everyone.</p>
<p class="msg" role="alert">{message}</p>
<form method="post" action="/login">
<label for="token">Token</label>
<input type="password" id="token" name="token" autocomplete="off" placeholder="token" required>
<button type="submit">Log in</button></form>
</div>
<div class="card" style="margin-top:.75rem"><p class="who">{who}</p>
<form method="post" action="/logout"><button type="submit" class="quiet">Log out</button></form>
</div></main></body></html>
"""


class _RedactOnce(logging.Filter):
    """Blanks ``once=`` codes in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_ONCE.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_access_log() -> None:
    """Install the filter on ``uvicorn.access`` (once per process)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactOnce) for f in logger.filters):
        logger.addFilter(_RedactOnce())


#: Where a login lands: a member on its household page, the device roles on theirs.
HOME = {"member": "/me", "installer": "/installer", "coordinator": "/installer"}


def _set_session(response: Response, request: Request, auth: Authority, token: Token) -> None:
    now = time.time()
    session = auth.store.add_secret(token.id, "session", token.expires_ts - now, now)
    response.set_cookie(COOKIE, session, max_age=max(int(token.expires_ts - now), 1),
                        httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


def _page(message: str, request: Request, status: int = 200) -> HTMLResponse:
    p = viewer_of(request).principal
    who = ("Not logged in: you see the public view." if p.token_id is None else
           f"Logged in as {html.escape(p.label)} ({html.escape(p.role)}"
           f"{', member ' + html.escape(p.member) if p.member else ''}).")
    return HTMLResponse(_PAGE.format(message=html.escape(message), who=who), status,
                        # same-origin, not no-referrer: a once code in the address never
                        # leaves the site, and the login form's POST still says its
                        # Origin (under no-referrer Chromium sends "Origin: null").
                        headers={"Cache-Control": "no-store",
                                 "Referrer-Policy": "same-origin"})


def _locked(auth: Authority, request: Request, secret: str) -> Response | None:
    """The login page with a 429 when this client is locked out, else None."""
    try:
        auth.check_attempt(request.state.client, secret)
    except HTTPException as exc:
        page = _page(f"Not logged in: {exc.detail}.", request, 429)
        page.headers.update(exc.headers or {})
        return page
    return None


def login_router(auth: Authority) -> APIRouter:
    """``/login``, ``/logout`` and ``/api/v1/whoami``."""
    router = APIRouter(tags=["login"])
    redact_access_log()

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, once: str | None = None) -> Response:
        """The login form; with ``once``, spend the one-time code and log in."""
        if once is None:
            return _page("", request)
        client = request.state.client
        if (locked := _locked(auth, request, once)) is not None:
            return locked
        try:
            token = auth.store.consume_once(once)
        except TokenError as exc:
            auth.login_failed(client, once, "once", str(exc))
            return _page(f"This link cannot be used: {exc}.", request, 401)
        # 303 to the role's page: the code leaves the address bar and the history entry.
        response = RedirectResponse(HOME.get(token.role, "/"), 303,
                                    headers={"Referrer-Policy": "no-referrer"})
        _set_session(response, request, auth, token)
        return response

    @router.post("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        """Log in with a pasted token (form field ``token``)."""
        # Parsed by hand: a one-field form is not worth a multipart dependency.
        body = parse_qs((await request.body()).decode(errors="replace"))
        secret = (body.get("token") or [""])[0].strip()
        client = request.state.client
        if (locked := _locked(auth, request, secret)) is not None:
            return locked
        try:
            token = auth.store.resolve(secret, ("bearer",))
        except TokenError as exc:
            auth.login_failed(client, secret, "form", str(exc))
            return _page(f"Not logged in: {exc}.", request, 401)
        response = RedirectResponse(HOME.get(token.role, "/"), 303)
        _set_session(response, request, auth, token)
        return response

    @router.post("/logout", status_code=303, response_class=RedirectResponse,
                 responses={303: {"description": "to /login, the session ended and its "
                                  "cookie deleted"}})
    def logout(request: Request) -> Response:
        """End this browser's session."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            auth.store.end_session(cookie)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/api/v1/whoami", responses=answers(WhoAmI))
    def whoami(request: Request) -> dict[str, Any]:
        """The caller's role, member and token label (``public`` without a token)."""
        p = viewer_of(request).principal
        if p.token_id is None:
            return {"role": "public", "member": None, "label": None, "token_id": None,
                    "expires_ts": None}
        token = auth.store.get(p.token_id)
        if token is None:  # revoked and deleted between the two reads
            raise HTTPException(401, "token refused: unknown token")
        return {"role": p.role, "member": p.member, "label": p.label, "token_id": p.token_id,
                "expires_ts": token.expires_ts}

    return router
