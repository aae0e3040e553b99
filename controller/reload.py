"""SIGHUP: read the configuration again; a config with an error leaves the running one.

What a running controller can take without a restart: members, devices, policy,
battery limits, the grid section, time steps. What it cannot (the ledger's
file, the API's address, the MQTT publisher, the time-series server, the backup schedule) is refused
by :func:`restart_needed`, naming the section, so a reload never half-applies.
"""

from __future__ import annotations

from pathlib import Path

from controller.config import ConfigError, CoopConfig, load_config

#: Sections a reload cannot change (they are wired once, at start).
FIXED_SECTIONS = ("storage", "api", "mqtt", "timeseries", "backup")


def restart_needed(running: CoopConfig, new: CoopConfig) -> list[str]:
    """The fixed sections that differ between the running and the new config."""
    return [name for name in FIXED_SECTIONS
            if getattr(running, name) != getattr(new, name)]


def reloaded_config(path: Path, running: CoopConfig) -> CoopConfig:
    """The config in ``path`` if the running controller can take it.

    Raises:
        ConfigError: the file is unreadable or invalid (every problem named), or it
            changes a section only a restart can change.
    """
    new = load_config(path)
    fixed = restart_needed(running, new)
    if fixed:
        raise ConfigError(f"{path}: [{'], ['.join(fixed)}] changed: a reload cannot apply "
                          "that, restart the controller")
    return new
