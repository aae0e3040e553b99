"""Real mosquitto brokers, one per coop, bridged as the federation's README says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controller.federation.bridge import Peer, mosquitto_conf
from tests.conftest import free_port, wait_for_port


class CoopBroker:
    """One coop's mosquitto, which a test can stop and start again on the same port."""

    def __init__(self, coop: str, port: int, directory: Path) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            pytest.fail("mosquitto is not installed: run the README's test command")
        self.coop, self.port, self.dir = coop, port, directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, peers: list[Peer], persistent: bool = False) -> None:
        """Write this broker's mosquitto.conf with bridges to ``peers``."""
        self.conf.write_text(mosquitto_conf(
            self.coop, self.port, peers, restart_s=1, persistence=persistent,
            persistence_dir=str(self.dir) if persistent else None))

    def start(self) -> None:
        """Start mosquitto and wait until it listens."""
        log = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf), "-v"], stdout=log,
                                     stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self, graceful: bool = False) -> None:
        """Kill the broker (as a crash or a cut link would), or stop it as an admin would."""
        if self.proc is not None:
            if graceful:
                self.proc.terminate()  # mosquitto saves its persistence file on SIGTERM
            else:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def bridged_brokers(coops: list[str], tmp_path: Path) -> dict[str, CoopBroker]:
    """One started broker per coop, every pair bridged once."""
    brokers = {c: CoopBroker(c, free_port(), tmp_path / c) for c in coops}
    for coop, broker in brokers.items():
        broker.configure([Peer(c, "127.0.0.1", b.port) for c, b in brokers.items() if c != coop])
    for broker in brokers.values():
        broker.start()
    return brokers
