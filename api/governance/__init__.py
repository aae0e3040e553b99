"""Governance routes: the rules themselves live in :mod:`controller.governance`.

* :mod:`~api.governance.router`: ``/api/v1/audit``;
* :mod:`~api.governance.overrides`: ``/api/v1/overrides``.
"""
