"""The local secret: how the CLI on the controller's host commands without a token.

The running controller writes a fresh random secret to ``local.secret`` beside
the ledger, readable only by its own user (0600), at every start. A command
line program run by that user (or root) reads it and sends it as a bearer
token; the API takes it as the ``local`` principal. Being on the same host is
not enough: a proxy or a tunnel on the host cannot read the file, so it cannot
pass for the CLI.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from controller.files import private_dir, write_private

#: The file's name, beside the ledger.
LOCAL_SECRET_FILE = "local.secret"


def local_secret_path(ledger: Path) -> Path:
    """Where the local secret of the controller on ``ledger`` lives."""
    return Path(ledger).parent / LOCAL_SECRET_FILE


def new_local_secret(ledger: Path) -> str:
    """Write a fresh secret (0600, replacing any old one) and return it."""
    secret = "local-" + secrets.token_urlsafe(32)
    path = local_secret_path(ledger)
    private_dir(path.parent)
    write_private(path, secret + "\n")
    return secret


def read_local_secret(path: Path) -> str | None:
    """The local secret in ``path`` (:func:`local_secret_path`), or None (no controller
    running, or a file this user may not read)."""
    try:
        return Path(path).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def forget_local_secret(ledger: Path, secret: str) -> None:
    """Remove the local secret file if it still holds ``secret`` (this controller's own)."""
    path = local_secret_path(ledger)
    if read_local_secret(path) == secret:
        path.unlink(missing_ok=True)


def is_local_secret(sent: str, expected: str | None) -> bool:
    """Whether ``sent`` is the local secret (in constant time)."""
    return expected is not None and hmac.compare_digest(sent.encode(), expected.encode())
