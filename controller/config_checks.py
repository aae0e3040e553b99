"""Checks of a valid configuration against this machine: files it names that must exist
or be creatable (the ledger, the MQTT password file and TLS files).

Kept out of :mod:`controller.config` so that parsing a file never touches the disk
beyond reading it; ``commonwatt config check`` and ``commonwatt run`` call
:func:`machine_problems` so that a ledger that cannot be created is reported by
name up front, not as a traceback once the controller runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.config import CoopConfig
from controller.files import readable_by_others


def ledger_problem(ledger: Path) -> str | None:
    """Why ``ledger`` cannot be opened for writing, or None if it can (or can be created)."""
    if ledger.exists():
        if ledger.is_dir():
            return "is a directory, not a file"
        return None if os.access(ledger, os.R_OK | os.W_OK) else "is not readable and writable"
    # The first ancestor that exists must be a directory we may create entries in.
    parent = ledger.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def _readable(path: Path) -> str | None:
    if not path.is_file():
        return "no such file"
    return None if os.access(path, os.R_OK) else "not readable"


def machine_problems(config: CoopConfig, source: str) -> list[str]:
    """One line per file the configuration names that this machine cannot use."""
    problems = []
    ledger = config.storage.ledger
    why = ledger_problem(ledger)
    if why:
        problems.append(f"{source}: storage.ledger = '{ledger}': {why}")
    if config.mqtt is not None:
        mqtt = config.mqtt
        for key in ("password_file", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(mqtt, key)
            why = None if path is None else _readable(path)
            if why:
                problems.append(f"{source}: mqtt.{key} = '{path}': {why}")
    return problems


def secret_warnings(config: CoopConfig, config_path: Path) -> list[str]:
    """One warning per secret or private file that users other than its owner may read.

    The files: the configuration itself, the MQTT password file and client key, and
    beside the ledger the ledger (every household's energy), the token store, the audit
    log, the local secret and the island plan; their directory when others may list it.
    """
    from controller.governance.audit import AUDIT_FILE
    from controller.governance.local import LOCAL_SECRET_FILE
    from controller.governance.tokens import TOKENS_FILE

    ledger = config.storage.ledger
    named = [("the configuration", config_path)]
    if config.mqtt is not None:
        named += [(f"mqtt.{k}", p) for k in ("password_file", "tls_key")
                  if (p := getattr(config.mqtt, k)) is not None]
    named += [("the ledger", ledger), ("the token store", ledger.parent / TOKENS_FILE),
              ("the audit log", ledger.parent / AUDIT_FILE),
              ("the local secret", ledger.parent / LOCAL_SECRET_FILE),
              ("the island plan", config.plan_path)]
    out = []
    for what, path in named:
        who = readable_by_others(path)
        if who:
            out.append(f"warning: {path} ({what}) is readable by its {who}: "
                       f"chmod 600 '{path}'")
    listing = readable_by_others(ledger.parent)
    if listing and ledger.parent.exists():
        out.append(f"warning: {ledger.parent} (the ledger's directory) may be listed by its "
                   f"{listing}; Commonwatt creates it 0700 but leaves an existing one alone")
    return out
