"""Relative paths in a configuration file are relative to that file, not to the shell.

A coop's config names its ledger (and, beside it, the tokens, audit log and plan),
the island plan, the time-series spool, the MQTT password and TLS files, the
federation charter and the backups' destination. Resolved against the current
directory, ``commonwatt token create /etc/commonwatt/coop.toml`` run from a home
directory would write a token into a ledger the controller never reads, and a
service started without a ``WorkingDirectory`` would start an empty ledger. So
:func:`resolve_paths` makes every one of them absolute against the config file's
directory, once, where the file is loaded (:func:`controller.config.load_config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.config import CoopConfig


def _under(base: Path, path: Path) -> Path:
    """``path`` if absolute, else ``base / path``; ``~`` is the user's home either way.

    ``..`` is folded away by name (``os.path.normpath``) so that messages name the file
    plainly; symbolic links are left as the installer wrote them."""
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def resolve_paths(config: CoopConfig, base: Path) -> CoopConfig:
    """``config`` with every relative file path made absolute against ``base``.

    ``base`` is the directory of the config file (made absolute here). Sections the
    file leaves out stay out: a copy only updates what was there, so
    ``model_fields_set`` still tells which tables the file had.
    """
    base = Path(os.path.normpath(base.expanduser().absolute()))
    update: dict[str, object] = {
        "storage": config.storage.model_copy(
            update={"ledger": _under(base, config.storage.ledger)}),
    }
    if config.island.plan_file is not None:
        update["island"] = config.island.model_copy(
            update={"plan_file": str(_under(base, Path(config.island.plan_file)))})
    ts = config.timeseries
    if ts is not None and ts.spool_dir is not None:
        update["timeseries"] = ts.model_copy(update={"spool_dir": _under(base, ts.spool_dir)})
    mqtt = config.mqtt
    if mqtt is not None:
        files = {key: _under(base, value) for key in
                 ("password_file", "tls_ca", "tls_cert", "tls_key")
                 if (value := getattr(mqtt, key)) is not None}
        if files:
            update["mqtt"] = mqtt.model_copy(update=files)
    if config.federation is not None:
        update["federation"] = config.federation.model_copy(
            update={"charter": _under(base, config.federation.charter)})
    if config.backup is not None:
        update["backup"] = config.backup.model_copy(
            update={"destination": _under(base, config.backup.destination)})
    fields_set = set(config.model_fields_set)
    resolved = config.model_copy(update=update)
    # The default [storage] table is not one the file had; keep model_fields_set honest.
    object.__setattr__(resolved, "__pydantic_fields_set__", fields_set)
    return resolved
