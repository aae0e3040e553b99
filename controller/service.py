"""``commonwatt service install CONFIG``: the controller as a systemd service.

The unit runs ``commonwatt run CONFIG`` (this Python, this config, both absolute) as a
dedicated system user, in the config's directory, restarted on failure, with SIGHUP as
``systemctl reload`` (the config read again between cycles) and SIGTERM as stop (the
batteries handed back to their own logic, the loads switched back on). It is hardened:
the whole file system is read-only to it (``ProtectSystem=strict``) except the
directories it writes (the ledger's, the backups', the time-series spool's), it gains
no privileges, sees no devices, no other users' files, and may only open IP and Unix
sockets. ``UMask=0077`` keeps the ledger, tokens and audit log owner-only.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from controller.config import CoopConfig

#: Where a unit lives on a Debian or Raspberry Pi OS machine.
DEFAULT_UNIT = Path("/etc/systemd/system/commonwatt.service")


def writable_dirs(config: CoopConfig) -> list[Path]:
    """The directories the controller writes: the ledger's (tokens, audit, plan beside it),
    the backups', the time-series spool's; sorted, without repeats."""
    dirs = {config.storage.ledger.parent, config.plan_path.parent}
    if config.backup is not None:
        dirs.add(config.backup.destination)
    if config.timeseries is not None and config.timeseries.spool_dir is not None:
        dirs.add(config.timeseries.spool_dir)
    return sorted(dirs)


def _under_home(paths: list[Path]) -> bool:
    return any(p.is_relative_to("/home") or p.is_relative_to("/root") for p in paths)


def unit_text(config: CoopConfig, config_path: Path, user: str = "commonwatt",
              python: str | None = None) -> str:
    """The systemd unit for ``config`` (at ``config_path``, made absolute here)."""
    config_path = config_path.expanduser().absolute()
    python = python or sys.executable
    writable = writable_dirs(config)
    # An install in a home directory (a venv in /home/pi) must stay readable to it.
    paths = [Path(python), config_path, *writable]
    home = "read-only" if _under_home(paths) else "yes"
    # A private /tmp would hide a coop kept in /tmp (a trial install) from its controller.
    private_tmp = "no" if any(p.is_relative_to("/tmp") or p.is_relative_to("/var/tmp")
                              for p in paths) else "yes"
    exec_start = shlex.join([python, "-m", "controller.cli", "run", str(config_path)])
    lines = [
        "# Written by 'commonwatt service install'. The controller of "
        f"{config.name}.",
        f"# Create its user once: useradd --system --no-create-home --shell "
        f"/usr/sbin/nologin {user}",
        f"# and give it its directories: chown -R {user}: "
        + " ".join(shlex.quote(str(d)) for d in writable),
        "[Unit]",
        f"Description=Commonwatt controller ({config.name})",
        "Documentation=https://github.com/commonwatt/commonwatt/blob/main/docs/operator.md",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"WorkingDirectory={config_path.parent}",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "Restart=on-failure",
        "RestartSec=5",
        # Owner-only: the ledger, the tokens and the audit log are the coop's books and keys.
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        *[f"ReadWritePaths={d}" for d in writable],
        f"ProtectHome={home}",
        f"PrivateTmp={private_tmp}",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "CapabilityBoundingSet=",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
