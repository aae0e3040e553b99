"""Apps and tokens for tests: a coop whose members are all public, and tokens on demand."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from api.app import create_app
from api.auth import Authority
from controller.governance import TokenStore
from controller.governance.tokens import Role
from controller.ledger import LedgerReader


def public_authority(reader: LedgerReader, config: Any = None) -> Authority:
    """The authority beside the reader's ledger, with every member public."""
    auth = Authority.beside(reader.path, reader, config)
    auth.public_members = frozenset(m for m, _ in reader.members())
    return auth


def public_app(reader: LedgerReader, live: Any = None, config: Any = None) -> FastAPI:
    """``create_app`` for tests about figures, not access: every member of the ledger is
    public (``public = true``), so no token is needed to read them."""
    return create_app(reader, live, config, public_authority(reader, config))


def bearer(reader: LedgerReader, role: Role, member: str | None = None,
           label: str = "test", lifetime_s: float = 3600.0) -> dict[str, str]:
    """Headers with a fresh token of ``role`` from the store beside the reader's ledger."""
    _, secret = TokenStore.beside(reader.path).create(role, member, label,
                                                     time.time() + lifetime_s)
    return {"Authorization": f"Bearer {secret}"}
