"""Where a request comes from, and whether a browser sent it from our own pages.

Commands come from tokens, not from places: the address only matters for the
tokenless island command from the controller's own host, which needs
``[api] local_commands = true`` (no proxy on this host can then reach the API
unannounced) or the local secret (:mod:`controller.governance.local`). So the
rules here are strict in one direction only:

* a request that carries any proxy header (``Forwarded``, ``X-Forwarded-*``,
  ``X-Original-*``, ``X-Real-IP``, ``Via`` and the CDN variants) is *never* local,
  whoever sent it;
* a request whose peer is a trusted proxy (``[api] trusted_proxies``) is never
  local either, and only then are its forwarding headers believed for the client's
  address (the rightmost one that is not itself a trusted proxy);
* only an IP address is loopback: no host name is special.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_EXACT = frozenset({"forwarded", "x-real-ip", "via", "true-client-ip", "x-client-ip",
                    "client-ip", "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip"})
_PREFIXES = ("x-forwarded-", "x-original-", "x-forwarded")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def proxy_headers(request: Request) -> list[str]:
    """The names of the proxy headers a request carries (lower case)."""
    return sorted(h for h in request.headers if h in _EXACT or h.startswith(_PREFIXES))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_chain(request: Request) -> list[str]:
    """Client addresses the proxies appended, oldest first (X-Forwarded-For, else Forwarded)."""
    xff = request.headers.get("x-forwarded-for")
    if xff:
        return [a.strip() for a in xff.split(",")]
    chain = []
    for element in request.headers.get("forwarded", "").split(","):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.lower() == "for":
                chain.append(value)
    return chain


@dataclass(frozen=True, slots=True)
class Client:
    """A request's origin as the API believes it."""

    address: str
    #: Through a proxy (any proxy header, or a trusted proxy as the peer).
    proxied: bool
    #: A loopback peer with no proxy in between.
    loopback: bool


def client_of(request: Request, trusted: tuple[Network, ...] = ()) -> Client:
    """The client's address (behind a trusted proxy, the one it forwarded) and whether
    the request is local; see the module's rules."""
    peer = request.client.host if request.client else ""
    peer_ip = _ip(peer)
    headers = proxy_headers(request)
    trusted_peer = peer_ip is not None and any(peer_ip in n for n in trusted)
    address = peer
    if trusted_peer:
        for hop in reversed(_forwarded_chain(request)):
            ip = _ip(hop)
            if ip is None:
                break
            address = str(ip)
            if not any(ip in n for n in trusted):
                break
    proxied = bool(headers) or trusted_peer
    loopback = not proxied and peer_ip is not None and peer_ip.is_loopback
    return Client(address, proxied, loopback)


def _own_origin(request: Request, trusted_peer: bool) -> str:
    scheme, host = request.url.scheme, request.headers.get("host", "")
    if trusted_peer:  # the proxy says which address the browser used
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return f"{scheme}://{host.removesuffix(default)}".lower()


def check_origin(request: Request, client: Client, trusted: tuple[Network, ...],
                 cookie: bool) -> None:
    """403 for a state-changing request that a browser sent from another site.

    Checked when the request rides on the session cookie (the browser adds it by
    itself, so another site's form could use it) or says where it comes from: its
    ``Origin`` (or, lacking one, its ``Referer``) must be this API's own origin.
    A cookie request with neither is refused too: every browser sends ``Origin``
    on a POST, so only a forged or a very old client lacks it.
    """
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("referer"):
        parts = urlsplit(request.headers["referer"])
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is None:
        if cookie:
            raise HTTPException(403, "Origin: a state-changing request with the login "
                                     "cookie must say its Origin (this API's own)")
        return
    peer_ip = _ip(request.client.host if request.client else "")
    trusted_peer = peer_ip is not None and any(peer_ip in n for n in trusted)
    own = _own_origin(request, trusted_peer)
    if origin.lower().rstrip("/") != own:
        raise HTTPException(403, f"Origin: {origin!r} is not this API's own origin "
                                 f"({own}); commands come only from its own pages")
