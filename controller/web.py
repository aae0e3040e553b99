"""The web surface a running controller serves (the API and the pages), found by name.

Data flows one way: the API reads the controller, never the reverse. So the runtime
does not import ``api/``: it asks the installed package for its ``commonwatt.surface``
entry point (``pyproject.toml``), which builds the surface over the runtime's ledger
and live view. A household agent's install, without the web stack, never loads it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from controller.config import CoopConfig
    from controller.ledger import LedgerReader

GROUP = "commonwatt.surface"


class WebSurface(Protocol):
    """What the runtime needs of its web surface."""

    #: The ASGI application uvicorn serves.
    app: Any

    def cycle_done(self, report: Any | None, grid: dict[str, Any] | None = None) -> None:
        """One cycle finished (``report``) or failed (``None``); must never raise."""

    def close(self) -> None:
        """End open streams before the server shuts down."""


class SurfaceMissingError(RuntimeError):
    """No web surface is installed."""


def load_surface(reader: LedgerReader, live: Any, config: CoopConfig,
                 name: str = "api") -> WebSurface:
    """The surface registered under ``name`` in :data:`GROUP`, built over ``reader`` and
    the runtime ``live``."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise SurfaceMissingError(
            f"no web surface {name!r} is installed (entry point group {GROUP}): install "
            f"the coop's controller with 'pip install commonwatt[coop]' (bash bootstrap.sh)")
    return found[0].load()(reader, live, config)
