"""Authentication: tokens that expire, the roles of the API, and web login.

* :mod:`~api.auth.tokens`: the token store (hashes only) beside the ledger;
* :mod:`~api.auth.policy`: the roles, every route's policy, pseudonyms;
* :mod:`~api.auth.deps`: the FastAPI dependency that applies the policy;
* :mod:`~api.auth.login`: ``/login`` (pasted token or one-time link), ``/logout``.
"""

from api.auth.deps import Authority, viewer_of
from api.auth.policy import ROUTE_POLICY, Principal, Viewer
from api.auth.tokens import Token, TokenError, TokenStore, parse_duration

__all__ = ["ROUTE_POLICY", "Authority", "Principal", "Token", "TokenError", "TokenStore",
           "Viewer", "parse_duration", "viewer_of"]
