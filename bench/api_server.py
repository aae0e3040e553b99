"""A uvicorn server for the API benchmark, in its own process.

``python -m bench.api_server bare|coop|live PORT [LEDGER [STATS]]`` serves a bare
FastAPI app with one endpoint (``GET /bare``, a small JSON document from a plain
``def``, as the API's routes are), the Commonwatt API over LEDGER alone
(``coop``), or the API of a running controller cycling over LEDGER's members
(``live``, :mod:`bench.live_fleet`; its cycle figures go to STATS at the end),
with the same uvicorn settings, until it is terminated.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI


def bare_app() -> FastAPI:
    """The yardstick: FastAPI with nothing behind its one endpoint."""
    app = FastAPI()

    @app.get("/bare")
    def bare() -> dict[str, object]:
        return {"ok": True, "value": 1.0}

    return app


def serve(kind: str, port: int, ledger: Path | None, stats: Path | None = None) -> None:
    """Serve ``kind`` on 127.0.0.1:``port`` (one worker, no access log)."""
    if kind == "live":
        from bench.live_fleet import serve as serve_live

        assert ledger is not None and stats is not None, "live needs a ledger and a stats file"
        logging.basicConfig(level=logging.WARNING)
        serve_live(ledger, port, stats)
        return
    if kind == "bare":
        app = bare_app()
    else:
        from api.app import create_app
        from controller.ledger import LedgerReader

        assert ledger is not None, "coop needs a ledger"
        app = create_app(LedgerReader(ledger))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None,
          Path(sys.argv[4]) if len(sys.argv) > 4 else None)
