"""Authentication routes: the roles of the API and web login.

The token store itself is governance (:mod:`controller.governance.tokens`).

* :mod:`~api.auth.policy`: the roles, every route's policy, pseudonyms;
* :mod:`~api.auth.deps`: the FastAPI dependency that applies the policy;
* :mod:`~api.auth.login`: ``/login`` (pasted token or one-time link), ``/logout``.
"""

from api.auth.deps import Authority, viewer_of
from api.auth.policy import ROUTE_POLICY, Principal, Viewer

__all__ = ["ROUTE_POLICY", "Authority", "Principal", "Viewer", "viewer_of"]
